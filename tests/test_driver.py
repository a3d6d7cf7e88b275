"""The shard driver at scale: annotation slices read by workers, a bounded window of tasks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from preprocessing.adapters import AnnotationError, load_records, webvid, webvid_slice
from preprocessing.job import build_shards
from preprocessing.slices import CsvSource, plan_slices, slice_records
from preprocessing.spec import ShardSpec
from preprocessing.synthetic import generate
from preprocessing.verify import verify_dir
from t2v2t.data.shards import read_manifest, sha256_file

SPEC = ShardSpec("webvid", "train", 4, "rand", 2, short_side=32, samples_per_shard=3)

TRICKY = (
    "videoid,contentUrl,duration,page_dir,name\n"
    '1,u,PT1S,p0,"plain"\n'
    "\n"
    '2,u,PT1S,p0,"a caption, with a comma"\n'
    '3,u,PT1S,p1,"two\nlines"\n'
    '4,u,PT1S,p1,"quotes ""inside"""\r\n'
    '5,u,PT1S,p2,"\n"\n'
    "6,u,PT1S,p2,last without newline"
)


def test_slices_hold_every_row_once_with_its_line(tmp_path: Path) -> None:
    csv = tmp_path / "results_10M_train.csv"
    csv.write_bytes(TRICKY.encode())
    full = webvid(tmp_path, "train", csv)
    assert [r.key for r in full] == ["1", "2", "3", "4", "5", "6"]
    source = CsvSource(webvid_slice, str(tmp_path), str(csv))
    for rows in (1, 2, 4, 100):
        parts = list(plan_slices(csv, rows))
        assert [p.rows for p in parts][:-1] == [rows] * (len(parts) - 1)
        got = [r for p in parts for r in slice_records(source, p)]
        assert got == full, rows
    # A bad row in a slice names the file's real line.
    csv.write_text("videoid,page_dir,name\n1,p,a\n\n2,p,b\n3,,c\n")
    last = list(plan_slices(csv, 2))[-1]
    with pytest.raises(AnnotationError, match=r"results_10M_train.csv:5: empty videoid"):
        slice_records(source, last)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("webvid")
    generate("webvid", root, size=6, video_size=(64, 48), duration=1.0, workers=2)
    csv = root / "results_2M_train.csv"
    with open(csv, "a", encoding="utf-8") as f:  # a row whose video does not exist
        f.write('999,u,PT1S,nowhere,"a missing clip"\n')
    return root


def _snapshot(out: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(out.iterdir()) if p.is_file()}


def test_sliced_build_equals_list_build_for_any_worker_count(corpus: Path, tmp_path: Path) -> None:
    build_shards(
        load_records("webvid", corpus, "train"), tmp_path / "list", SPEC, workers=0, progress=False
    )
    source = CsvSource(webvid_slice, str(corpus), str(corpus / "results_2M_train.csv"))
    stats: dict = {}
    build_shards(source, tmp_path / "w0", SPEC, workers=0, stats=stats, progress=False)
    assert stats["tasks"] == 3 and stats["first_submit_s"] > 0
    assert _snapshot(tmp_path / "w0") == _snapshot(tmp_path / "list")
    m = read_manifest(tmp_path / "w0")
    assert (m["num_samples"], m["num_failed"]) == (6, 1)
    assert "missing file" in (tmp_path / "w0" / "failures.jsonl").read_text()

    # Two Dask workers and a window of one task in flight: the same bytes.
    stats = {}
    build_shards(source, tmp_path / "w2", SPEC, workers=2, window=1, stats=stats, progress=False)
    assert stats["max_in_flight"] == 1 and stats["tasks"] == 3
    assert _snapshot(tmp_path / "w2") == _snapshot(tmp_path / "list")

    # Resume: a lost shard is rebuilt by its worker, the others are kept untouched.
    shards = sorted((tmp_path / "w2").glob("*.tar.zst"))
    stamps = {p.name: p.stat().st_mtime_ns for p in shards}
    shards[1].unlink()
    (tmp_path / "w2" / "manifest.json").unlink()
    build_shards(source, tmp_path / "w2", SPEC, workers=0, progress=False)
    assert _snapshot(tmp_path / "w2") == _snapshot(tmp_path / "list")
    assert shards[0].stat().st_mtime_ns == stamps[shards[0].name]
    assert shards[2].stat().st_mtime_ns == stamps[shards[2].name]


def test_mixed_build_is_the_mixed_order_for_any_worker_count(corpus: Path, tmp_path: Path) -> None:
    """docs/data.md, "Mixing": shard i holds positions [i*n, (i+1)*n) of the seeded mixed
    order; the same bytes from the CSV's slices and from the list, with 0 or 2 Dask workers."""
    from preprocessing.mixing import mixed_rows
    from t2v2t.data.shards import iter_samples

    spec = replace(SPEC, mixing="blocks", seed=1)
    recs = load_records("webvid", corpus, "train")
    build_shards(recs, tmp_path / "list", spec, workers=0, progress=False)
    source = CsvSource(webvid_slice, str(corpus), str(corpus / "results_2M_train.csv"))
    build_shards(source, tmp_path / "w0", spec, workers=0, progress=False)
    build_shards(source, tmp_path / "w2", spec, workers=2, window=1, progress=False)
    assert _snapshot(tmp_path / "w0") == _snapshot(tmp_path / "list") == _snapshot(tmp_path / "w2")
    m = read_manifest(tmp_path / "w0")
    assert (m["mixing"], m["mixing_block_rows"], m["num_samples"], m["num_failed"]) == (
        "blocks",
        1,
        6,
        1,
    )
    order = [recs[i].key for i in mixed_rows(len(recs), 3, 1) if recs[i].key != "999"]
    keys = [
        s["__key__"] for p in sorted((tmp_path / "w0").glob("*.tar.zst")) for s in iter_samples(p)
    ]
    assert keys == order and keys != [r.key for r in recs if r.key != "999"]
    # Today's order stays one key away, and differs.
    build_shards(source, tmp_path / "none", SPEC, workers=0, progress=False)
    assert read_manifest(tmp_path / "none")["mixing"] == "none"
    assert _snapshot(tmp_path / "none") != _snapshot(tmp_path / "w0")


def test_verify_on_a_cluster_with_a_progress_bar(
    corpus: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    import importlib.util

    monkeypatch.setenv("T2V2T_PROGRESS_DELAY", "0")  # show the bar however quick the check

    out = tmp_path / "s"
    source = CsvSource(webvid_slice, str(corpus), str(corpus / "results_2M_train.csv"))
    build_shards(source, out, SPEC, workers=0, progress=False)
    spec = importlib.util.spec_from_file_location(
        "verify_shards", Path(__file__).resolve().parents[1] / "scripts/verify_shards.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main([str(out), "--workers", "2"]) == 0
    got = capsys.readouterr()
    assert got.out.startswith(f"OK {out}: 3 shards, 6 samples, 1 failed")
    assert "verify s: 100%" in got.err and "6/6" in got.err  # the bar, on stderr
    # A tampered shard is named.
    shard = sorted(out.glob("*.tar.zst"))[1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    problems = verify_dir(out)
    assert shard.name in problems[0] and "sha256 differs" in problems[0], problems
