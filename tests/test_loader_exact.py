"""The loader's faster crop/flip/resize gives the pixels of the path it replaced, bit for bit.

``_old_resize`` is a frozen copy of what ``decode_jpegs`` did after decoding before the
loader-overhead work (docs/data.md, "The loader's frame path"): bilinear resized into the
batch buffer and then mirrored; bicubic through ``squash_bicubic`` on a channels-last stack, then
mirrored. The new path mirrors the crop before the bilinear resize and runs the bicubic kernel on
NCHW planes; both must agree exactly on real JPEG frames for random crops, flips and sizes.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from t2v2t.data import augment
from t2v2t.data.augment import Crop, decode_jpegs, random_resized_crop


def _old_resize(frames: list[torch.Tensor], crop: Crop, size: int, interp: str) -> torch.Tensor:
    """The former tail of ``decode_jpegs`` (full-size decode, no draft), as it was."""
    top, left, h, w = crop.top, crop.left, crop.height, crop.width
    region = torch.stack([f[top : top + h, left : left + w] for f in frames])
    if interp == "bicubic":
        x = region.permute(0, 3, 1, 2).float()
        y = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False,
                          antialias=False)  # fmt: skip
        out = y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        return out.flip(2) if crop.flip else out
    dest = torch.empty((len(frames), size, size, 3), dtype=torch.uint8)
    target = dest.permute(0, 3, 1, 2)
    torch.ops.aten.upsample_bilinear2d.out(region.permute(0, 3, 1, 2), [size, size], False,
                                           None, None, out=target)  # fmt: skip
    if crop.flip:
        target.copy_(target.flip(-1))
    return dest


def _textured_jpegs(n: int, h: int, w: int, seed: int) -> list[bytes]:
    """Noisy frames (every pixel differs), JPEG-encoded as the shards store them (q90)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


@pytest.mark.parametrize("interp", ["bilinear", "bicubic"])
@pytest.mark.parametrize(("h", "w", "size"), [(224, 398, 224), (90, 160, 64), (61, 47, 32)])
def test_decode_jpegs_matches_the_former_path_exactly(interp, h, w, size) -> None:
    jpegs = _textured_jpegs(3, h, w, seed=h)
    frames = augment._decode_full(jpegs, "k")
    rng = np.random.default_rng(7)
    flips = 0
    for _ in range(8):
        crop = random_resized_crop(h, w, rng)
        if interp == "bilinear" and min(crop.height, crop.width) >= 2 * size:
            continue  # the PIL draft path, unchanged
        flips += crop.flip
        out = np.empty((3, size, size, 3), dtype=np.uint8)
        decode_jpegs(jpegs, crop, size, out, "k", interp)
        assert torch.equal(torch.from_numpy(out), _old_resize(frames, crop, size, interp)), crop
    assert flips > 0  # the mirrored case was exercised


def test_bilinear_mirror_commutes_with_the_resize_for_every_width() -> None:
    """What the faster bilinear flip relies on, over every input width 1..400 into 224 and 64."""
    g = torch.Generator().manual_seed(0)
    for size in (224, 64):
        for w in range(1, 401):
            x = torch.randint(0, 256, (1, 4, w, 3), dtype=torch.uint8, generator=g)
            x = x.permute(0, 3, 1, 2)  # channels-last, as the loader's stack
            after = F.interpolate(x, size=(3, size), mode="bilinear", align_corners=False)
            before = F.interpolate(x.flip(-1).contiguous(memory_format=torch.channels_last),
                                   size=(3, size), mode="bilinear", align_corners=False)  # fmt: skip
            assert torch.equal(after.flip(-1), before), (size, w)
