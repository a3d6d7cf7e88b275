"""Decode the chosen frames of a video (or an image), resized, as RGB uint8 arrays; JPEG-encode.

decord first where it is installed (x86_64): it seeks and decodes only what ``get_batch`` needs
and resizes inside the decoder (only the chosen frames are converted and scaled). PyAV is the
decoder where decord has no wheel (aarch64, macOS), or when ``T2V2T_DECODER=pyav`` forces it:
same frame indices, frames within the difference docs/data.md ("Decoders") gives. ffmpeg
(through ffmpeg-python) is the fallback for files neither can read. Frames are resized so the short side is ``short_side``; extreme aspect
ratios are centre-cropped to at most ``MAX_ASPECT`` : 1 first, so no absurd frame is written.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import subprocess
import tempfile
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from preprocessing.tools import find_tool
from t2v2t.data.frames import frames_before

# "auto" (decord where installed, else PyAV), "decord" or "pyav"; read per call so a Dask
# worker started with the variable decodes with the backend its client chose.
DECODER_ENV = "T2V2T_DECODER"

MAX_ASPECT = 4.0
# Frame rates outside this range are metadata gone wrong (a zero timescale reads as 1 tick per
# second, e.g. fps 0.0005), not a video's real rate.
FPS_RANGE = (0.1, 1000.0)


class DecodeError(RuntimeError):
    """A media file that neither decord nor ffmpeg can turn into frames."""


@dataclass
class Decoded:
    frames: list[np.ndarray]  # H x W x 3 uint8, in the order of the requested indices
    vlen: int
    fps: float
    duration: float
    backend: str
    # True when the container's frame rate was missing or zero and ``fps`` was measured from
    # the packet timestamps instead (counted as a warning in the manifest).
    fps_from_packets: bool = False


def packet_fps(path: Path) -> float:
    """Frames per second measured from the video packets' timestamps (for files whose frame
    rate or timescale metadata is missing or zero); DecodeError when they give none."""
    cmd = [find_tool("ffprobe"), "-v", "error", "-select_streams", "v:0"]
    cmd += ["-show_entries", "packet=pts_time", "-of", "csv=p=0", str(path)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise DecodeError(f"no frame rate, and ffprobe cannot read packet times ({err})") from None
    times = sorted(float(t) for t in out.split() if t.strip() not in ("", "N/A"))
    if len(times) < 2 or not times[-1] > times[0]:
        raise DecodeError("no frame rate: fps metadata missing or zero, no packet timestamps")
    # n packets span n - 1 frame intervals between the first and last timestamp
    fps = (len(times) - 1) / (times[-1] - times[0])
    if not _usable(fps):
        raise DecodeError(
            f"no usable frame rate: metadata and packet times give {fps:.6g} fps "
            "(zero or missing timescale)"
        )
    return fps


def _usable(fps: float) -> bool:
    return math.isfinite(fps) and FPS_RANGE[0] <= fps <= FPS_RANGE[1]


def plan_size(
    height: int, width: int, short_side: int, max_aspect: float = MAX_ASPECT
) -> tuple[tuple[int, int, int, int] | None, tuple[int, int]]:
    """``(crop box (left, top, right, bottom) or None, (out_h, out_w))`` for a ``height x width`` frame."""
    crop = None
    h, w = height, width
    if max(h, w) > max_aspect * min(h, w):  # centre-crop the long side to max_aspect : 1
        if w > h:
            cw = int(max_aspect * h)
            left = (w - cw) // 2
            crop, w = (left, 0, left + cw, h), cw
        else:
            ch = int(max_aspect * w)
            top = (h - ch) // 2
            crop, h = (0, top, w, top + ch), ch
    scale = short_side / min(h, w)
    return crop, (max(1, round(h * scale)), max(1, round(w * scale)))


def resize(frame: np.ndarray, short_side: int | None) -> np.ndarray:
    """Crop (extreme aspect) and resize one frame with PIL bilinear; ``None`` keeps it as is.

    Used for images and cropped frames; plain videos are scaled by swscale (bilinear) inside
    decord or ffmpeg.
    """
    if short_side is None:
        return frame
    crop, (oh, ow) = plan_size(frame.shape[0], frame.shape[1], short_side)
    img = Image.fromarray(frame)
    if crop is not None:
        img = img.crop(crop)
    if img.size != (ow, oh):
        img = img.resize((ow, oh), Image.BILINEAR)
    return np.asarray(img)


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> bytes:
    """Baseline JPEG, no metadata: the same pixels always give the same bytes."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _decord(
    path: Path,
    pick: Callable[[int], list[int]],
    short_side: int | None,
    seconds: float | None = None,
) -> Decoded:
    import decord

    # One thread per reader (the Dask worker process is the unit of parallelism); get_batch
    # seeks to the chosen indices and converts only those frames, never the whole video.
    vr = decord.VideoReader(str(path), num_threads=1)
    vlen, fps = len(vr), float(vr.get_avg_fps())
    if vlen < 1:
        raise DecodeError("decord: no frames")
    measured = not _usable(fps)
    if measured:
        fps = packet_fps(path)
    vlen = frames_before(vlen, fps, seconds)
    indices = pick(vlen)
    crop, out = (None, None)
    if short_side is not None:
        h, w = vr.next().shape[:2]  # one keyframe: the size decides the resize plan
        crop, out = plan_size(h, w, short_side)
        if crop is None and out == (h, w):
            out = None
    if out is not None and crop is None:
        # Resize inside the decoder (swscale bilinear on the chosen frames): measured about
        # half the builder's cost per 640x360 video against a full-size decode + PIL resize.
        vr = decord.VideoReader(str(path), num_threads=1, width=out[1], height=out[0])
        frames = list(vr.get_batch(indices).asnumpy())
    else:
        vr.seek(0)
        frames = [resize(f, short_side) for f in vr.get_batch(indices).asnumpy()]
    return Decoded(frames, vlen, fps, vlen / fps, "decord", measured)


