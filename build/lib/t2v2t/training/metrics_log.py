"""Per-step metrics as JSON lines (``<run>/metrics.jsonl``), reading them back, and the
process-wide Python logging set-up."""

from __future__ import annotations

import json
import logging
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


# ---------------------------------------------------------------------------------------------
# Python logging, configured once per process (docs/training.md, "Experiment tracking")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_QUIET = ("httpx", "httpcore", "urllib3", "filelock", "matplotlib", "PIL")  # per-request noise


def setup_logging(log_file: str | Path | None = None, *, main: bool = True) -> None:
    """Root logger to stderr (INFO on the main rank, WARNING elsewhere) and to ``log_file``.

    Library messages (which weights were loaded from where, hub retries, loader warnings)
    then land in every run's log. Calling it again (a second run in one process) keeps the
    stderr handler and swaps the file.
    """
    root = logging.getLogger()
    root.setLevel(logging.INFO if main else logging.WARNING)
    if not any(getattr(h, "_t2v2t", "") == "stderr" for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._t2v2t = "stderr"  # type: ignore[attr-defined]
        root.addHandler(handler)
    for h in [h for h in root.handlers if getattr(h, "_t2v2t", "") == "file"]:
        root.removeHandler(h)
        h.close()
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._t2v2t = "file"  # type: ignore[attr-defined]
        root.addHandler(handler)
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
