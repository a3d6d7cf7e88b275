"""Attribute probe: does (or can) a video encoder read one attribute of the synthetic clips?

The synthetic corpora record every clip's colour, shape, size, background, direction and speed
(``synthetic_attributes.json``). A probe trains a linear classifier for one attribute on the
video encoder's clip feature (the frame mean of the pooled per-frame features, what
``vision_proj`` sees) and reports held-out accuracy:

- frozen (default): the encoder is fixed, so the accuracy says what a checkpoint already encodes;
- ``train_encoder``: the encoder learns too, so the accuracy says whether it *can* learn the
  attribute in that many steps.

Appearance attributes are readable frame by frame; direction and speed only from frame order, so
a direction probe is the upper bound of the demo's temporal check (``t2v2t/tools/temporal.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from t2v2t.data.eval_loader import make_eval_loader
from t2v2t.models.vindlu import VindLU, is_temporal

ATTRIBUTES = ("colour", "shape", "size", "background", "direction", "speed")


@dataclass
class Clips:
    frames: torch.Tensor  # [N, T, 3, H, W] uint8
    labels: torch.Tensor  # [N] class index
    classes: list[str]


def attribute_of(info: dict, attribute: str, where: str) -> str:
    """One clip's attribute; multi-event clips (ActivityNet/DiDeMo style) are not probed."""
    events = info.get("events") or [info]
    if len(events) != 1:
        raise ValueError(f"{where} has {len(events)} events; probe single-event corpora (msrvtt)")
    return str(events[0][attribute])


def load_clips(
    shard_dir: str | Path,
    attributes_file: str | Path,
    attribute: str,
    *,
    num_frames: int,
    image_size: int,
    classes: list[str] | None = None,
) -> Clips:
    """Every clip of a shard folder (its stored middle frames) with its attribute's class."""
    if attribute not in ATTRIBUTES:  # before any shard is read
        raise ValueError(f"unknown attribute {attribute!r}; choose one of {', '.join(ATTRIBUTES)}")
    attrs = json.loads(Path(attributes_file).read_text())
    loader = make_eval_loader(
        shard_dir, batch_size=64, num_frames=num_frames, image_size=image_size
    )
    frames, names = [], []
    for batch in loader:
        frames.append(batch["frames"])
        for key in batch["keys"]:
            if key not in attrs:
                raise ValueError(
                    f"clip {key} of {shard_dir} is not in {attributes_file}; pass the "
                    "synthetic_attributes.json of the corpus these shards were built from"
                )
            names.append(attribute_of(attrs[key], attribute, f"{attributes_file}: {key}"))
    classes = classes or sorted(set(names))
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise ValueError(f"{shard_dir}: {attribute} values {unknown} never seen in training")
    labels = torch.tensor([classes.index(n) for n in names])
    return Clips(torch.cat(frames), labels, classes)


def clip_features(model: VindLU, frames: torch.Tensor) -> torch.Tensor:
    """[B, D]: the frame mean of the encoder's pooled per-frame features."""
    return model.vision(model._float_frames(frames))[1].mean(1)


@torch.no_grad()
def _features(model: VindLU, frames: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    return torch.cat(
        [
            clip_features(model, frames[i : i + batch_size])
            for i in range(0, len(frames), batch_size)
        ]
    )


def run_probe(
    model: VindLU,
    train: Clips,
    test: Clips,
    *,
    steps: int,
    batch_size: int = 16,
    lr: float = 1e-3,
    train_encoder: bool = False,
    encoder_lr: float = 5e-4,
    temporal_lr_scale: float = 1.0,
    eval_every: int = 50,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> list[dict[str, float]]:
    """Train the probe for ``steps`` steps; rows of {step, loss, train_acc, test_acc}."""
    torch.manual_seed(seed)
    head = torch.nn.Linear(model.vision.width, len(train.classes))
    groups = [{"params": list(head.parameters()), "lr": lr}]
    model.eval()
    if train_encoder:
        for scale, pick in ((1.0, False), (temporal_lr_scale, True)):
            params = [
                p
                for n, p in model.named_parameters()
                if n.startswith("vision.") and is_temporal(n) == pick
            ]
            groups.append({"params": params, "lr": encoder_lr * scale})
        train_x, test_x = train.frames, test.frames
    else:  # frozen: features once, standardised with the training clips' statistics
        train_x, test_x = _features(model, train.frames), _features(model, test.frames)
        mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
        train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)

    def features(x: torch.Tensor) -> torch.Tensor:
        return clip_features(model, x) if train_encoder else x

    def accuracy(x: torch.Tensor, y: torch.Tensor) -> float:
        model.eval()
        with torch.no_grad():
            feats = _features(model, x) if train_encoder else x
            return (head(feats).argmax(1) == y).float().mean().item()

    rows, losses = [], []
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(train.labels), (batch_size,), generator=gen)
        if train_encoder:
            model.train()
        loss = F.cross_entropy(head(features(train_x[idx])), train.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % eval_every == 0 or step == steps:
            row = {
                "step": step,
                "loss": sum(losses) / len(losses),
                "train_acc": accuracy(train_x, train.labels),
                "test_acc": accuracy(test_x, test.labels),
            }
            losses = []
            rows.append(row)
            log(
                f"[probe] step {step}: loss {row['loss']:.3f}, train acc {row['train_acc']:.3f}, "
                f"test acc {row['test_acc']:.3f}"
            )
    return rows
