"""Stop signals (preemption) and dying loader workers (docs/reliability.md, "Preemption" and
"Dying loader workers").

A stop signal (``train.stop_signals``, default SIGTERM and SIGUSR1) only sets a flag here; the
training loop reads it after each optimiser step, the ranks agree on it, ``last.pt`` is written
and the command exits with :data:`PREEMPTED_EXIT`. DataLoader workers leave the training
process's group (:func:`own_process_group`, their ``worker_init_fn``): a signal sent to the whole
group (a terminal, a scheduler, torchrun) would otherwise reach them too, and torch's worker
handler lets SIGTERM kill them before the checkpoint. (Ignoring it there instead would also
ignore the SIGTERM with which the training process stops a worker, and exit would hang.)

A loader worker killed from outside (most often the out-of-memory killer) makes torch raise a
``RuntimeError`` in the training process; :func:`worker_death` turns it into one ``error:`` line.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from t2v2t.errors import ExpectedError

# EX_TEMPFAIL (sysexits.h): "try again later". The run stopped cleanly on a stop signal; its
# last.pt holds the position, so the same command with RESUME=1 continues it exactly.
PREEMPTED_EXIT = 75
# The signals a run may treat as "checkpoint and stop" (and that the torchrun launcher,
# t2v2t/launch.py, forwards to every rank).
STOP_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")

_received: list[int] = []  # the stop signals received (first one first)


def _on_stop_signal(signum: int, _frame: FrameType | None) -> None:
    # Only a flag: the loop decides where to stop (printing here could re-enter a write).
    _received.append(signum)


def check_names(names: list[str]) -> list[signal.Signals]:
    """The signals named, or ValueError naming the one that is not a stop signal."""
    bad = [n for n in names if n not in STOP_SIGNALS]
    if bad:
        raise ValueError(f"{bad[0]!r} is not one of {', '.join(STOP_SIGNALS)}")
    return [signal.Signals[n] for n in names]


def install(names: list[str]) -> dict[int, Any]:
    """Make ``names`` stop signals in this process; returns the handlers they replace."""
    return {int(sig): signal.signal(sig, _on_stop_signal) for sig in check_names(names)}


@contextlib.contextmanager
def stop_signals(names: list[str]) -> Iterator[None]:
    """``names`` are stop signals inside the block; afterwards the former handlers are back and
    the flag is cleared (a second run in the same process starts clean)."""
    previous = install(names)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        _received.clear()


def pending() -> int | None:
    """The first stop signal this process received, or None."""
    return _received[0] if _received else None


def signal_name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum is not None else "a stop signal"


def own_process_group(_worker_id: int = 0) -> None:
    """A DataLoader worker's ``worker_init_fn``: a process group of its own, so that signals
    sent to the training process's group pass it by (the training process stops its workers
    itself; they also exit within seconds when it dies)."""
    os.setpgid(0, 0)


class LoaderWorkerDied(ExpectedError):
    """A DataLoader worker was killed from outside (signal) or exited without a word."""


_WORKER_DEATH = re.compile(r"DataLoader worker \(pids?\(?s?\)? ([\d, ]+)\) (.*)")
_SIGNAL_TEXT = {signal.strsignal(s): s.name for s in signal.Signals if signal.strsignal(s)}


def _exit_codes(err: BaseException) -> dict[int, int]:
    """pid -> exit code of the workers of the DataLoader iterator that raised ``err`` (torch's
    "exited unexpectedly" comes from inside it; the frame's ``self`` holds its workers)."""
    tb, codes = err.__traceback__, {}
    while tb is not None:
        for w in getattr(tb.tb_frame.f_locals.get("self"), "_workers", None) or []:
            if getattr(w, "exitcode", None) is not None:
                codes[w.pid] = w.exitcode
        tb = tb.tb_next
    return codes


def _how(text: str, pids: list[int], err: BaseException) -> str:
    """How the worker died, in words that name the signal where it is known."""
    text = text.split(". ")[0].rstrip(". ")
    if text.startswith("is killed by signal: "):
        said = text.removeprefix("is killed by signal: ")
        return f"was killed by {_SIGNAL_TEXT.get(said, said)}"
    codes = _exit_codes(err)
    for code in (codes.get(p) for p in pids):
        if code is not None and code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        if code:
            return f"exited with status {code}"
    return text


def worker_death(err: BaseException, *, workers: int, last: Path) -> LoaderWorkerDied | None:
    """The one-line error for torch's "DataLoader worker (pid N) is killed by signal: Killed"
    (or "... exited unexpectedly"), naming the worker, how it died, the likely cause and how to
    continue; None for any other error."""
    # torch reports a dead worker from its SIGCHLD handler, wherever the main process is: inside
    # a checkpoint's torch.save, the writer's own error then carries the report as its context.
    cause, depth = err, 0
    while cause is not None and depth < 8:
        match = _WORKER_DEATH.search(str(cause)) if isinstance(cause, RuntimeError) else None
        if match is not None:
            break
        cause, depth = cause.__context__, depth + 1
    else:
        return None
    err = cause
    pids = [int(p) for p in match.group(1).replace(",", " ").split()]
    how = _how(match.group(2), pids, err)
    resume = (
        f"continue from {last} with RESUME=1" if last.exists() else "run it again (no last.pt yet)"
    )
    return LoaderWorkerDied(
        f"DataLoader worker (pid {', '.join(map(str, pids))}) {how} "
        f"(data.num_workers={workers}): most often the "
        "out-of-memory killer; lower data.num_workers or data.batch_size, then " + resume
    )
