"""Small real media files for the preprocessing tests (made with the ffmpeg CLI)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from preprocessing.tools import find_tool


def ffmpeg(*args: str) -> None:
    subprocess.run([find_tool("ffmpeg"), "-nostdin", "-v", "error", "-y", *args], check=True)


def make_video(
    path: Path,
    *,
    size: str = "64x48",
    frames: int = 10,
    rate: int = 10,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
) -> Path:
    """A testsrc clip with ``frames`` frames in any container/codec ffmpeg writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"testsrc=s={size}:r={rate}",
        "-frames:v",
        str(frames),
        "-c:v",
        codec,
        "-pix_fmt",
        pix_fmt,
        "-threads",
        "1",
        str(path),
    )
    return path


def make_bad_inputs(folder: Path) -> dict[str, Path]:
    """Files that must fail: zero-byte, truncated MP4, text named .mp4, audio-only, missing."""
    folder.mkdir(parents=True, exist_ok=True)
    zero = folder / "zero.mp4"
    zero.write_bytes(b"")
    text = folder / "text.mp4"
    text.write_text("this is not a video\n")
    audio = folder / "audio.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac", str(audio))
    good = make_video(folder / "whole.mp4", size="160x120", frames=40)
    trunc = folder / "trunc.mp4"  # moov atom at the end: cut in half, nothing is readable
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    good.unlink()
    return {
        "zero": zero,
        "text": text,
        "audio": audio,
        "truncated": trunc,
        "missing": folder / "missing.mp4",
    }


def make_odd_inputs(folder: Path) -> dict[str, Path]:
    """Valid but unusual files that must be sharded, not failed."""
    return {
        "one_frame": make_video(folder / "one.mp4", frames=1),
        "mkv_vp9": make_video(folder / "vp9.mkv", codec="libvpx-vp9", frames=8),
        "webm_vp8": make_video(folder / "vp8.webm", codec="libvpx", frames=8),
        "avi_mpeg4": make_video(folder / "mp4v.avi", codec="mpeg4", frames=8),
        "mpeg2": make_video(folder / "m2v.mpg", codec="mpeg2video", frames=8),
        "wide": make_video(folder / "wide.mp4", size="2000x40", frames=6),
        "tall": make_video(folder / "tall.mp4", size="40x600", frames=6),
        # decord cannot open these: they exercise the ffmpeg fallback
        "gif": make_video(folder / "anim.gif", codec="gif", pix_fmt="rgb8", frames=6),
        "h264_raw": make_video(folder / "raw.h264", frames=6),
    }
