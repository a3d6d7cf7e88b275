"""Frame decoding and augmentation: one crop (and flip) per video, applied to all its frames.

Training: VindLU's random resized crop (scale (0.5, 1.0), aspect 3/4..4/3) to ``size`` plus a
horizontal flip with p = 0.5, both drawn from ``(seed, epoch, key)`` so every frame of a video
gets the same geometry and the draw does not depend on the worker. Evaluation: resize the short
side to ``size`` and centre-crop, which is the centred square resized to ``size``.

The hot path writes uint8 HWC frames straight into a preallocated batch buffer: PIL decodes
(with ``Image.draft`` when the crop is at least twice the target, so the JPEG decoder itself
downscales), the crop is a numpy slice, and the resize is one channels-last uint8 bilinear
``torch.nn.functional.interpolate`` call for all frames of the video (several times faster than
PIL's resize). Normalisation happens later, on the training device (:func:`normalize`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from t2v2t.seeding import rng_for

TRAIN_SCALE = (0.5, 1.0)  # VindLU's RandomResizedCrop scale
TRAIN_RATIO = (3 / 4, 4 / 3)


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


def decode_frames(
    jpegs: Sequence[bytes], crop: Crop, size: int, out: np.ndarray, key: str = "?"
) -> None:
    """Decode ``jpegs``, crop, flip, resize to ``size`` x ``size``, write into ``out``.

    ``out`` is a uint8 array ``[T, size, size, 3]`` (a view into the batch buffer) with
    ``T == len(jpegs)``. All frames of a video must have the same stored size.
    """
    # Decode every frame of the video first, then crop them all: back-to-back decodes keep
    # libjpeg's tables and code hot in cache (measured ~10% faster per frame than interleaving).
    images: list[Image.Image] = []
    draft_to: tuple[int, int] | None = None
    full_w = full_h = 0
    for t, data in enumerate(jpegs):
        im = _open(data, key, t)
        if t == 0:
            full_w, full_h = im.size
            if min(crop.width, crop.height) >= 2 * size:
                # Let libjpeg downscale by 2/4/8 while decoding: far cheaper than decoding all.
                draft_to = (
                    math.ceil(full_w * size / crop.width),
                    math.ceil(full_h * size / crop.height),
                )
            if crop.top + crop.height > full_h or crop.left + crop.width > full_w:
                raise ValueError(
                    f"sample {key}: crop {crop} exceeds the {full_w}x{full_h} frame "
                    "(the metadata 'size' disagrees with the JPEGs)"
                )
        elif im.size != (full_w, full_h):
            raise ValueError(f"sample {key}: frame {t} is {im.size}, frame 0 {(full_w, full_h)}")
        if draft_to is not None:
            im.draft("RGB", draft_to)  # updates im.size to the reduced decode size
        im = im.convert("RGB") if im.mode != "RGB" else im
        try:
            im.load()
        except OSError as err:
            raise ValueError(f"sample {key}: frame {t} does not decode ({err})") from None
        images.append(im)
    dec_w, dec_h = images[0].size
    sx, sy = dec_w / full_w, dec_h / full_h  # < 1 after a draft
    top, left = int(crop.top * sy), int(crop.left * sx)
    h = min(max(1, round(crop.height * sy)), dec_h - top)
    w = min(max(1, round(crop.width * sx)), dec_w - left)
    stack: np.ndarray | None = None
    for t, im in enumerate(images):
        # Crop before anything else: every later step (raw export, flip) sees fewer pixels.
        region_im = im.crop((left, top, left + w, top + h))
        if crop.flip:
            region_im = region_im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        region = np.asarray(region_im)
        if (h, w) == (size, size):
            out[t] = region  # no resampling needed (eval on short-side-224 frames)
            continue
        if stack is None:
            stack = np.empty((len(images), h, w, 3), dtype=np.uint8)
        stack[t] = region
    if stack is not None:
        # NHWC memory viewed as NCHW is channels-last: the fast uint8 bilinear kernel.
        resized = F.interpolate(
            torch.from_numpy(stack).permute(0, 3, 1, 2),
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=False,
        )
        np.copyto(out, resized.permute(0, 2, 3, 1).numpy())  # contiguous: a memcpy


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
