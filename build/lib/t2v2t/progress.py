"""Progress bars for the stages that can run for minutes (docs/training.md, "Progress").

Bars go to stderr and only on the main rank (torchrun's ``RANK``); stdout keeps the results.
A bar appears only once its stage has run ``T2V2T_PROGRESS_DELAY`` seconds (default 2), so
quick stages stay quiet; ``T2V2T_PROGRESS=0`` turns them off. When stderr is not a terminal
(a log file, the demo's stage capture) the bar is redrawn every 10 s instead of continuously.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm


def _main_rank() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str,
    unit: str = "it",
) -> tqdm:
    """A tqdm bar on stderr, shown on the main rank only (see the module docstring)."""
    tty = sys.stderr.isatty()
    if total is None and iterable is not None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=not _main_rank() or os.environ.get("T2V2T_PROGRESS", "1") == "0",
        delay=float(os.environ.get("T2V2T_PROGRESS_DELAY", "2")),
        mininterval=0.5 if tty else 10.0,
        dynamic_ncols=tty,
    )
