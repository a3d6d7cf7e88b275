"""AdamW parameter groups and the per-step cosine learning-rate schedule with linear warm-up."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from t2v2t.models.vindlu import is_pretrained_text, is_temporal

# Parameters that get no weight decay besides biases and norms (any tensor with < 2 dims):
# the learnable temperature and position / type embeddings, as in VindLU and BEiT.
# Matched as substrings of the parameter name; the temperature by its exact leaf name ("temp" as
# a substring would also match every "temporal" weight).
NO_DECAY_NAMES = (
    "pos_embed",
    "temporal_pos",
    "position_embeddings",
    "token_type_embeddings",
    "cls_token",
)


DECAY_RULES = ("vindlu", "project")  # optim.decay_rule (docs/training.md)


def no_weight_decay(name: str, param: torch.Tensor, rule: str = "project") -> bool:
    """Whether ``param`` is exempt from weight decay. ``vindlu``: VindLU's add_weight_decay, only
    1-D parameters and ``.bias`` names (the 0-D temperature, position embeddings and class token
    are decayed); ``project``: also every tensor with < 2 dims and :data:`NO_DECAY_NAMES`."""
    if rule == "vindlu":
        return param.ndim == 1 or name.endswith(".bias")
    leaf = name.rsplit(".", 1)[-1]
    return param.ndim < 2 or any(k in name for k in NO_DECAY_NAMES) or leaf == "temp"


def lr_scale_for(name: str, text_lr_scale: float = 1.0, temporal_lr_scale: float = 1.0) -> float:
    """The lr multiplier of one parameter: pre-trained BERT weights, temporal modules, the rest."""
    if is_pretrained_text(name):
        return text_lr_scale
    return temporal_lr_scale if is_temporal(name) else 1.0


def param_groups(
    model: nn.Module,
    weight_decay: float,
    text_lr_scale: float = 1.0,
    temporal_lr_scale: float = 1.0,
    decay_rule: str = "project",
) -> list[dict[str, Any]]:
    """AdamW groups: decayed weights vs. the exempt ones (:func:`no_weight_decay`), each split
    by ``lr_scale`` (:func:`lr_scale_for`)."""
    groups: dict[tuple[bool, float], list[torch.Tensor]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            scale = lr_scale_for(name, text_lr_scale, temporal_lr_scale)
            groups.setdefault((no_weight_decay(name, p, decay_rule), scale), []).append(p)
    return [
        {"params": ps, "weight_decay": 0.0 if nd else weight_decay, "lr_scale": scale}
        for (nd, scale), ps in sorted(groups.items())
    ]


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    eps: float = 1e-8,
    text_lr_scale: float = 1.0,
    temporal_lr_scale: float = 1.0,
    decay_rule: str = "project",
) -> torch.optim.AdamW:
    # The fused kernel (CPU and CUDA) is several times faster than the per-tensor loop.
    groups = param_groups(model, weight_decay, text_lr_scale, temporal_lr_scale, decay_rule)
    for group in groups:  # right before the first schedule step too
        group["lr"] = lr * group["lr_scale"]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)


SCHEDULES = ("paper", "vindlu")  # optim.schedule (docs/training.md)
# VindLU's configs: scheduler min_lr_multi, and warm-up epochs per recipe (pretrain.py: 1;
# ret_msrvtt.py, ret_didemo.py: 0; ret_anet.py keeps pretrain.py's 1).
VINDLU_MIN_LR_MULTI = 0.01
VINDLU_WARMUP_EPOCHS = {"pretrain": 1.0, "finetune-anet": 1.0}  # any other task: 0


def vindlu_lr(step: int, *, lr: float, warmup_steps: int, total_steps: int) -> float:
    """VindLU's get_cosine_schedule_with_warmup at ``step``: lr x max(0.01, step / warm-up) in
    warm-up, then lr x max(0.01, half-cosine); the floor is a clamp, not a shifted cosine."""
    if step < warmup_steps:
        return lr * max(VINDLU_MIN_LR_MULTI, step / max(1, warmup_steps))
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return lr * max(VINDLU_MIN_LR_MULTI, 0.5 * (1.0 + math.cos(math.pi * progress)))


def cosine_lr(step: int, *, lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """lr for optimiser step ``step`` (0-based): linear warm-up to ``lr``, cosine down to ``min_lr``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


class CosineSchedule:
    """Sets every param group's lr from the step count; its state is just that count.

    Warm-up is given in epochs (fractional allowed, e.g. 0.5) and turned into steps here, so the
    schedule follows the real number of steps per epoch whatever the GPU count.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        lr: float,
        min_lr: float,
        warmup_epochs: float,
        epochs: int,
        steps_per_epoch: int,
        max_steps: int = 0,
        rule: str = "paper",
    ) -> None:
        self.optimizer = optimizer
        self.lr, self.min_lr = lr, min_lr
        self.rule = rule  # paper: min_lr floor of the cosine; vindlu: VindLU's clamp
        self.max_steps = max_steps
        self.total_steps = self._capped(epochs * steps_per_epoch)
        # At least one warm-up step when warm-up is asked for, however short the epoch.
        self.warmup_steps = max(int(warmup_epochs > 0), round(warmup_epochs * steps_per_epoch))
        self.step_count = 0
        self._apply()

    def _capped(self, total: int) -> int:
        if self.max_steps > 0:  # a run cut short by train.max_steps still decays to min_lr
            total = min(total, self.max_steps)
        return max(1, total)

    def set_total(self, total_steps: int) -> None:
        """The run's real step count (docs/reliability.md, "Elastic resume": epochs of another
        process count may have another length with drop_last); the next step's lr follows it."""
        self.total_steps = self._capped(total_steps)
        self._apply()

    def get_lr(self, step: int | None = None) -> float:
        step = self.step_count if step is None else step
        if self.rule == "vindlu":
            return vindlu_lr(
                step, lr=self.lr, warmup_steps=self.warmup_steps, total_steps=self.total_steps
            )
        return cosine_lr(
            step,
            lr=self.lr,
            min_lr=self.min_lr,
            warmup_steps=self.warmup_steps,
            total_steps=self.total_steps,
        )

    def _apply(self) -> None:
        lr = self.get_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    def step(self) -> None:
        """Advance after an optimiser step, setting the lr of the next one."""
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict[str, int]:
        return {
            "step_count": self.step_count,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        # The warm-up is the run's from its start (its first epochs' steps), whatever ran since.
        self.step_count = int(state["step_count"])
        self.warmup_steps = int(state.get("warmup_steps", self.warmup_steps))
        self._apply()