def decoder() -> str:
    """The primary video decoder this process uses: ``"decord"`` or ``"pyav"``."""
    choice = os.environ.get(DECODER_ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "decord", "pyav"):
        raise DecodeError(f"{DECODER_ENV}={choice!r}: use auto, decord or pyav")
    if choice == "auto":
        try:
            import decord  # noqa: F401
        except ImportError:
            return "pyav"
        return "decord"
    return choice


def _av_index(container, stream) -> tuple[list[int], list[int]]:
    """Every frame's pts in display order and the keyframes' pts, from one demux pass (no
    decoding): frame ``i`` is the i-th smallest pts, as decord and ffmpeg number them."""
    pts, keys = [], []
    for packet in container.demux(stream):
        if packet.size == 0:  # the flush packet at the end
            continue
        if packet.pts is None:
            raise DecodeError("pyav: packets without timestamps")
        pts.append(packet.pts)
        if packet.is_keyframe:
            keys.append(packet.pts)
    if not pts:
        raise DecodeError("pyav: no frames")
    return sorted(pts), sorted(keys) or [min(pts)]


def _av_run(container, stream, start: int, wanted: set[int], convert) -> dict[int, np.ndarray]:
    """Decode from the keyframe ``start`` (pts) until every pts in ``wanted`` came out.

    Packets whose frame is not wanted are decoded with ``skip_frame=NONREF``: a frame no other
    frame refers to is never reconstructed unless it is stored.
    """
    ctx = stream.codec_context
    container.seek(start, backward=True, any_frame=False, stream=stream)
    got: dict[int, np.ndarray] = {}
    last, mode = max(wanted), ""
    for packet in container.demux(stream):
        if packet.dts is not None and packet.dts > last:
            break  # every wanted frame went in (its dts <= its pts <= last); the rest is flushed
        want = "DEFAULT" if packet.pts is None or packet.pts in wanted else "NONREF"
        if want != mode:
            ctx.skip_frame = mode = want
        for frame in packet.decode():
            if frame.pts in wanted:
                got[frame.pts] = convert(frame)
        if len(got) == len(wanted):
            break
    else:
        last = None  # the demuxer's end packet flushed the decoder already
    ctx.skip_frame = "DEFAULT"
    if len(got) < len(wanted) and last is not None:  # B-frames still in the reorder delay
        for frame in ctx.decode(None):
            if frame.pts in wanted:
                got[frame.pts] = convert(frame)
    return got


