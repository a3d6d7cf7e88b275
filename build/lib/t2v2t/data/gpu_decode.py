"""Batched JPEG decode on the training device (``data.decode_device=cuda``).

With ``decode_device`` set, the loader's workers stop before decoding: each batch carries the
chosen frames' JPEG bytes (one flat uint8 tensor plus offsets, cheap to hand between processes)
and each video's crop. :func:`decode_on_device` then decodes the whole batch in one
``torchvision.io.decode_jpeg`` call with a list input (nvJPEG's batched decode on CUDA) and
applies the CPU path's geometry on the device: the same crop box, bilinear resize
(``align_corners=False``, no antialias, as :func:`t2v2t.data.augment.decode_jpegs`) and the flip
after the resize. The result is the same ``[B, T, 3, S, S]`` uint8 ``frames`` the CPU path yields, on
the device; pixel values differ from the CPU path only by decoder and rounding tolerance.

The CPU path switches to PIL's reduced-size decoding when a crop is at least twice the output
size; this path always decodes at full size (the frames stored by the recipes are 224p, so for
224 outputs that case does not occur).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_jpeg

from t2v2t.data.augment import Crop


def pack_jpegs(jpegs: Sequence[Sequence[bytes]]) -> tuple[torch.Tensor, torch.Tensor]:
    """All frames' bytes as one flat uint8 tensor and ``[N + 1]`` offsets (video-major order)."""
    flat = [b for video in jpegs for b in video]
    offsets = torch.zeros(len(flat) + 1, dtype=torch.int64)
    if flat:
        offsets[1:] = torch.cumsum(torch.tensor([len(b) for b in flat]), 0)
    data = torch.frombuffer(bytearray(b"".join(flat)) or bytearray(1), dtype=torch.uint8)
    return data, offsets


def _decode_list(data: torch.Tensor, offsets: torch.Tensor, device: torch.device) -> list:
    bounds = offsets.tolist()
    chunks = [data[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    try:
        return decode_jpeg(chunks, mode=ImageReadMode.RGB, device=device)
    except RuntimeError as err:
        msg = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"a frame of this batch is not a readable JPEG ({msg})") from None


def crop_resize(frames: torch.Tensor, crop: Crop, size: int) -> torch.Tensor:
    """``[T, 3, H, W]`` uint8 -> the crop box, resized to ``size`` x ``size``, flipped; uint8."""
    region = frames[:, :, crop.top : crop.top + crop.height, crop.left : crop.left + crop.width]
    if region.shape[-2:] != (size, size):
        x = F.interpolate(region.float(), size=(size, size), mode="bilinear", align_corners=False)
        region = x.round_().clamp_(0, 255).to(torch.uint8)
    return region.flip(-1) if crop.flip else region


def decode_batch(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """Replace a batch's packed JPEGs by decoded ``frames`` ``[B, T, 3, S, S]`` on ``device``."""
    device = torch.device(device)
    data, offsets = batch.pop("jpeg_data"), batch.pop("jpeg_offsets")
    crops: list[Crop] = batch.pop("crops")
    size, t = int(batch.pop("frame_size")), int(batch.pop("num_frames"))
    decoded = _decode_list(data, offsets, device)
    out = torch.empty((len(crops), t, 3, size, size), dtype=torch.uint8, device=device)
    for i, crop in enumerate(crops):
        video = decoded[i * t : (i + 1) * t]
        shapes = {tuple(f.shape) for f in video}
        if len(shapes) != 1:
            raise ValueError(f"sample {batch['keys'][i]}: frames differ in size ({sorted(shapes)})")
        h, w = video[0].shape[-2:]
        if crop.top + crop.height > h or crop.left + crop.width > w:
            raise ValueError(f"sample {batch['keys'][i]}: crop {crop} exceeds the {w}x{h} frame")
        out[i] = crop_resize(torch.stack(video), crop, size)
    batch["frames"] = out
    return batch


def decode_on_device(batches: Iterator[dict[str, Any]], device: str) -> Iterator[dict[str, Any]]:
    """The loader's batches with their frames decoded on ``device`` (see the module docstring)."""
    for batch in batches:
        yield decode_batch(batch, device)
