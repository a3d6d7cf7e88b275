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
from t2v2t.retrieval.preprocess import autocast_for

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
    """[B, D]: the frame mean of the encoder's pooled per-frame features (fp32)."""
    return model.vision(model._float_frames(frames))[1].mean(1).float()


@torch.no_grad()
def _features(model: VindLU, frames: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    return torch.cat(
        [
            clip_features(model, frames[i : i + batch_size])
            for i in range(0, len(frames), batch_size)
        ]
    )


@dataclass(frozen=True)
class ProbeSettings:
    """How a probe trains (scripts/probe_attribute.py's flags)."""

    steps: int
    batch_size: int = 16
    lr: float = 1e-3  # the linear head's
    train_encoder: bool = False
    encoder_lr: float = 5e-4
    temporal_lr_scale: float = 1.0
    weight_decay: float = 0.0
    eval_every: int = 50
    seed: int = 0


def _param_groups(model: VindLU, head: torch.nn.Module, s: ProbeSettings) -> list[dict]:
    """The head at ``lr``; with ``train_encoder`` the video encoder too, its temporal modules at
    ``encoder_lr * temporal_lr_scale`` (as ``optim.temporal_lr_scale``, docs/training.md,
    "Teaching frame order")."""
    groups = [{"params": list(head.parameters()), "lr": s.lr}]
    if s.train_encoder:
        for scale, temporal in ((1.0, False), (s.temporal_lr_scale, True)):
            params = [
                p
                for n, p in model.named_parameters()
                if n.startswith("vision.") and is_temporal(n) == temporal
            ]
            groups.append({"params": params, "lr": s.encoder_lr * scale})
    return groups


def _inputs(model: VindLU, train: Clips, test: Clips, s: ProbeSettings, device: torch.device):
    """What the head reads: the frames (encoder trained), else the frozen features once,
    standardised with the training clips' statistics."""
    train_x, test_x = train.frames.to(device), test.frames.to(device)
    if s.train_encoder:
        return train_x, test_x
    with _autocast(device):
        train_x, test_x = _features(model, train_x), _features(model, test_x)
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    return (train_x - mean) / std, (test_x - mean) / std


def _autocast(device: torch.device):
    # bf16 autocast on CUDA, as training and evaluation use for project models; fp32 on a CPU.
    return autocast_for(device, "project")


def run_probe(
    model: VindLU,
    train: Clips,
    test: Clips,
    settings: ProbeSettings,
    *,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = print,
) -> list[dict[str, float]]:
    """Train the probe for ``settings.steps`` steps on ``device``; rows of {step, loss,
    train_acc, test_acc} every ``eval_every`` steps and at the end."""
    s, device = settings, torch.device(device)
    torch.manual_seed(s.seed)
    model.to(device).eval()
    head = torch.nn.Linear(model.vision.width, len(train.classes)).to(device)
    opt = torch.optim.AdamW(_param_groups(model, head, s), weight_decay=s.weight_decay)
    train_x, test_x = _inputs(model, train, test, s, device)
    labels = {"train": train.labels.to(device), "test": test.labels.to(device)}
    gen = torch.Generator().manual_seed(s.seed)

    def accuracy(x: torch.Tensor, y: torch.Tensor) -> float:
        model.eval()
        with torch.no_grad(), _autocast(device):
            feats = _features(model, x) if s.train_encoder else x
            return (head(feats.float()).argmax(1) == y).float().mean().item()

    rows, losses = [], []
    for step in range(1, s.steps + 1):
        idx = torch.randint(0, len(train.labels), (s.batch_size,), generator=gen).to(device)
        model.train(s.train_encoder)
        with _autocast(device):
            x = clip_features(model, train_x[idx]) if s.train_encoder else train_x[idx]
            loss = F.cross_entropy(head(x).float(), labels["train"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % s.eval_every == 0 or step == s.steps:
            row = {
                "step": step,
                "loss": sum(losses) / len(losses),
                "train_acc": accuracy(train_x, labels["train"]),
                "test_acc": accuracy(test_x, labels["test"]),
            }
            losses = []
            rows.append(row)
            log(
                f"[probe] step {step}: loss {row['loss']:.3f}, train acc {row['train_acc']:.3f}, "
                f"test acc {row['test_acc']:.3f}"
            )
    return rows
