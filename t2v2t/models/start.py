"""The model a training run starts from: the preset built to the run's sizes, or a checkpoint's
weights fitted to them (docs/architecture.md).

The run's settings arrive as a :class:`TrainModelSpec` (the training config makes one), so the
model package decides weights and sizes without knowing the training config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from t2v2t.models.build import build_model, load_weights
from t2v2t.models.loading import load_any_checkpoint
from t2v2t.models.vision import fit_temporal_rows

__all__ = ["TrainModelSpec", "build_for_training", "init_from_checkpoint", "set_dropout"]


@dataclass(frozen=True)
class TrainModelSpec:
    """What a training run asks of its model: the preset and the sizes the run sets."""

    preset: str
    num_frames: int  # rows of the temporal position embedding: the most frames any source has
    init: str | None = None  # None: the preset's pretrained weights; "random": none
    image_size: int | None = None  # None: the preset's
    grad_checkpointing: bool = False
    dropout: float | None = None  # None: the preset's
    # Stochastic depth, training only (VideoEncoder.set_drop_path); 0 = none.
    drop_path: float = 0.0


def set_dropout(model: nn.Module, p: float) -> None:
    """Force every dropout probability to ``p`` (``0`` makes steps comparable across runs)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
        # Attention implementations that keep the rate as a float attribute (HF BERT, timm).
        for attr in ("dropout_prob", "attention_dropout", "attn_drop_rate"):
            if isinstance(getattr(module, attr, None), float):
                setattr(module, attr, p)


def build_for_training(spec: TrainModelSpec) -> nn.Module:
    """The model of ``spec``'s preset (the model package decides weights and sizes);
    ``spec.init="random"`` when a checkpoint supplies every weight anyway."""
    overrides: dict[str, Any] = {}
    if spec.image_size is not None:
        overrides["image_size"] = spec.image_size
    if spec.grad_checkpointing:
        overrides["grad_checkpointing"] = True
    # VindLU builds the temporal position embedding for the training frame count (fine-tuning:
    # 12 or 32 rows); a checkpoint with fewer rows is zero-padded to it (init_from_checkpoint).
    overrides["num_frames"] = spec.num_frames
    model = build_model(spec.preset, spec.init, overrides=overrides or None)
    if spec.dropout is not None:
        set_dropout(model, spec.dropout)
    model.vision.set_drop_path(spec.drop_path)
    return model


def init_from_checkpoint(
    spec: TrainModelSpec, path: str | Path, say: Callable[[str], Any] = print
) -> nn.Module:
    """The model to train from ``path`` (a project ``.pt``, a VindLU ``.pth`` or an exported
    folder). A project file fills ``spec``'s preset model; another source brings its own
    architecture. The temporal position embedding is fitted to the training frame count the way
    VindLU's loader does: extra rows are zeros, surplus rows are cut. An unusable file is a
    :class:`t2v2t.errors.CheckpointError`."""
    loaded = load_any_checkpoint(path, spec.preset, say=say)
    frames = spec.num_frames
    if loaded.source == "project":
        model = build_for_training(replace(spec, init="random"))  # every weight is in the file
        state = loaded.model.state_dict()
        state["vision.temporal_pos"] = fit_temporal_rows(state["vision.temporal_pos"], frames)
        load_weights(model, state)
        return model
    new = loaded.model
    if new.config.preset != spec.preset:
        say(f"[init] {path}: its architecture ({loaded.source}) replaces PRESET={spec.preset}")
    new.vision.set_num_frames(frames)
    new.config.num_frames = frames
    new.set_grad_checkpointing(spec.grad_checkpointing)
    if spec.dropout is not None:
        set_dropout(new, spec.dropout)
    new.vision.set_drop_path(spec.drop_path)
    return new
