"""Training checkpoints: atomic save, RNG capture/restore, git commit, and a run's
:class:`Checkpointer` (``last.pt``, ``best.pt``, resume).

A checkpoint is a plain dict: ``model`` (unwrapped state_dict), ``preset``,
``config`` (resolved, plain dict), ``optimizer``, ``scheduler``, ``scaler`` (fp16's loss
scale; empty otherwise), ``rng``, ``data_position``
({"epoch", "samples", "world_size", "earlier", "global_batch"}), ``step``, ``git_commit``. Everything in it loads with
``torch.load(..., weights_only=True)``: RNG states are stored as tensors and lists, not numpy
objects.
"""

from __future__ import annotations

import random
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist
from torch import nn

from t2v2t.atomic import atomic_open
from t2v2t.errors import CheckpointError
from t2v2t.models.safe_pickle import read_weights_file
from t2v2t.training.config import Config, ConfigError
from t2v2t.training.config_diff import config_changes
from t2v2t.training.optim import CosineSchedule

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


def reseed(seed: int) -> None:
    """Seed python, numpy's legacy global and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def global_batches(cfg: Config, world: int) -> dict[str, int]:
    """Each source's global batch: its per-process batch times the process count."""
    return {name: cfg.source_batch_size(name) * world for name in cfg.data.sources}


def check_global_batch(cfg: Config, ckpt: dict[str, Any], world: int, path: str | Path) -> None:
    """A mid-epoch checkpoint resumes only with its global batch (docs/reliability.md, "Elastic
    resume"): else one error naming the per-process batch that keeps it."""
    position = ckpt.get("data_position", {})
    if not (position.get("samples") or position.get("earlier")):
        return  # an epoch's start: the next epoch is planned afresh, any batch
    saved = position.get("global_batch") or _saved_global_batches(ckpt)
    for name, have in global_batches(cfg, world).items():
        want = saved.get(name)
        if want is None or want == have:
            continue
        src = cfg.data.sources[name]
        key = f"data.sources.{name}.batch_size" if src.batch_size is not None else "data.batch_size"
        now = f"{key}={have // world} on {world} processes is a global batch of {have}"
        if want % world:
            fits = ", ".join(str(d) for d in range(1, want + 1) if want % d == 0)
            raise ConfigError(
                f"{now}, but {path} stopped mid-epoch with {want}, which does not split over "
                f"{world} processes ({key}): resume on {fits} processes"
            )
        raise ConfigError(
            f"{now}, but {path} stopped mid-epoch with {want} ({key}): "
            f"set {key}={want // world} to keep it"
        )


def _saved_global_batches(ckpt: dict[str, Any]) -> dict[str, int]:
    """A checkpoint without ``global_batch``: from its config and process count."""
    data = ckpt.get("config", {}).get("data", {})
    world = int(ckpt["data_position"].get("world_size", 1))
    return {
        name: int((src or {}).get("batch_size") or data.get("batch_size", 0)) * world
        for name, src in data.get("sources", {}).items()
        if src is not None
    }


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary sibling, fsync, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``)."""
    state = read_weights_file(path, map_location)
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(
            f"cannot resume from {path} (a {type(state).__name__}, no 'model' entry): "
            "it is not a training checkpoint; name a last.pt written by scripts/train.py"
        )
    return state


def gather_rng_states(world: int) -> list[dict[str, Any]]:
    """Every rank's RNG state (rank 0 writes them all, so each rank resumes its own stream)."""
    state = rng_state()
    if world == 1:
        return [state]
    states: list[Any] = [None] * world
    tdist.all_gather_object(states, state)
    return states


@dataclass
class TrainState:
    """Where a run is: optimiser steps taken, the epoch under way, the samples this rank has
    consumed of it (the loader's ``skip_samples`` on resume; equal on every rank) and the best
    selection metric so far. ``earlier``: the parts of this epoch that ran on other process
    counts, ``(world size, samples per rank)`` each (elastic resume); ``samples`` then counts
    from the last of them."""

    step: int = 0
    epoch: int = 0
    samples: int = 0
    best: float | None = None
    earlier: list[tuple[int, int]] = field(default_factory=list)

    @property
    def mid_epoch(self) -> bool:
        return bool(self.samples or self.earlier)


class Checkpointer:
    """``last.pt`` and ``best.pt`` of a run: the model, optimiser, schedule, every rank's RNG
    state and the data position, so that :meth:`resume` continues exactly."""

    def __init__(
        self,
        run_dir: Path,
        cfg: Config,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: CosineSchedule,
        *,
        rank: int,
        world: int,
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        self.last, self.best = run_dir / "last.pt", run_dir / "best.pt"
        self.scaler = scaler  # fp16's loss scale: part of the exact-resume state
        self.cfg, self.model = cfg, model
        self.rank, self.world = rank, world
        self.optimizer, self.schedule = optimizer, schedule
        self.commit = git_commit()

    def save(self, path: Path, state: TrainState) -> None:
        """Collective: every rank calls it; rank 0 gathers the RNG states and writes ``path``."""
        states = gather_rng_states(self.world)
        if not self.rank == 0:
            return
        save_checkpoint(
            path,
            {
                "model": self.model.state_dict(),
                "preset": self.model.config.preset,
                "model_config": self.model.config.to_dict(),
                "config": self.cfg.to_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                "rng": states,
                # samples: what this rank consumed of the epoch (the loader's skip_samples)
                "data_position": {
                    "epoch": state.epoch,
                    "samples": state.samples,
                    "world_size": self.world,
                    "earlier": [list(part) for part in state.earlier],
                    "global_batch": global_batches(self.cfg, self.world),
                },
                "step": state.step,
                "best_metric": state.best,
                "git_commit": self.commit,
            },
        )

    def resume(self, ckpt: dict[str, Any]) -> TrainState:
        """Restore the optimiser, the schedule and this rank's RNG streams from ``ckpt`` (the
        model's weights are already in); the state to continue from."""
        world = self.world
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and self.scaler.is_enabled() and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])  # else it starts at its initial scale
        position = ckpt["data_position"]
        state = TrainState(
            int(ckpt["step"]),
            int(position["epoch"]),
            int(position["samples"]),
            ckpt.get("best_metric"),
            [(int(w), int(n)) for w, n in position.get("earlier", [])],
        )
        saved_world = int(position.get("world_size", world))
        if state.mid_epoch and saved_world != world:
            # Elastic resume: the part on saved_world ranks ends here, the rest is replanned.
            state.earlier.append((saved_world, state.samples))
            state.samples = 0
        changed = config_changes(ckpt.get("config", {}), self.cfg.to_dict())
        if changed and self.rank == 0:
            print(f"[resume] config differs from the checkpoint's: {'; '.join(changed)}")
        states = ckpt["rng"] if isinstance(ckpt["rng"], list) else [ckpt["rng"]]
        set_rng_state(states[self.rank] if self.rank < len(states) else states[0])
        if self.rank >= len(states):  # a rank the checkpoint had not: its own streams
            reseed(self.cfg.data.seed + 1000 * self.rank + 1 + state.step)
        return state
