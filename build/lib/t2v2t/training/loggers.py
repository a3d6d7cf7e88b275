"""Experiment tracking: ``train.loggers`` (docs/training.md, "Experiment tracking").

``jsonl`` (``<run>/metrics.jsonl``) is always on; ``tensorboard`` writes event files under
``<run>/tensorboard``; ``wandb`` logs a W&B run under ``<run>/wandb`` and honours ``WANDB_MODE``
(``offline`` keeps everything on disk for a later ``wandb sync``). Every backend gets the same
numbers: each record written to metrics.jsonl, its numeric fields as scalars at its step.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

from t2v2t.training.metrics_log import MetricsLog

LOGGERS = ("jsonl", "tensorboard", "wandb")
EVAL_PREFIX = "eval_"


def eval_scalars(result: dict[str, Any]) -> dict[str, float]:
    """One evaluation's metrics, flat: ``eval_<fusion>_<t2v|v2t>_<metric>`` (R1, R5, ..., MnR)."""
    out: dict[str, float] = {}
    for fusion, directions in result.get("results", {}).items():
        for direction, metrics in directions.items():
            if not isinstance(metrics, dict):
                continue
            for name, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out[f"{EVAL_PREFIX}{fusion}_{direction}_{name}"] = float(value)
    return out


def scalar_tags(record: dict[str, Any]) -> dict[str, float]:
    """The scalars of one metrics.jsonl record, named as TensorBoard and W&B show them.

    Training steps go under ``train/`` (``train/loss``, ``train/lr``, ...); a record holding
    evaluation results goes under ``eval/`` with the ``eval_`` prefix dropped.
    """
    is_eval = any(k.startswith(EVAL_PREFIX) for k in record)
    out = {}
    for key, value in record.items():
        if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            continue
        if is_eval:
            out["eval/" + key.removeprefix(EVAL_PREFIX)] = float(value)
        else:
            out["train/" + key] = float(value)
    return out


class RunLoggers:
    """The run's loggers behind one ``write(record)``; only the main rank makes one.

    ``resume_step``: the checkpoint's step when resuming (None for a fresh run). metrics.jsonl
    and TensorBoard drop what was logged after it (the steps are redone); W&B continues the
    same run id.
    """

    def __init__(
        self,
        run_dir: str | Path,
        loggers: list[str],
        *,
        resume_step: int | None = None,
        config: dict[str, Any] | None = None,
        wandb_project: str = "t2v2t",
    ) -> None:
        run_dir = Path(run_dir)
        unknown = [n for n in loggers if n not in LOGGERS]
        if unknown:
            raise ValueError(f"train.loggers: unknown {unknown}; choose from {', '.join(LOGGERS)}")
        self.jsonl = MetricsLog(run_dir / "metrics.jsonl", keep_until_step=resume_step)
        self._tb = None
        self._wandb = None
        if "tensorboard" in loggers:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume_step is not None else None
            self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge)
        if "wandb" in loggers:
            self._wandb = _start_wandb(run_dir, config or {}, wandb_project, resume_step)

    def write(self, record: dict[str, Any]) -> None:
        self.jsonl.write(record)
        scalars = scalar_tags(record)
        step = int(record["step"])
        if self._tb is not None:
            for tag, value in scalars.items():
                self._tb.add_scalar(tag, value, step)
        if self._wandb is not None and scalars:
            self._wandb.log(scalars, step=step)

    def close(self) -> None:
        self.jsonl.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _start_wandb(run_dir: Path, config: dict[str, Any], project: str, resume_step: int | None):
    import wandb

    # The id stays with the run folder, so RESUME=1 continues the same W&B run.
    id_file = run_dir / "wandb_id.txt"
    if resume_step is not None and id_file.is_file():
        run_id = id_file.read_text().strip()
    else:
        run_id = uuid.uuid4().hex[:8]
        id_file.write_text(run_id + "\n")
    return wandb.init(
        project=project,
        name=run_dir.name,
        dir=str(run_dir),
        id=run_id,
        resume="allow",
        config=config,
    )
