"""DiDeMo's first 30 seconds: VindLU trains and evaluates DiDeMo on ``didemo_2fps_360_trimed30``
(``configs/ret_didemo.py``: the train, val and test splits all read it), its videos cut to their
first 30 s offline (DiDeMo's moments are six 5-s segments: 0-30 s), then sampled by
``get_frame_indices`` over the cut clip's frames. Written out here: a clip at ``fps`` cut at
30 s keeps the frames ``i`` with ``i / fps < 30``, i.e. ``ceil(30 * fps)`` of them; the middle
rule over those is ``(a + b) // 2`` of each segment ``[a, b)`` of ``linspace(0, n, T + 1)``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers_video import make_video

from preprocessing.decode import _ffmpeg, decode_frames, encode_jpeg
from preprocessing.records import VideoRecord
from preprocessing.spec import ShardSpec
from preprocessing.writer import ShardTask, build_sample
from t2v2t.recipes import recipe
from t2v2t.shards import parse_args, spec_for

FPS = 5
SECONDS = 42  # longer than DiDeMo's 30 s
KEPT = math.ceil(30 * FPS)  # 150 frames: 0 .. 29.8 s


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(
        tmp_path_factory.mktemp("didemo") / "long.mp4", frames=SECONDS * FPS, rate=FPS
    )


def _asked(vlen_seen: list[int]):
    def pick(vlen: int) -> list[int]:
        vlen_seen.append(vlen)
        return [0, vlen - 1]

    return pick


@pytest.mark.parametrize("backend", ["decord", "pyav", "ffmpeg"])
def test_decoders_see_only_the_first_30_seconds(clip, backend, monkeypatch) -> None:
    monkeypatch.setenv("T2V2T_DECODER", "pyav" if backend == "pyav" else "auto")
    seen: list[int] = []
    if backend == "ffmpeg":
        cut = _ffmpeg(clip, _asked(seen), 32, 30.0)
        whole = _ffmpeg(clip, _asked(seen), 32)
    else:
        if backend == "decord":
            pytest.importorskip("decord")
        cut = decode_frames(clip, _asked(seen), 32, max_seconds=30.0)
        whole = decode_frames(clip, _asked(seen), 32)
    assert seen == [KEPT, SECONDS * FPS]
    assert (cut.vlen, cut.duration) == (KEPT, pytest.approx(30.0))
    assert whole.vlen == SECONDS * FPS
    assert cut.frames[1].tobytes() == whole_frame(clip, KEPT - 1)  # the last frame before 30 s


def whole_frame(clip, index: int) -> bytes:
    return decode_frames(clip, lambda _: [index], 32).frames[0].tobytes()


def _vindlu_middle_of_cut(num_frames: int, fps: float, seconds: float = 30.0) -> list[int]:
    n = math.ceil(seconds * fps)
    edges = np.linspace(0, n, num_frames + 1).astype(int)
    return [int((edges[i] + edges[i + 1]) // 2) for i in range(num_frames)]


@pytest.mark.parametrize(("mode", "candidates"), [("middle", 1), ("rand", 2)])
def test_stored_frames_come_from_the_first_30_seconds(clip, mode, candidates) -> None:
    spec = ShardSpec("didemo", "test", 12, mode, candidates, short_side=32, max_seconds=30.0)
    rec = VideoRecord(key="long", media=clip, source="videos/long.mp4", captions=["a clip"])
    members = dict(build_sample(ShardTask(0, "unused.tar.zst", spec, []), rec))
    meta = json.loads(members["long.json"])
    stored = [i for seg in meta["frame_indices"] for i in seg]
    assert all(i / meta["fps"] < 30 for i in stored) and max(stored) < KEPT
    assert meta["vlen"] == KEPT and meta["sampling"]["max_seconds"] == 30.0
    if mode == "middle":
        assert stored == _vindlu_middle_of_cut(12, FPS)
    else:  # two candidates inside each twelfth of [0, 150)
        edges = np.linspace(0, KEPT, 13).astype(int)
        for k, seg in enumerate(meta["frame_indices"]):
            assert all(edges[k] <= i < edges[k + 1] for i in seg)
    # The stored JPEGs are those frames of the file.
    frames = decode_frames(clip, lambda _: stored, 32).frames
    jpegs = [members[f"long.{i:03d}.jpg"] for i in range(len(stored))]
    assert jpegs == [encode_jpeg(f, spec.jpeg_quality) for f in frames]


def test_didemo_recipe_trims_and_the_trim_is_part_of_the_shard_identity() -> None:
    def spec(*argv: str) -> ShardSpec:
        args = parse_args(list(argv))
        return spec_for(args, recipe(args.dataset, "test")[0], synthetic=True)

    didemo, msrvtt = spec("--dataset", "didemo"), spec("--dataset", "msrvtt")
    assert didemo.max_seconds == 30.0 and msrvtt.max_seconds is None
    assert spec("--dataset", "didemo", "--max-seconds", "0").max_seconds is None
    assert spec("--dataset", "msrvtt", "--max-seconds", "12").max_seconds == 12.0
    assert didemo.manifest_fields()["max_seconds"] == 30.0
    assert "max_seconds" not in msrvtt.manifest_fields()  # older folders keep their identity
    whole = spec("--dataset", "didemo", "--max-seconds", "0")
    assert didemo.content() != whole.content()
    assert ShardSpec.from_manifest(didemo.manifest_fields()) == didemo
