"""Frame decoding and augmentation: one crop (and flip) per video, applied to all its frames.

Training: VindLU's random resized crop (scale (0.5, 1.0), aspect 3/4..4/3) to ``size`` plus a
horizontal flip with p = 0.5, both drawn from ``(seed, epoch, key)`` so every frame of a video
gets the same geometry and the draw does not depend on the worker. Evaluation: resize the short
side to ``size`` and centre-crop, which is the centred square resized to ``size``.

The hot path writes uint8 HWC frames straight into a preallocated batch buffer: libjpeg-turbo
(torchvision's ``decode_jpeg`` op) decodes each frame into an HWC tensor, whose crop (a view) is
copied into one ``[T, h, w, 3]`` stack per video while it is still in the cache, and the resize is
one channels-last uint8 bilinear ``upsample_bilinear2d`` call (what ``F.interpolate`` runs;
several times faster than PIL's resize) for all frames of the video, written straight into the
batch buffer; the flip mirrors the stack before it. Bicubic (VindLU's crop) runs torch's float
kernel on NCHW planes instead (docs/data.md, "The loader's frame path"). When a bilinear crop is
at least twice the target, PIL decodes instead with ``Image.draft`` (libjpeg downscales while
decoding).
Normalisation happens later, on the training device (:func:`normalize`).
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from t2v2t.seeding import rng_for

TRAIN_SCALE = (0.5, 1.0)  # VindLU's RandomResizedCrop scale
TRAIN_RATIO = (3 / 4, 4 / 3)
# Bilinear, align_corners=False, no antialias (as VindLU's tensor transforms); the out= form.
_RESIZE = torch.ops.aten.upsample_bilinear2d.out

try:
    # The libjpeg-turbo op behind torchvision.io.decode_jpeg, called directly: the Python
    # wrapper (deprecated in torchvision 0.29 in favour of torchcodec) costs ~13 us a frame in
    # checks and a DeprecationWarning. Without it, frames decode through PIL (slower).
    from torchvision.io.image import ImageReadMode

    _DECODE_JPEG: Any = torch.ops.image.decode_jpeg
    _RGB = int(ImageReadMode.RGB.value)
except (ImportError, AttributeError, RuntimeError):  # torchvision absent or built without it
    _DECODE_JPEG = None
    _RGB = 0


@dataclass(frozen=True)
class Crop:
    """A crop box in stored-frame pixels, and whether to mirror the result."""

    top: int
    left: int
    height: int
    width: int
    flip: bool = False


def random_resized_crop(
    height: int,
    width: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = TRAIN_SCALE,
    ratio: tuple[float, float] = TRAIN_RATIO,
    hflip: bool = True,
) -> Crop:
    """torchvision's ``RandomResizedCrop.get_params`` with an explicit generator, plus a flip.

    ``hflip=False`` never flips; the flip coin is still drawn so the crop boxes stay the same.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    flip = bool(rng.random() < 0.5) and hflip
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return Crop(top, left, h, w, flip)
    # Fallback (as torchvision): the largest centred box within the ratio range.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return Crop((height - h) // 2, (width - w) // 2, h, w, flip)


def center_crop(height: int, width: int) -> Crop:
    """The centred square: resized to ``size`` it equals "short side to size, centre crop"."""
    side = min(height, width)
    return Crop((height - side) // 2, (width - side) // 2, side, side, False)


def train_crop(
    height: int,
    width: int,
    seed: int,
    epoch: int,
    key: str,
    scale: tuple[float, float] = TRAIN_SCALE,
    hflip: bool = True,
) -> Crop:
    """The training crop of one video for one epoch: a function of ``(seed, epoch, key)`` only."""
    rng = rng_for(seed, epoch, key, "augment")
    return random_resized_crop(height, width, rng, scale, hflip=hflip)


def _open(data: bytes, key: str, i: int) -> Image.Image:
    try:
        # formats=JPEG: skip probing the other plugins (the schema stores JPEG frames only).
        return Image.open(io.BytesIO(data), formats=["JPEG"])
    except Exception as err:  # PIL raises several types; name the frame either way
        raise ValueError(f"sample {key}: frame {i} is not a readable image ({err})") from None


def _decode_one(data: bytes, key: str, t: int) -> torch.Tensor:
    """Frame ``t`` at full size as an HWC uint8 tensor (torchvision's libjpeg-turbo op).

    The op writes RGB straight into the tensor: no PIL image, no export copy, and it decodes
    the stored 224p frames faster than ``PIL.Image.load`` (measured on the same bytes; PIL
    unpacks each scanline into its 4-byte RGBX layout).
    """
    try:
        # bytearray: the op wants a writable 1-D uint8 tensor (a ~2 us copy).
        chw = _DECODE_JPEG(torch.frombuffer(bytearray(data), dtype=torch.uint8), _RGB, False)
    except Exception as err:  # RuntimeError from libjpeg, ValueError for empty data
        msg = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"sample {key}: frame {t} is not a readable image ({msg})") from None
    return chw.permute(1, 2, 0)  # the op's memory is HWC: a free view


