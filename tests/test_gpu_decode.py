"""Batched device decode (``decode_device``): the CPU path's crops, resize and flips, same batches.

On a machine without CUDA the batched path runs with ``decode_device="cpu"`` (the same code,
torchvision's list-input ``decode_jpeg`` on CPU); the CUDA comparison runs where a GPU is.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from t2v2t.data.augment import Crop
from t2v2t.data.frames import frame_indices
from t2v2t.data.gpu_decode import crop_resize, decode_batch, pack_jpegs
from t2v2t.data.loader import TrainSource, make_train_loader
from t2v2t.data.schema import FORMAT, SampleMeta, encode_sample
from t2v2t.data.shards import info_dict, shard_name, write_manifest, write_shard

H, W, SIZE, FRAMES = 48, 64, 32, 4


def _jpeg(rng: np.random.Generator) -> bytes:
    """A textured frame (gradient plus noise) so resampling differences would show."""
    ramp = np.linspace(0, 200, W)[None, :, None] + np.linspace(0, 50, H)[:, None, None]
    img = np.clip(ramp + rng.normal(0, 25, (H, W, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpu_decode") / "vid"
    out.mkdir()
    rng = np.random.default_rng(0)
    infos, k = [], 0
    for s, n in enumerate([5, 4]):
        samples = []
        for _ in range(n):
            key = f"vid_{k:03d}"
            segs = frame_indices(FRAMES, 30, "rand", key, seed=0, candidates=2)
            meta = SampleMeta(
                key=key, dataset="vid", split="train", source=f"{key}.mp4",
                captions=[f"caption of {key}"], fps=10.0, vlen=30, duration=3.0,
                frame_indices=segs,
                sampling={"mode": "rand", "num_frames": FRAMES, "candidates": 2, "seed": 0},
                size=[H, W],
            )  # fmt: skip
            samples.append(encode_sample(meta, [_jpeg(rng) for seg in segs for _ in seg]))
            k += 1
        infos.append(write_shard(out / shard_name("vid", "train", s), samples))
    write_manifest(
        out,
        {
            "format": FORMAT, "dataset": "vid", "split": "train", "num_frames": FRAMES,
            "mode": "rand", "candidates": 2, "seed": 0, "short_side": H, "jpeg_quality": 90,
            "num_samples": k, "num_failed": 0, "shards": [info_dict(i) for i in infos],
            "created_with": {},
        },
    )  # fmt: skip
    return out


def _batches(shards: Path, **kw) -> list[dict]:
    loader = make_train_loader(
        [TrainSource(shards, 3, FRAMES)], None, seed=3, epoch=1, image_size=SIZE,
        shuffle_buffer=4, **kw,
    )  # fmt: skip
    return list(loader)


def _assert_close(cpu: list[dict], dev: list[dict], max_diff: int, mean_diff: float) -> None:
    assert [b["keys"] for b in cpu] == [b["keys"] for b in dev]
    for a, b in zip(cpu, dev, strict=True):
        assert b["frames"].shape == a["frames"].shape and b["frames"].dtype == torch.uint8
        assert torch.equal(a["frame_indices"], b["frame_indices"])
        diff = (a["frames"].int() - b["frames"].cpu().int()).abs()
        assert diff.max() <= max_diff and diff.float().mean() < mean_diff, diff.max()


@pytest.mark.parametrize("workers", [0, 1])
def test_batched_decode_gives_the_cpu_paths_batches(shards, workers) -> None:
    cpu = _batches(shards)
    dev = _batches(shards, decode_device="cpu", num_workers=workers)
    # Same decoder (libjpeg-turbo); only the resize's rounding differs (uint8 kernel vs float).
    _assert_close(cpu, dev, max_diff=2, mean_diff=0.3)
    # A crop or flip off by one pixel would show as a large mean difference on textured frames.
    shifted = [dict(b, frames=b["frames"].roll(1, dims=-1)) for b in dev]
    with pytest.raises(AssertionError):
        _assert_close(cpu, shifted, max_diff=2, mean_diff=0.3)


def test_crop_resize_matches_the_cpu_decoder_on_every_crop_kind() -> None:
    from t2v2t.data.augment import decode_jpegs

    data = _jpeg(np.random.default_rng(1))
    from torchvision.io import decode_jpeg

    chw = torch.stack([decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8))] * 2)
    for crop in [Crop(4, 8, 30, 40), Crop(4, 8, 30, 40, flip=True), Crop(0, 0, SIZE, SIZE, True)]:
        out = np.empty((2, SIZE, SIZE, 3), dtype=np.uint8)
        decode_jpegs([data, data], crop, SIZE, out)
        mine = crop_resize(chw, crop, SIZE).permute(0, 2, 3, 1).numpy()
        assert np.abs(mine.astype(int) - out.astype(int)).max() <= 2, crop
    assert chw.shape[1:] == (3, H, W)


def test_unreadable_jpeg_is_a_clear_error() -> None:
    data, offsets = pack_jpegs([[_jpeg(np.random.default_rng(2)), b"not a jpeg at all"]])
    batch = {
        "jpeg_data": data, "jpeg_offsets": offsets, "crops": [Crop(0, 0, 20, 20)],
        "frame_size": 16, "num_frames": 2, "keys": ["k"],
    }  # fmt: skip
    with pytest.raises(ValueError, match="not a readable JPEG"):
        decode_batch(batch, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (nvJPEG)")
def test_cuda_decode_within_jpeg_decoder_tolerance(shards) -> None:
    cpu = _batches(shards)
    dev = _batches(shards, decode_device="cuda")
    assert dev[0]["frames"].device.type == "cuda"
    # nvJPEG's IDCT and chroma upsampling differ from libjpeg-turbo's by a few levels.
    _assert_close(cpu, dev, max_diff=40, mean_diff=3.0)
