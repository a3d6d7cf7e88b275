"""`python -m t2v2t.launch <torchrun options> -m t2v2t.train ...`: torchrun itself (its agent runs
in this process), with the stop signals passed to every rank (docs/reliability.md, "Preemption").

The Makefile launches several processes through this (``make pretrain GPUS=2``). Two things
differ from a bare ``torchrun``:

- SIGTERM, SIGUSR1 and SIGUSR2 are sent on to every rank, once, and the agent keeps waiting
  while the ranks finish their step and write ``last.pt``. A bare ``torchrun`` dies of SIGUSR1,
  and on SIGTERM it raises, gives the ranks ``--shutdown-timeout`` seconds and exits 1 with a
  traceback.
- When the ranks stopped on such a signal (exit status 75), this exits 75 too, without
  torchrun's failure report; any other failure is reported and exits as torchrun would.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from t2v2t.interrupts import PREEMPTED_EXIT, STOP_SIGNALS


def rank_pids() -> list[int]:
    """This process's children: the ranks torchrun's agent started (Linux ``/proc``)."""
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        children = task / "children"
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
    return pids


def _forward(signum: int, frame: FrameType | None) -> None:
    pids = rank_pids()
    if not pids:  # no ranks yet (rendezvous): stop the agent as torchrun would
        from torch.distributed.elastic.multiprocessing.api import _terminate_process_handler

        _terminate_process_handler(signum, frame)
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:  # exited meanwhile
            pass


def preempted(failures: dict[int, Any]) -> bool:
    """The ranks stopped on a stop signal: some exited 75 (only after the checkpoint everyone
    took part in) and the rest 75 too, or the agent's SIGTERM met them on their way out."""
    codes = {f.exitcode for f in failures.values()}
    return PREEMPTED_EXIT in codes and codes <= {PREEMPTED_EXIT, -signal.SIGTERM}


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, record
    from torch.distributed.run import parse_args, run

    args = parse_args(sys.argv[1:] if argv is None else argv)
    # The agent must not raise on them (its handlers are installed when the ranks start).
    handled = [s.strip() for s in args.signals_to_handle.split(",")]
    args.signals_to_handle = ",".join(s for s in handled if s not in STOP_SIGNALS)
    for name in STOP_SIGNALS:
        signal.signal(signal.Signals[name], _forward)

    @record
    def launch() -> int:
        try:
            run(args)
        except ChildFailedError as err:
            if preempted(err.failures):
                return PREEMPTED_EXIT
            raise
        return 0

    return launch()


if __name__ == "__main__":
    sys.exit(main())