def _decode_full(jpegs: Sequence[bytes], key: str) -> list[torch.Tensor]:
    """Every frame at full size as an HWC uint8 tensor (PIL when the op is missing)."""
    if _DECODE_JPEG is None:
        return _decode_pil(jpegs, None, 0, key)[0]
    return [_decode_one(data, key, t) for t, data in enumerate(jpegs)]


def _decode_pil(
    jpegs: Sequence[bytes], crop: Crop | None, size: int, key: str
) -> tuple[list[torch.Tensor], tuple[int, int]]:
    """Frames decoded by PIL as HWC tensors, and the full ``(width, height)``.

    With a ``crop``, libjpeg downscales by 1/2, 1/4 or 1/8 while decoding (``Image.draft``):
    worth it when the crop is at least twice the target, as decoding fewer pixels beats the
    faster full-size decoder.
    """
    frames = []
    full = (0, 0)
    for t, data in enumerate(jpegs):
        im = _open(data, key, t)
        if t == 0:
            full = im.size
        if crop is not None:
            im.draft("RGB", (math.ceil(full[0] * size / crop.width),
                             math.ceil(full[1] * size / crop.height)))  # fmt: skip
        try:
            frames.append(torch.from_numpy(np.array(im.convert("RGB"))))
        except OSError as err:
            raise ValueError(f"sample {key}: frame {t} does not decode ({err})") from None
    return frames, full


def decode_jpegs(
    jpegs: Sequence[bytes],
    crop: Crop,
    size: int,
    out: np.ndarray,
    key: str = "?",
    interp: str = "bilinear",
) -> None:
    """Decode ``jpegs``, crop, flip, resize to ``size`` x ``size``, write into ``out``.

    ``out`` is a uint8 array ``[T, size, size, 3]`` (a view into the batch buffer) with
    ``T == len(jpegs)``. All frames of a video must have the same stored size. ``interp``:
    ``bilinear`` (the project's) or ``bicubic`` (VindLU's evaluation, :func:`squash_bicubic`).
    """
    if interp not in ("bilinear", "bicubic"):
        raise ValueError(f"interp must be bilinear or bicubic, got {interp!r}")
    full: tuple[int, int] | None = None  # (width, height) before a draft
    if interp == "bilinear" and min(crop.width, crop.height) >= 2 * size:
        frames, full = _decode_pil(jpegs, crop, size, key)
    elif _DECODE_JPEG is None:
        frames, full = _decode_pil(jpegs, None, 0, key)
    else:
        # One by one: each frame's crop is copied out while the decoder's output is still in
        # the cache (measured: ~5% of the non-decoding time saved against decoding all first).
        frames = (_decode_one(data, key, t) for t, data in enumerate(jpegs))
    _crop_resize(frames, full, crop, size, torch.from_numpy(out), key, interp)


def _box(
    shape: tuple[int, ...], full: tuple[int, int] | None, crop: Crop, key: str
) -> tuple[int, int, int, int]:
    """``crop`` in the decoded frame's pixels ``(top, left, h, w)``; it is smaller after a draft."""
    dec_h, dec_w = shape[:2]
    full_w, full_h = full if full is not None else (dec_w, dec_h)
    if crop.top + crop.height > full_h or crop.left + crop.width > full_w:
        raise ValueError(
            f"sample {key}: crop {crop} exceeds the {full_w}x{full_h} frame "
            "(the metadata 'size' disagrees with the JPEGs)"
        )
    sx, sy = dec_w / full_w, dec_h / full_h  # < 1 after a draft
    top, left = int(crop.top * sy), int(crop.left * sx)
    h = min(max(1, round(crop.height * sy)), dec_h - top)
    w = min(max(1, round(crop.width * sx)), dec_w - left)
    return top, left, h, w


