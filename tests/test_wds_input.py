"""video2dataset's and img2dataset's webdataset output as shard-builder input.

The tars are made here in those tools' layout (``NNNNN.tar`` of ``<key>.mp4|jpg``, ``.txt``,
``.json``; ``NNNNN_stats.json`` and ``NNNNN.parquet`` beside them), with real media made by ffmpeg
and PIL, and bad members (a corrupt MP4, a JPEG that is not one, a missing caption, a sample
without media).
"""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import webdataset
from PIL import Image

from preprocessing.adapters import has_annotations, load_records, sliced_source
from preprocessing.job import build_shards
from preprocessing.spec import ShardSpec
from preprocessing.verify import verify_dir
from preprocessing.wds_input import (
    TarError,
    TarSource,
    plan_tar_slices,
    split_name,
    tar_slice_records,
)
from t2v2t.data.shards import iter_samples, read_manifest, sha256_file
from t2v2t.errors import UsageError

sys.path.insert(0, str(Path(__file__).parent))
from helpers_video import make_video  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WEBVID = ShardSpec("webvid", "train", 4, "rand", 2, short_side=32, samples_per_shard=3)
CC3M = ShardSpec("cc3m", "train", 1, "middle", 1, short_side=32)


def write_tar(path: Path, samples: list[dict[str, Any]]) -> None:
    """One ``NNNNN.tar`` written as both tools write it (webdataset's ``TarWriter``: members of a
    sample together, sorted by extension, float mtimes as pax records) + its sidecars."""
    with webdataset.TarWriter(str(path)) as sink:
        for sample in samples:
            sink.write(sample)
    ok = sum("txt" in s for s in samples)
    stats = {"count": len(samples) + 1, "successes": ok, "failed_to_download": 1}
    path.with_name(f"{path.stem}_stats.json").write_text(json.dumps(stats))
    path.with_suffix(".parquet").write_bytes(b"PAR1 not read PAR1")


def _sample(key: str, media_ext: str | None, media: bytes, caption: str | None) -> dict:
    meta = {"url": f"https://x/{key}", "key": key, "caption": caption or "",
            "status": "success", "error_message": None}  # fmt: skip
    sample: dict[str, Any] = {"__key__": key, "json": meta}
    if media_ext:
        sample[media_ext] = media
    if caption is not None:
        sample["txt"] = caption
    return sample


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    folder = tmp_path_factory.mktemp("clips")
    sizes = ("64x48", "48x64", "80x48", "64x64", "96x48")
    return [
        make_video(folder / f"{i}.mp4", size=s, frames=8 + i).read_bytes()
        for i, s in enumerate(sizes)
    ]


