"""Per-step metrics as JSON lines (``<run>/metrics.jsonl``), and reading them back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MetricsLog:
    """Appends one JSON object per line and flushes it, so a killed run keeps what it logged.

    On resume, lines for steps after the checkpoint (logged before the kill, then redone) are
    dropped first, so the file holds each step once.
    """

    def __init__(self, path: str | Path, *, keep_until_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if keep_until_step is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= keep_until_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        elif keep_until_step is None:
            self.path.write_text("")  # a fresh run starts a fresh log
        self._f = open(self.path, "a")  # noqa: SIM115 (kept open for the run)

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All complete JSON lines of a metrics file (a torn last line from a kill is skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
