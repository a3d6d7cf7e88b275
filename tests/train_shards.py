"""Small training shards for the trainer tests, written with the real shard writer.

Each "video" is a stack of tiny JPEG frames showing two colours (top half / bottom half) with a
caption naming them, so the dual encoders can learn the pairing within a few dozen steps.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from t2v2t.data.schema import FORMAT, SampleMeta, encode_sample
from t2v2t.data.shards import info_dict, shard_name, write_manifest, write_shard

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 60, 220),
    "yellow": (230, 220, 40),
    "purple": (150, 40, 180),
    "orange": (240, 140, 20),
    "white": (245, 245, 245),
    "black": (10, 10, 10),
}


def _jpeg(top: tuple[int, int, int], bottom: tuple[int, int, int], size: int, t: int) -> bytes:
    img = np.zeros((size, size, 3), np.uint8)
    cut = size // 2 + (t % 3) - 1  # the border moves a little from frame to frame
    img[:cut], img[cut:] = top, bottom
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_train_shards(
    root: Path,
    *,
    dataset: str = "toy",
    split: str = "train",
    num_samples: int = 48,
    num_frames: int = 4,
    per_shard: int = 8,
    size: int = 32,
) -> Path:
    """Write ``root/<dataset>/<split>_<N>f`` with its manifest; returns the folder."""
    out = Path(root) / dataset / f"{split}_{num_frames}f"
    out.mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    samples = []
    for i in range(num_samples):
        top, bottom = names[i % 8], names[(i // 8 + i) % 8]
        meta = SampleMeta(
            key=f"{dataset}_{i:04d}",
            dataset=dataset,
            split=split,
            source=f"videos/{i:04d}.mp4",
            captions=[f"{top} above {bottom}", f"a {top} area over a {bottom} one"],
            fps=25.0,
            vlen=num_frames * 8,
            duration=num_frames * 8 / 25.0,
            frame_indices=[[8 * t + 4] for t in range(num_frames)],
            sampling={"mode": "rand", "num_frames": num_frames, "candidates": 1, "seed": 0},
            size=[size, size],
        )
        jpegs = [_jpeg(COLOURS[top], COLOURS[bottom], size, t) for t in range(num_frames)]
        samples.append(encode_sample(meta, jpegs))
    infos = []
    for s in range(0, num_samples, per_shard):
        name = shard_name(dataset, split, s // per_shard)
        infos.append(write_shard(out / name, samples[s : s + per_shard]))
    write_manifest(
        out,
        {
            "format": FORMAT,
            "dataset": dataset,
            "split": split,
            "num_frames": num_frames,
            "mode": "rand",
            "candidates": 1,
            "seed": 0,
            "short_side": size,
            "jpeg_quality": 90,
            "num_samples": num_samples,
            "num_failed": 0,
            "shards": [info_dict(i) for i in infos],
            "created_with": {},
        },
    )
    return out


def tiny_overrides(shards: Path, *extra: str, source: str = "webvid") -> list[str]:
    """Overrides that make the tiny preset a seconds-per-epoch CPU run on ``shards``.

    ``source``: the recipe's source to point at ``shards`` (pre-training also drops cc3m).
    """
    return [
        f"data.sources.{source}.dir={shards}",
        *(["data.sources.cc3m=null"] if source == "webvid" else []),
        "data.batch_size=8",
        "data.num_workers=0",
        f"data.sources.{source}.num_frames=2",
        f"data.sources.{source}.max_text_len=16",
        "model.image_size=32",
        "train.threads=1",
        "train.deterministic=true",
        "optim.lr=1e-3",
        "optim.warmup_epochs=0.25",
        # One caption per video keeps these epochs short; per-caption epochs have their own
        # tests (tests/test_caption_epochs.py).
        "data.captions_per_epoch=one",
        *extra,
    ]