def _av_converter(stream, short_side: int | None):
    """frame -> H x W x 3 uint8: swscale bilinear to the planned size (as decord resizes),
    PIL for the centre-cropped extreme aspects."""
    from av.video.reformatter import VideoReformatter

    h, w = stream.codec_context.height, stream.codec_context.width
    crop, out = plan_size(h, w, short_side) if short_side is not None else (None, (h, w))
    # One swscale context for the video's frames, on one thread: PyAV's default is a thread per
    # CPU, which a machine full of workers would oversubscribe (the worker is the unit).
    sws = VideoReformatter()
    if crop is None:
        return lambda f: sws.reformat(
            f, width=out[1], height=out[0], format="rgb24", interpolation="BILINEAR", threads=1
        ).to_ndarray()
    return lambda f: resize(sws.reformat(f, format="rgb24", threads=1).to_ndarray(), short_side)


def _pyav(
    path: Path,
    pick: Callable[[int], list[int]],
    short_side: int | None,
    seconds: float | None = None,
) -> Decoded:
    """Seek to the keyframe before each group of chosen frames and decode only from there."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise DecodeError("no video stream (audio-only or not a video)")
        stream = container.streams.video[0]
        stream.thread_type, stream.codec_context.thread_count = "SLICE", 1
        pts, keys = _av_index(container, stream)
        vlen = len(pts)
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        measured = not _usable(fps)
        if measured:
            fps = packet_fps(path)
        vlen = frames_before(vlen, fps, seconds)
        indices = pick(vlen)
        convert = _av_converter(stream, short_side)
        runs: dict[int, set[int]] = {}  # keyframe pts -> the wanted pts it leads to
        for i in set(indices):
            key = keys[max(0, bisect_right(keys, pts[i]) - 1)]
            runs.setdefault(key, set()).add(pts[i])
        got: dict[int, np.ndarray] = {}
        for key in sorted(runs):
            got.update(_av_run(container, stream, key, runs[key], convert))
    missing = [i for i in indices if pts[i] not in got]
    if missing:
        raise DecodeError(f"pyav: frames {missing[:3]} did not decode after a seek")
    return Decoded([got[pts[i]] for i in indices], vlen, fps, vlen / fps, "pyav", measured)


def _ffprobe(path: Path) -> tuple[int, float, int, int]:
    import ffmpeg

    try:
        info = ffmpeg.probe(
            str(path), cmd=find_tool("ffprobe"), select_streams="v:0", count_packets=None
        )
    except ffmpeg.Error as err:
        msg = (err.stderr or b"").decode(errors="replace").strip().splitlines()
        last = msg[-1].replace(f"{path}: ", "") if msg else "cannot read the file"
        raise DecodeError(f"not a readable video (decord and ffprobe fail: {last})") from None
    streams = info.get("streams", [])
    if not streams:
        raise DecodeError("no video stream (audio-only or not a video)")
    s = streams[0]
    num, _, den = str(s.get("avg_frame_rate") or s.get("r_frame_rate", "0/1")).partition("/")
    fps = float(num) / float(den or 1) if float(den or 1) else 0.0
    vlen = int(s.get("nb_read_packets") or s.get("nb_frames") or 0)
    return vlen, fps, int(s["height"]), int(s["width"])


def _ffmpeg(
    path: Path,
    pick: Callable[[int], list[int]],
    short_side: int | None,
    seconds: float | None = None,
) -> Decoded:
    """Stream raw frames out of ffmpeg and keep the wanted ones (fallback: full decode)."""
    import ffmpeg

    vlen, fps, h, w = _ffprobe(path)
    measured = not _usable(fps)
    if measured:
        fps = packet_fps(path)
    crop, out = plan_size(h, w, short_side) if short_side is not None else (None, (h, w))
    # The resizer decord uses (swscale bilinear): both paths give the same pixels.
    scale = crop is None and out != (h, w)
    fh, fw = out if scale else (h, w)
    for _ in range(2):  # a second pass only when the packet count overstated the frames
        if vlen < 1:
            raise DecodeError("ffmpeg: no video frames")
        used = frames_before(vlen, fps, seconds)
        indices = pick(used)
        wanted = set(indices)
        stream = ffmpeg.input(str(path), threads=1)["v:0"]
        if scale:
            stream = stream.filter("scale", fw, fh, flags="bilinear")
        proc = (
            stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", vsync=0)
            .global_args("-nostdin", "-v", "error")
            .run_async(cmd=find_tool("ffmpeg"), pipe_stdout=True)
        )
        size = fh * fw * 3
        got: dict[int, np.ndarray] = {}
        n = 0
        while True:
            buf = proc.stdout.read(size)
            if len(buf) < size:
                break
            if n in wanted:
                got[n] = np.frombuffer(buf, np.uint8).reshape(fh, fw, 3)
            n += 1
        proc.stdout.close()
        proc.wait()
        if all(i in got for i in indices):
            frames = [got[i] if scale else resize(got[i], short_side) for i in indices]
            return Decoded(frames, used, fps, used / fps, "ffmpeg", measured)
        vlen = n
    raise DecodeError(f"ffmpeg: decoded {n} frames, not the ones asked for")


def decode_image(path: Path, short_side: int | None) -> Decoded:
    """An image is a 1-frame video at 1 fps."""
    try:
        with Image.open(path) as img:
            frame = np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as err:
        raise DecodeError(f"image: {err}") from None
    return Decoded([resize(frame, short_side)], 1, 1.0, 1.0, "pil")


@contextlib.contextmanager
def member_file(tar: Path, member: tuple[int, int]) -> Iterator[Path]:
    """The bytes ``member`` = (offset, size) of ``tar`` as a temporary file, removed after.

    decord and ffmpeg read paths; a copy through the same decoders gives a video from a tar the
    same frames as the file it was packed from.
    """
    offset, size = member
    with open(tar, "rb") as src:
        src.seek(offset)
        data = src.read(size)
    if len(data) != size:
        raise DecodeError(f"member cut short: {len(data)} of {size} bytes in the tar")
    fd, name = tempfile.mkstemp(prefix="t2v2t-member-", suffix=".bin")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield Path(name)
    finally:
        os.unlink(name)


def decode_frames(
    path: str | Path,
    pick: Callable[[int], list[int]],
    short_side: int | None = 224,
    is_image: bool = False,
    member: tuple[int, int] | None = None,
    max_seconds: float | None = None,
) -> Decoded:
    """Decode the frames ``pick(vlen)`` names (flat list, any order, repeats allowed).

    ``max_seconds``: only the frames before it exist, as if the clip had been cut there
    (``vlen``, ``duration`` and ``pick``'s argument are the cut clip's).

    ``member``: (offset, size) of the media inside the tar ``path`` (webdataset input).
    Raises :class:`DecodeError` (or ``FileNotFoundError``) with a one-line reason.
    """
    path = Path(path)
    if member is not None:
        if not path.is_file():
            raise FileNotFoundError(f"missing file {path}")
        with member_file(path, member) as tmp:
            try:
                return decode_frames(tmp, pick, short_side, is_image, max_seconds=max_seconds)
            except DecodeError as err:  # the reason must not name a temporary file
                raise DecodeError(str(err).replace(str(tmp), "the tar member")) from None
    if not path.is_file():
        raise FileNotFoundError(f"missing file {path}")
    if path.stat().st_size == 0:
        raise DecodeError("zero-byte file")
    if is_image:
        return decode_image(path, short_side)
    primary = _decord if decoder() == "decord" else _pyav
    try:
        return primary(path, pick, short_side, max_seconds)
    except Exception:  # noqa: BLE001 - decoders raise assorted types; ffmpeg decides
        # decord's messages carry wall-clock stamps; the reason must be reproducible.
        return _ffmpeg(path, pick, short_side, max_seconds)
