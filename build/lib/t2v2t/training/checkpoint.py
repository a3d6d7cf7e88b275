"""Training checkpoints: atomic save, RNG capture/restore, git commit.

A checkpoint is a plain dict: ``model`` (unwrapped state_dict), ``preset``,
``config`` (resolved, plain dict), ``optimizer``, ``scheduler``, ``rng``, ``data_position``
({"epoch", "samples"}), ``step``, ``git_commit``. Everything in it loads with
``torch.load(..., weights_only=True)``: RNG states are stored as tensors and lists, not numpy
objects.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2v2t.atomic import atomic_open
from t2v2t.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[2]


def git_commit(root: Path = ROOT) -> str | None:
    """The repository's HEAD commit (with ``-dirty`` when files differ), or None outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (sha + ("-dirty" if dirty else "")) or None


def rng_state() -> dict[str, Any]:
    """python, numpy (legacy global) and torch (CPU + CUDA) generator states, weights_only-safe."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary sibling, fsync, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def read_weights_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)``; a file it refuses (truncated, not a checkpoint, or
    holding objects that would run code when unpickled) is a :class:`CheckpointError`."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as err:  # unpickling and zip errors come in many types; all mean "unusable"
        reason = next((s.strip() for s in str(err).splitlines() if s.strip()), type(err).__name__)
        raise CheckpointError(
            f"cannot load checkpoint {path} ({type(err).__name__}: {reason[:200]}): it is "
            "truncated, not a T2V2T checkpoint, or holds more than tensors; use another file"
        ) from err


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``)."""
    state = read_weights_file(path, map_location)
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(
            f"cannot resume from {path} (a {type(state).__name__}, no 'model' entry): "
            "it is not a training checkpoint; name a last.pt written by scripts/train.py"
        )
    return state