def _crop_resize(
    frames: Iterable[torch.Tensor],
    full: tuple[int, int] | None,
    crop: Crop,
    size: int,
    dest: torch.Tensor,
    key: str,
    interp: str,
) -> None:
    """The frames' crops gathered as they come, resized (and flipped) into ``dest``."""
    n = dest.shape[0]
    first: tuple[int, ...] = ()
    for t, f in enumerate(frames):
        if t == 0:
            first = tuple(f.shape)
            top, left, h, w = _box(first, full, crop, key)
            copy = (h, w) == (size, size)  # no resampling (eval on short-side-224 frames)
            if copy:
                buf = dest
            elif interp == "bicubic":  # float NCHW planes for the bicubic kernel
                buf = torch.empty((n, 3, h, w), dtype=torch.float32)
            else:  # a reused per-thread buffer: no malloc/page faults per video
                buf = _scratch(n * h * w * 3).view(n, h, w, 3)
        elif tuple(f.shape) != first:
            raise ValueError(
                f"sample {key}: frame {t} is {f.shape[1]}x{f.shape[0]}, frame 0 {first[1]}x{first[0]}"
            )
        region = f[top : top + h, left : left + w]
        if copy:
            buf[t].copy_(region.flip(1) if crop.flip else region)
        elif interp == "bicubic":
            buf[t].copy_(region.permute(2, 0, 1))
        else:
            buf[t].copy_(region)
    if not first:
        raise ValueError(f"sample {key}: no frames to decode")
    if copy:
        return
    if interp == "bicubic":
        _bicubic_into(buf, crop.flip, size, dest)
        return
    # The flip mirrors the crop before the resize: the same pixels as mirroring the result
    # (the bilinear weights are symmetric; tests/test_loader_exact.py) for one pass less.
    src = buf.flip(2) if crop.flip else buf
    # NHWC memory viewed as NCHW is channels-last: the fast uint8 bilinear kernel, writing
    # straight into the batch buffer (also channels-last) through the op's out= form.
    _RESIZE(src.permute(0, 3, 1, 2), [size, size], False, None, None, out=dest.permute(0, 3, 1, 2))


def _bicubic_into(x: torch.Tensor, flip: bool, size: int, dest: torch.Tensor) -> None:
    """float ``[T, 3, h, w]`` crops -> :func:`squash_bicubic`'s pixels, mirrored when ``flip``,
    written into ``dest`` (uint8 ``[T, size, size, 3]``).

    The same pixels as ``squash_bicubic`` then a flip (tests/test_loader_exact.py) in less
    time: the float kernel runs on contiguous NCHW planes (channels-last float is ~1.5x slower
    in it), each crop converts straight into them, and the rounded result is written once.
    """
    y = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=False)
    y.round_().clamp_(0, 255)  # integral now: the uint8 copy below converts it exactly
    if flip:  # float bicubic is not mirror-exact (rounding): the flip comes after, on uint8
        dest.copy_(y.to(torch.uint8).flip(-1).permute(0, 2, 3, 1))
    else:
        dest.copy_(y.permute(0, 2, 3, 1))


def squash_bicubic(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> uint8 ``[T, size, size, 3]``: bicubic, no antialiasing, rounded
    and clamped back to uint8 (how torchvision's tensor ``Resize`` treated uint8 video frames in
    VindLU's time). Frames already ``size`` x ``size`` are returned unchanged."""
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 frames [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}"
        )
    if tuple(frames.shape[1:3]) == (size, size):
        return frames
    x = frames.permute(0, 3, 1, 2).float()
    y = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=False)
    return y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def full_frame(height: int, width: int) -> Crop:
    """The whole frame: squashed to a square, the aspect ratio is not kept (VindLU's eval)."""
    return Crop(0, 0, height, width, False)


_SCRATCH = threading.local()


def _scratch(numel: int) -> torch.Tensor:
    """A flat uint8 buffer of at least ``numel`` bytes, reused by this thread."""
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.numel() < numel:
        buf = _SCRATCH.buf = torch.empty(max(numel, 1 << 20), dtype=torch.uint8)
    return buf[:numel]


def normalize(frames: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 frames ``[..., 3, H, W]`` -> contiguous float32 ``(x / 255 - mean) / std``.

    Runs on ``frames.device`` (move the uint8 batch to the GPU first: 4x less to copy). ``mean``
    and ``std`` are in the [0, 1] scale (timm's ``pretrained_cfg`` convention).
    """
    if frames.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 frames, got {frames.dtype}")
    if frames.shape[-3] != 3:
        raise ValueError(f"normalize expects [..., 3, H, W], got {tuple(frames.shape)}")
    dev = frames.device
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=dev).view(3, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=dev).view(3, 1, 1)
    x = frames.contiguous().float()
    return x.mul_(1.0 / 255.0).sub_(mean_t).div_(std_t)
