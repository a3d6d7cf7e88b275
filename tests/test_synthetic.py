"""Synthetic corpora: native layouts, captions naming every attribute, motion only in frame order."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import decord
import numpy as np
import pytest

from preprocessing.adapters import load_records
from preprocessing.synthetic import (
    BACKGROUNDS,
    COLOURS,
    DIRECTIONS,
    OPPOSITE,
    SHAPES,
    SIZES,
    SPEEDS,
    generate,
)
from preprocessing.tools import find_tool


@pytest.fixture(scope="module")
def msrvtt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("msrvtt")
    attrs = generate("msrvtt", root, size=8, test_size=10, video_size=(64, 48), duration=2.0)
    return root, attrs


def _frames(path: Path) -> np.ndarray:
    vr = decord.VideoReader(str(path), num_threads=1)
    return vr.get_batch(list(range(len(vr)))).asnumpy().astype(np.int16)


def _centroid(frame: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    near = np.abs(frame - np.array(colour)).sum(-1) < 90
    ys, xs = np.nonzero(near)
    assert len(xs) > 3, "shape not found"
    return np.array([xs.mean(), ys.mean()])


def test_layout_keys_and_splits(msrvtt: tuple[Path, dict]) -> None:
    root, attrs = msrvtt
    for split, n in (("train", 8), ("test", 10)):
        recs = load_records("msrvtt", root, split)
        assert len(recs) == n
        assert {r.key for r in recs} == {k for k, a in attrs.items() if a["split"] == split}
    test = [a for a in attrs.values() if a["split"] == "test"]
    sigs = {
        tuple(
            sorted(
                (k, v)
                for k, v in a.items()
                if k in ("shape", "colour", "size", "background", "direction", "speed")
            )
        )
        for a in test
    }
    assert len(sigs) == len(test)  # every test video is distinguishable from its caption


def test_captions_name_every_attribute(msrvtt: tuple[Path, dict]) -> None:
    root, attrs = msrvtt
    vocab = {
        "shape": SHAPES,
        "colour": {k: v[1] for k, v in COLOURS.items()},
        "size": {k: v[1] for k, v in SIZES.items()},
        "background": {k: v[1] for k, v in BACKGROUNDS.items()},
        "direction": DIRECTIONS,
        "speed": {k: v[1] for k, v in SPEEDS.items()},
    }
    recs = load_records("msrvtt", root, "train") + load_records("msrvtt", root, "test")
    wordings = set()
    for r in recs:
        a = attrs[r.key]
        for cap in r.captions:
            wordings.add(cap)
            for field, table in vocab.items():
                assert any(w in cap for w in table[a[field]]), (field, a[field], cap)
                others = [w for k, ws in table.items() if k != a[field] for w in ws]
                if field in ("shape", "direction", "speed", "size"):
                    assert not any(f" {w} " in f" {cap} " for w in others), (field, cap)
    assert len(wordings) > 0.9 * sum(len(r.captions) for r in recs)  # varied wording


def test_motion_follows_direction_and_speed(msrvtt: tuple[Path, dict]) -> None:
    root, attrs = msrvtt
    moves = {"slow": [], "quick": []}
    for key, a in attrs.items():
        f = _frames(root / "videos" / f"{key}.mp4")
        colour = COLOURS[a["colour"]][0]
        d = _centroid(f[-1], colour) - _centroid(f[0], colour)
        axis, sign = {"left": (0, -1), "right": (0, 1), "up": (1, -1), "down": (1, 1)}[
            a["direction"]
        ]
        assert d[axis] * sign > 2 and abs(d[1 - axis]) < 2, (key, a, d)
        span = (64 if axis == 0 else 48) - round(SIZES[a["size"]][0] * 48)
        moves[a["speed"]].append(abs(d[axis]) / span)
    assert max(moves["slow"]) < min(moves["quick"])


def test_direction_twins_are_reversed_frames(msrvtt: tuple[Path, dict]) -> None:
    root, attrs = msrvtt
    twins = [(k, a["twin"]) for k, a in attrs.items() if a["twin"] and k < a["twin"]]
    assert len(twins) == 1  # 20% of 10 test videos = one pair
    a, b = twins[0]
    assert attrs[b]["twin"] == a and attrs[a]["split"] == attrs[b]["split"] == "test"
    assert attrs[b]["direction"] == OPPOSITE[attrs[a]["direction"]]
    same = ("shape", "colour", "size", "background", "speed")
    assert all(attrs[a][k] == attrs[b][k] for k in same)
    fa, fb = _frames(root / "videos" / f"{a}.mp4"), _frames(root / "videos" / f"{b}.mp4")
    assert fa.shape == fb.shape
    assert np.abs(fa - fb[::-1]).mean() < 3.0  # the same pictures, in reverse order
    assert np.abs(fa - fb).mean() > np.abs(fa - fb[::-1]).mean()


def test_generation_is_deterministic(tmp_path: Path) -> None:
    def digest(root: Path) -> dict[str, str]:
        return {
            p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    generate("webvid", tmp_path / "a", size=3, video_size=(48, 32), duration=1.0, workers=1)
    generate("webvid", tmp_path / "b", size=3, video_size=(48, 32), duration=1.0, workers=2)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_paragraph_corpora_chain_events(tmp_path: Path) -> None:
    for ds, split, fps in (("anet", "val", 8), ("didemo", "test", 5)):
        attrs = generate(ds, tmp_path / ds, size=4, test_size=4, video_size=(48, 32))
        for r in load_records(ds, tmp_path / ds, split):
            events = attrs[r.key]["events"]
            assert len(events) in (2, 3) and len(r.timestamps) == len(events)
            vr = decord.VideoReader(str(r.media))
            assert abs(len(vr) / fps - r.timestamps[-1][1]) < 0.2  # events fill the video
            assert r.timestamps[-1][1] <= 30
            assert all(t[0] < t[1] for t in r.timestamps)
            # one sentence per event, in order: each names its event's shape colour
            assert r.captions[0].count(" ") > 10


def test_video_size_and_duration_options(tmp_path: Path) -> None:
    generate("webvid", tmp_path, size=1, video_size=(320, 180), duration=2.0, fps=10)
    (rec,) = load_records("webvid", tmp_path, "train")
    out = subprocess.run(
        [
            find_tool("ffprobe"),
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_packets",
            "-show_entries",
            "stream=width,height,nb_read_packets,codec_name,pix_fmt",
            "-of",
            "json",
            str(rec.media),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    s = json.loads(out)["streams"][0]
    assert (s["width"], s["height"], s["nb_read_packets"]) == (320, 180, "20")
    assert (s["codec_name"], s["pix_fmt"]) == ("h264", "yuv420p")


def test_cc3m_images(tmp_path: Path) -> None:
    generate("cc3m", tmp_path, size=3)
    recs = load_records("cc3m", tmp_path, "train")
    assert len(recs) == 3 and all(r.is_image and r.media.is_file() for r in recs)
    meta = json.loads((tmp_path / "00000" / "000000000.json").read_text())
    assert meta["caption"] == recs[0].captions[0] and meta["status"] == "success"


def test_near_duplicates_change_one_attribute_and_leave_default_plans_alone() -> None:
    from preprocessing.synthetic import NEAR_ATTRIBUTES, _attributes, plan

    videos = plan("msrvtt", {"train": 6, "test": 60}, 3, (1, 1), [4.0], near_duplicates=0.3)
    test = [v for v in videos if v.split == "test"]
    by_key = {v.key: v for v in test}
    near = [v for v in test if v.near_duplicate_of]
    assert len(test) == 60 and len(near) == 18 and len(by_key) == 60
    for v in near:
        base = by_key[v.near_duplicate_of]
        assert not base.near_duplicate_of and not v.twin and not v.reverse
        a, b = v.events[0], base.events[0]
        changed = [n for n in ("shape", "colour", "size", "background", "direction", "speed")
                   if getattr(a, n) != getattr(b, n)]  # fmt: skip
        assert len(changed) == 1 and changed[0] in NEAR_ATTRIBUTES, changed
    # Still all distinguishable by their captions' attributes, twins included.
    assert len({tuple(v.events) for v in test}) == 60
    assert _attributes(near[:1])[near[0].key]["near_duplicate_of"] == near[0].near_duplicate_of
    # Without near duplicates the plan is the one every other corpus was built from.
    plain = plan("msrvtt", {"train": 6, "test": 60}, 3, (1, 1), [4.0])
    again = plan("msrvtt", {"train": 6, "test": 60}, 3, (1, 1), [4.0], near_duplicates=0.0)
    assert [(v.key, v.events, v.caps) for v in plain] == [(v.key, v.events, v.caps) for v in again]
    assert not any(v.near_duplicate_of for v in plain)
    assert [v.events for v in videos if v.split == "train"] == [
        v.events for v in plain if v.split == "train"
    ]


def test_near_duplicates_out_of_range_is_one_line(tmp_path: Path, capsys) -> None:
    from t2v2t import shards
    from t2v2t.errors import cli

    argv = ["--dataset", "msrvtt", "--synthetic", "--data", str(tmp_path / "d"),
            "--out", str(tmp_path / "o"), "--synthetic-near-duplicates", "1.5"]  # fmt: skip
    rc = cli(lambda: shards.main(argv))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--synthetic-near-duplicates" in err[0]
    assert not (tmp_path / "d").exists() and not (tmp_path / "o").exists()
