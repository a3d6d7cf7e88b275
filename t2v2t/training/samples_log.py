"""``<run>/samples.jsonl``: which samples each rank read at each step (``train.log_samples``).

One line per rank and optimiser step, ``{"step", "epoch", "rank", "keys": [...]}``, appended
across resumes, so a user (or a test) can check that an epoch covered its samples (docs/training.md,
"Samples record"). Each line is one ``write`` to a file opened with ``O_APPEND``, so the ranks'
lines never interleave. On resume, rank 0 first drops the lines of steps after the checkpoint (a
killed run logged them, but the resumed run reads those samples again); the other ranks write only
after their first step, whose gradient all-reduce rank 0 joins after that cut.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from t2v2t.atomic import atomic_write_bytes

__all__ = ["SAMPLES_FILE", "append_samples", "keep_until", "read_samples"]

SAMPLES_FILE = "samples.jsonl"


def read_samples(run_dir: str | Path) -> list[dict]:
    """Every line of ``<run>/samples.jsonl`` (empty when there is none)."""
    path = Path(run_dir) / SAMPLES_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def keep_until(run_dir: str | Path, step: int | None) -> None:
    """Rank 0 at start: keep the lines up to ``step`` (a resume), or none (a fresh run)."""
    path = Path(run_dir) / SAMPLES_FILE
    kept = [] if step is None else [r for r in read_samples(run_dir) if r["step"] <= step]
    if kept or path.exists():
        atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in kept).encode())


def append_samples(run_dir: str | Path, *, step: int, epoch: int, rank: int, keys: list) -> None:
    """One line for this rank's batch of ``step``."""
    line = json.dumps({"step": step, "epoch": epoch, "rank": rank, "keys": [str(k) for k in keys]})
    fd = os.open(Path(run_dir) / SAMPLES_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
