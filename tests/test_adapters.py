"""Adapters read each dataset's native layout (written by the synthetic generator or here)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from preprocessing.adapters import AnnotationError, load_records
from preprocessing.synthetic import generate
from t2v2t.data.shards import read_manifest
from t2v2t.errors import UsageError


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpora")
    for ds in ("webvid", "cc3m", "msrvtt", "didemo", "anet", "folder"):
        generate(ds, root / ds, size=6, test_size=4, video_size=(48, 32), workers=2)
    return root


def _check(records, n: int) -> None:
    assert len(records) == n
    assert len({r.key for r in records}) == n
    for r in records:
        assert r.media.is_file(), r.media
        assert r.captions and all(c == c.strip() and c for c in r.captions)
        assert "." not in r.key and "/" not in r.key


def test_webvid(corpora: Path) -> None:
    recs = load_records("webvid", corpora / "webvid", "train")
    _check(recs, 6)
    assert recs[0].source.startswith("videos/000001_000050/") and recs[0].key == "1000000"
    assert all(len(r.captions) == 1 for r in recs)


def test_webvid_quoting_and_empty_caption(tmp_path: Path) -> None:
    (tmp_path / "results_2M_train.csv").write_text(
        "videoid,contentUrl,duration,page_dir,name,extra\n"
        '1,u,PT00H00M11S,006001_006050,"A cat, ""sleeping"" — café",x\n'
        "2,u,PT00H00M11S,006001_006050,,x\n",
        encoding="utf-8",
    )
    recs = load_records("webvid", tmp_path, "train")
    assert recs[0].captions == ['A cat, "sleeping" — café']
    assert recs[1].captions == []  # a bad record for failures.jsonl, not a crash
    assert recs[1].media == tmp_path / "videos/006001_006050/2.mp4"


def test_webvid_malformed(tmp_path: Path) -> None:
    (tmp_path / "results_2M_train.csv").write_text("videoid,duration,name\n1,PT1S,x\n")
    with pytest.raises(AnnotationError, match=r"results_2M_train.csv:1: .*page_dir"):
        load_records("webvid", tmp_path, "train")
    (tmp_path / "results_2M_train.csv").write_text("videoid,page_dir,name\n1,a,x\n2,b\n")
    with pytest.raises(AnnotationError, match=r"results_2M_train.csv:3"):
        load_records("webvid", tmp_path, "train")


def test_cc3m(corpora: Path) -> None:
    recs = load_records("cc3m", corpora / "cc3m", "train")
    _check(recs, 6)
    assert all(r.is_image and r.source.endswith(".jpg") for r in recs)
    assert recs[0].key == "00000_000000000"


def test_cc3m_pairs_and_malformed(tmp_path: Path) -> None:
    sub = tmp_path / "00000"
    sub.mkdir()
    (sub / "000000000.jpg").write_bytes(b"x")  # no .txt
    (sub / "000000001.txt").write_text("a caption\n")  # no .jpg
    recs = load_records("cc3m", tmp_path, "train")
    assert [r.captions for r in recs] == [[], ["a caption"]]
    assert not recs[1].media.exists()
    (sub / "000000001.json").write_text("{oops")
    with pytest.raises(AnnotationError, match="000000001.json:1"):
        load_records("cc3m", tmp_path, "train")


def test_msrvtt(corpora: Path) -> None:
    train = load_records("msrvtt", corpora / "msrvtt", "train")
    test = load_records("msrvtt", corpora / "msrvtt", "test")
    _check(train, 6)
    _check(test, 4)
    assert all(3 <= len(r.captions) <= 5 for r in train)  # every sentence of a train video
    assert all(len(r.captions) == 1 for r in test)  # 1k-A: one sentence per video
    assert not {r.key for r in train} & {r.key for r in test}


def test_msrvtt_malformed(tmp_path: Path) -> None:
    (tmp_path / "MSRVTT_data.json").write_text('{"videos": [],\n "sentences": [}')
    with pytest.raises(AnnotationError, match=r"MSRVTT_data.json:2"):
        load_records("msrvtt", tmp_path, "train")
    (tmp_path / "MSRVTT_data.json").write_text(
        json.dumps(
            {
                "videos": [{"video_id": "video0", "split": "train"}],
                "sentences": [{"video_id": "video0"}],
            }
        )
    )
    with pytest.raises(AnnotationError, match=r"sentences\[0\]"):
        load_records("msrvtt", tmp_path, "train")
    (tmp_path / "MSRVTT_JSFUSION_test.csv").write_text("key,vid_key,sentence\nret0,msr1,x\n")
    with pytest.raises(AnnotationError, match="MSRVTT_JSFUSION_test.csv:1: .*video_id"):
        load_records("msrvtt", tmp_path, "test")


def test_msrvtt_test_csv_with_index_column(tmp_path: Path) -> None:
    (tmp_path / "MSRVTT_JSFUSION_test.csv").write_text(
        ",key,vid_key,video_id,sentence\n0,ret0,msr7579,video7579,a girl wearing red top\n"
    )
    recs = load_records("msrvtt", tmp_path, "test")
    assert recs[0].key == "video7579" and recs[0].captions == ["a girl wearing red top"]


def test_didemo(corpora: Path) -> None:
    for split, n in (("train", 6), ("test", 4)):
        recs = load_records("didemo", corpora / "didemo", split)
        _check(recs, n)
        for r in recs:
            assert len(r.captions) == 1 and len(r.timestamps) in (2, 3)
            starts = [t[0] for t in r.timestamps]
            assert starts == sorted(starts) and all(t[1] <= 30 for t in r.timestamps)


def test_didemo_paragraph_order_and_extension(tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a_b.mov").write_bytes(b"x")  # original extension kept
    anns = [
        {"video": "a_b.mov", "description": "then it jumps", "times": [[2, 3], [2, 3], [1, 3]]},
        {"video": "a_b.mov", "description": " a dog runs ", "times": [[0, 0], [0, 1], [0, 0]]},
    ]
    (tmp_path / "val_data.json").write_text(json.dumps(anns))
    (rec,) = load_records("didemo", tmp_path, "val")
    assert rec.captions == ["a dog runs then it jumps"]
    assert rec.timestamps == [[0.0, 5.0], [10.0, 20.0]]
    assert rec.media.name == "a_b.mov" and rec.key == "a_b"
    (tmp_path / "val_data.json").write_text(json.dumps([{"video": "x.mov", "times": [[1, 1]]}]))
    with pytest.raises(AnnotationError, match=r"val_data.json: entry 0: .*description"):
        load_records("didemo", tmp_path, "val")
    anns[1]["times"] = [[0]]
    (tmp_path / "val_data.json").write_text(json.dumps(anns))
    with pytest.raises(AnnotationError, match=r"entry 1: 'times'"):
        load_records("didemo", tmp_path, "val")


def test_anet(corpora: Path) -> None:
    train = load_records("anet", corpora / "anet", "train")
    val = load_records("anet", corpora / "anet", "val")  # reads val_1.json
    _check(train, 6)
    _check(val, 4)
    for r in train + val:
        assert len(r.captions) == 1 and not r.captions[0].startswith(" ")
        assert [t[0] for t in r.timestamps] == sorted(t[0] for t in r.timestamps)


def test_anet_sorting_mkv_and_malformed(tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "v_x.mkv").write_bytes(b"x")
    data = {
        "v_x": {
            "duration": 9.0,
            "timestamps": [[5, 9], [0, 5]],
            "sentences": [" Then B.", " First A."],
        }
    }
    (tmp_path / "val_1.json").write_text(json.dumps(data))
    (rec,) = load_records("anet", tmp_path, "val")
    assert rec.captions == ["First A. Then B."]
    assert rec.timestamps == [[0.0, 5.0], [5.0, 9.0]] and rec.media.suffix == ".mkv"
    data["v_x"]["sentences"] = ["only one"]
    (tmp_path / "val_1.json").write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"val_1.json: entry v_x: 2 timestamps for 1"):
        load_records("anet", tmp_path, "val")


def test_vindlu(tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    for name in ("video1.mp4", "v_a.mp4"):
        (tmp_path / "videos" / name).write_bytes(b"x")
    anno = [
        {"video": "video1.mp4", "caption": "a woman cooks"},
        {"video": "v_a.mp4", "caption": ["one", "two"]},
        {"video": "video1.mp4", "caption": "she smiles"},
    ]
    (tmp_path / "test.json").write_text(json.dumps(anno))
    recs = load_records("vindlu", tmp_path, "test")
    assert [(r.key, r.captions) for r in recs] == [
        ("video1", ["a woman cooks", "she smiles"]),
        ("v_a", ["one", "two"]),
    ]
    assert recs[0].source == "video1.mp4"
    anno[1]["caption"] = 3
    (tmp_path / "test.json").write_text(json.dumps(anno))
    with pytest.raises(AnnotationError, match=r"test.json: entry 1: 'caption'"):
        load_records("vindlu", tmp_path, "test")


def test_folder(corpora: Path, tmp_path: Path) -> None:
    recs = load_records("folder", corpora / "folder", "train")
    _check(recs, 6)
    assert all(len(r.captions) == 2 for r in recs)
    (tmp_path / "captions.csv").write_text("file,caption\na.mp4,x\n")
    with pytest.raises(AnnotationError, match=r"captions.csv:1: .*path"):
        load_records("folder", tmp_path, "train")


def test_unknown_dataset_and_missing_root(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown dataset"):
        load_records("kinetics", tmp_path, "train")
    with pytest.raises(UsageError, match="does not exist"):
        load_records("webvid", tmp_path / "nope", "train")
    with pytest.raises(FileNotFoundError, match="results_2M_train.csv"):
        load_records("webvid", tmp_path, "train")


# --- WebVid's CSVs by pattern, through `make shards` ----------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def _make_shards(*args: str) -> subprocess.CompletedProcess:
    cmd = ["make", "-s", "-o", ".venv/.installed", "-C", str(ROOT), "shards", "WORKERS=0", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("T2V2T_DEBUG", None)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_webvid_csv_found_by_pattern(tmp_path: Path) -> None:
    header = "videoid,contentUrl,duration,page_dir,name\n"
    (tmp_path / "results_10M_train.csv").write_text(header + "1,u,PT1S,p,ten million\n")
    (tmp_path / "results_10M_val.csv").write_text(header + "2,u,PT1S,p,a val clip\n")
    assert [r.captions for r in load_records("webvid", tmp_path, "train")] == [["ten million"]]
    assert [r.key for r in load_records("webvid", tmp_path, "val")] == ["2"]
    (tmp_path / "results_2M_train.csv").write_text(header + "3,u,PT1S,p,two million\n")
    assert [r.key for r in load_records("webvid", tmp_path, "train")] == ["3"]  # 2M first
    (tmp_path / "results_10M_val.csv").rename(tmp_path / "results_a_val.csv")
    (tmp_path / "results_b_val.csv").write_text(header)
    with pytest.raises(UsageError, match=r"several WebVid CSVs for val .*ANNOTATIONS="):
        load_records("webvid", tmp_path, "val")


def test_make_shards_reads_the_10m_csv_or_annotations(tmp_path: Path) -> None:
    """A WebVid-10M download: a folder with results_10M_train.csv and videos/ (no 2M file)."""
    data = tmp_path / "webvid"
    generate("webvid", data, size=4, video_size=(48, 32), duration=1.0, workers=1)
    (data / "results_2M_train.csv").rename(data / "results_10M_train.csv")
    (data / "synthetic_attributes.json").unlink()  # a lab's own folder, not a generated one
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    proc = _make_shards("DATASET=webvid", f"DATA={data}", f"OUT={tmp_path / 's'}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = read_manifest(tmp_path / "s/webvid/train_4f")
    assert (m["num_samples"], m["num_failed"], m["synthetic"]) == (4, 0, False)
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before  # nothing written
    # ANNOTATIONS= names a CSV of any name; only its rows are built.
    rows = (data / "results_10M_train.csv").read_text().splitlines()
    mine = tmp_path / "my_subset.csv"
    mine.write_text("\n".join(rows[:3]) + "\n")
    proc = _make_shards(
        "DATASET=webvid", f"DATA={data}", f"ANNOTATIONS={mine}", f"OUT={tmp_path / 'sub'}"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_manifest(tmp_path / "sub/webvid/train_4f")["num_samples"] == 2
    # A split's CSV by pattern: SPLIT=val reads results_10M_val.csv.
    (data / "results_10M_val.csv").write_text("\n".join(rows[:2]) + "\n")
    proc = _make_shards("DATASET=webvid", f"DATA={data}", "SPLIT=val", f"OUT={tmp_path / 'v'}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_manifest(tmp_path / "v/webvid/val_4f")["num_samples"] == 1


def test_msrvtt_train_lists_7k_default_9k_on_request(tmp_path: Path) -> None:
    """``train`` is the 7k list (VindLU's configs/ret_msrvtt.py), ``train9k`` the 9k list; a
    missing list file is one error naming it, never a silent fall-back to another split."""
    vids = [{"video_id": f"video{i}", "split": "train" if i < 5 else "validate"} for i in range(8)]
    sents = [{"video_id": f"video{i}", "caption": f"c{i} {j}"} for i in range(8) for j in range(3)]
    (tmp_path / "MSRVTT_data.json").write_text(json.dumps({"videos": vids, "sentences": sents}))
    with pytest.raises(
        AnnotationError, match=r"MSRVTT_train\.7k\.csv: no such file.*SPLIT=train9k"
    ):
        load_records("msrvtt", tmp_path, "train")
    (tmp_path / "MSRVTT_train.7k.csv").write_text(
        "video_id\n" + "".join(f"video{i}\n" for i in range(6))
    )
    (tmp_path / "MSRVTT_train.9k.csv").write_text(
        "video_id\n" + "".join(f"video{i}\n" for i in range(8))
    )
    seven = load_records("msrvtt", tmp_path, "train")
    assert [r.key for r in seven] == [f"video{i}" for i in range(6)]
    assert [r.key for r in load_records("msrvtt", tmp_path, "train7k")] == [r.key for r in seven]
    nine = load_records("msrvtt", tmp_path, "train9k")
    assert len(nine) == 8 and all(len(r.captions) == 3 for r in nine)
