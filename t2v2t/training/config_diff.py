"""What differs between a checkpoint's config and the run's now (printed on resume)."""

from __future__ import annotations

from typing import Any

__all__ = ["RESUME_FREE_KEYS", "config_changes"]

# Settings that may change on resume without changing what is computed.
RESUME_FREE_KEYS = (
    "train.max_steps",
    "train.ckpt_every_steps",
    "train.log_every",
    "train.loggers",
    "train.wandb_project",
    "train.threads",
    "data.num_workers",
    "train.init_checkpoint",
)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key (old -> new)`` for settings that differ between a checkpoint's config and now."""
    a, b = _flatten(old), _flatten(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in RESUME_FREE_KEYS)
    return [f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in keys]