@pytest.fixture(scope="module")
def video2dataset(tmp_path_factory: pytest.TempPathFactory, clips: list[bytes]) -> Path:
    """Two tars: 5 good clips, a corrupt MP4, a clip without caption, a caption without clip."""
    root = tmp_path_factory.mktemp("v2d")
    corrupt = clips[0][: len(clips[0]) // 3]  # moov atom lost: nothing is readable
    write_tar(
        root / "00000.tar",
        [
            _sample("000000000", "mp4", clips[0], "a red square moves left"),
            _sample("000000001", "mp4", corrupt, "a corrupt clip"),
            _sample("000000002", "mp4", clips[1], "a blue circle spins"),
            _sample("000000003", "mp4", clips[2], None),  # no .txt
        ],
    )
    write_tar(
        root / "00001.tar",
        [
            _sample("000010000", "mp4", clips[3], "a green star grows"),
            _sample("000010001", None, b"", "a caption whose clip is missing"),
            _sample("000010002", "mp4", clips[4], 'a café, "quoted"'),
            _sample("000010003", "mp4", clips[0], "the first clip again"),
        ],
    )
    return root


def _jpeg(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture(scope="module")
def img2dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("i2d")
    write_tar(
        root / "00000.tar",
        [
            _sample("000000000", "jpg", _jpeg((200, 30, 30)), "a red picture"),
            _sample("000000001", "jpg", b"\xff\xd8 not really a jpeg", "a broken picture"),
            _sample("000000002", "jpg", _jpeg((30, 30, 200), (30, 40)), "a blue picture"),
            _sample("000000003", "jpg", _jpeg((30, 200, 30)), None),
        ],
    )
    return root


def _shard_samples(out: Path) -> dict[str, dict]:
    samples = {}
    for info in read_manifest(out)["shards"]:
        for s in iter_samples(out / info["name"]):
            samples[s["__key__"]] = {**json.loads(s["json"]), "frames": s}
    return samples


def _failures(out: Path) -> dict[str, dict]:
    lines = (out / "failures.jsonl").read_text(encoding="utf-8").splitlines()
    return {f["key"]: f for f in map(json.loads, lines)}


def _snapshot(out: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(out.iterdir()) if p.is_file()}


def test_keys_and_extensions_follow_webdataset() -> None:
    assert split_name("000000001.mp4") == ("000000001", ".mp4")
    assert split_name("part/a.b.seg.json") == ("part/a", ".b.seg.json")


def test_planning_slices_whole_samples_per_tar(video2dataset: Path) -> None:
    source = sliced_source("webvid", video2dataset, "train")
    assert isinstance(source, TarSource)
    for rows in (1, 3, 100):
        parts = list(plan_tar_slices(source, rows))
        # never across tars: 4 samples per tar
        want = [min(rows, 4 - i) for i in range(0, 4, rows)] * 2
        assert [p.rows for p in parts] == want, rows
        records = [r for p in parts for r in tar_slice_records(source, p)]
        assert [r.key for r in records] == [
            r.key for r in load_records("webvid", video2dataset, "train")
        ]
    assert [r.source for r in records[:2]] == ["00000.tar/000000000.mp4", "00000.tar/000000001.mp4"]


def test_video2dataset_tars_shard_with_failures_named(video2dataset: Path, tmp_path: Path) -> None:
    source = sliced_source("webvid", video2dataset, "train")
    out = tmp_path / "w0"
    m = build_shards(source, out, WEBVID, workers=0, progress=False)
    assert (m["num_samples"], m["num_failed"]) == (5, 3) and m["synthetic"] is False
    assert [s["samples"] for s in m["shards"]] == [2, 0, 2, 1]  # slices never span two tars
    samples = _shard_samples(out)
    assert sorted(samples) == ["000000000", "000000002", "000010000", "000010002", "000010003"]
    assert samples["000010002"]["captions"] == ['a café, "quoted"']
    assert samples["000000000"]["source"] == "00000.tar/000000000.mp4"
    assert samples["000000002"]["size"] == [43, 32]  # 48x64 portrait, short side 32
    assert all(len(s["frame_indices"]) == 4 for s in samples.values())
    fails = _failures(out)
    assert sorted(fails) == ["000000001", "000000003", "000010001"]
    assert fails["000000001"]["source"] == "00000.tar/000000001.mp4"
    assert "DecodeError" in fails["000000001"]["reason"]
    assert fails["000000003"]["reason"].startswith("ValueError: no caption")
    assert fails["000010001"]["source"] == "00001.tar/000010001"
    assert "no media member" in fails["000010001"]["reason"]
    assert verify_dir(out) == []  # `make verify-shards` passes on them

    # The same bytes from two Dask workers, and from the driver's whole list.
    build_shards(source, tmp_path / "w2", WEBVID, workers=2, progress=False)
    assert _snapshot(tmp_path / "w2") == _snapshot(out)
    records = load_records("webvid", video2dataset, "train")
    build_shards(records, tmp_path / "list", WEBVID, workers=0, progress=False)
    assert read_manifest(tmp_path / "list")["num_samples"] == 5


def test_mixed_tar_slices_and_build(video2dataset: Path, tmp_path: Path) -> None:
    """docs/data.md, "Mixing": input tars are mixed as blocks of whole samples within a tar
    (a tar's last block may be short), laid end to end in the seeded block order."""
    from preprocessing.mixing import block_order, mixed_rows
    from preprocessing.slices import plan_parts, slice_records

    source = sliced_source("webvid", video2dataset, "train")
    keys = [r.key for r in load_records("webvid", video2dataset, "train")]
    # 768 samples a shard: blocks of 3 within each tar of 4: [0 1 2] [3] [4 5 6] [7].
    blocks = [keys[0:3], keys[3:4], keys[4:7], keys[7:8]]
    want = [k for b in block_order(4, 2) for k in blocks[int(b)]]
    parts = list(plan_parts(source, 768, "blocks", seed=2))
    assert [p.rows for p in parts] == [8]
    assert [r.key for r in slice_records(source, parts[0])] == want
    # A build (shards of 3: one sample a block) holds every sample once in the mixed order, as
    # the mixed list does (whose refused records leave before shards are cut, as unmixed).
    spec = dataclasses.replace(WEBVID, mixing="blocks", seed=1)
    m = build_shards(source, tmp_path / "s", spec, workers=0, progress=False)
    assert (m["num_samples"], m["num_failed"], m["mixing"]) == (5, 3, "blocks")
    got = [s["__key__"] for i in m["shards"] for s in iter_samples(tmp_path / "s" / i["name"])]
    failed = set(_failures(tmp_path / "s"))
    assert got == [keys[i] for i in mixed_rows(8, 3, 1) if keys[i] not in failed]
    records = load_records("webvid", video2dataset, "train")
    m = build_shards(records, tmp_path / "list", spec, workers=0, progress=False)
    assert [
        s["__key__"] for i in m["shards"] for s in iter_samples(tmp_path / "list" / i["name"])
    ] == got


def test_a_video_from_a_tar_gives_the_frames_of_its_file(
    video2dataset: Path, clips: list[bytes], tmp_path: Path
) -> None:
    data = tmp_path / "files"
    (data / "videos" / "p").mkdir(parents=True)
    (data / "videos" / "p" / "000000000.mp4").write_bytes(clips[0])
    (data / "results_2M_train.csv").write_text(
        "videoid,contentUrl,duration,page_dir,name\n000000000,u,PT1S,p,a red square moves left\n"
    )
    kw = dict(workers=0, progress=False)
    build_shards(load_records("webvid", data, "train"), tmp_path / "f", WEBVID, **kw)
    build_shards(load_records("webvid", video2dataset, "train")[:1], tmp_path / "t", WEBVID, **kw)
    (a,) = _shard_samples(tmp_path / "f").values()
    (b,) = _shard_samples(tmp_path / "t").values()
    frames = [k for k in a["frames"] if k.endswith("jpg")]
    assert len(frames) == 8 and all(a["frames"][k] == b["frames"][k] for k in frames)


def test_img2dataset_tars_as_cc3m(img2dataset: Path, tmp_path: Path) -> None:
    source = sliced_source("cc3m", img2dataset, "train")
    assert isinstance(source, TarSource) and has_annotations("cc3m", img2dataset, "train")
    out = tmp_path / "cc3m"
    m = build_shards(source, out, CC3M, workers=0, progress=False)
    assert (m["num_samples"], m["num_failed"]) == (2, 2)
    samples = _shard_samples(out)
    assert {k: s["captions"] for k, s in samples.items()} == {
        "000000000": ["a red picture"],
        "000000002": ["a blue picture"],
    }
    img = Image.open(io.BytesIO(samples["000000000"]["frames"]["000.jpg"]))
    assert img.size == (43, 32) and np.asarray(img)[16, 20, 0] > 150  # red, short side 32
    fails = _failures(out)
    assert sorted(fails) == ["000000001", "000000003"]
    assert fails["000000001"]["source"] == "00000.tar/000000001.jpg"
    assert "DecodeError: image" in fails["000000001"]["reason"]


def test_make_shards_dataset_wds(video2dataset: Path, img2dataset: Path, tmp_path: Path) -> None:
    data = tmp_path / "mixed" / "train"
    data.mkdir(parents=True)
    for i, src in enumerate((video2dataset / "00001.tar", img2dataset / "00000.tar")):
        (data / f"{i:05d}.tar").symlink_to(src)  # a chosen list of tars: links to them
    proc = subprocess.run(
        ["make", "-s", "-o", ".venv/.installed", "-C", str(ROOT), "shards", "DATASET=wds",
         f"DATA={data.parent}", "WORKERS=0", "FRAMES=2", f"OUT={tmp_path / 's'}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / "s" / "wds" / "train_2f"
    m = read_manifest(out)
    assert (m["num_samples"], m["num_failed"]) == (5, 3), proc.stdout
    samples = _shard_samples(out)
    assert samples["000000000"]["source"] == "train/00001.tar/000000000.jpg"  # DATA/train/
    assert samples["000010000"]["vlen"] == 11  # clips[3]: 8 + 3 frames


def test_bad_inputs_are_one_clear_error(video2dataset: Path, tmp_path: Path) -> None:
    both = tmp_path / "both"
    both.mkdir()
    (both / "00000.tar").write_bytes((video2dataset / "00000.tar").read_bytes())
    (both / "results_2M_train.csv").write_text("videoid,page_dir,name\n")
    with pytest.raises(UsageError, match=r"both results_2M_train.csv and input tars"):
        sliced_source("webvid", both, "train")
    cut = tmp_path / "cut"
    cut.mkdir()
    data = (video2dataset / "00000.tar").read_bytes()
    (cut / "00000.tar").write_bytes(data[: len(data) // 2])
    source = sliced_source("wds", cut, "train")
    with pytest.raises(TarError, match=r"00000.tar: not a readable tar"):
        list(plan_tar_slices(source, 2))
    assert not has_annotations("wds", tmp_path / "empty", "train")
