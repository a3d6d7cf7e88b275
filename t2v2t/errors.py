"""One place that turns the project's expected errors into one ``error:`` line (docs/reliability.md,
"Errors and safety").

Every script in ``scripts/`` runs its ``main`` through :func:`cli`: a problem the user fixes
(a bad option, a missing or damaged file, a full or read-only disk, a lost Dask scheduler) is
printed as ``error: <what> (<file or setting>): <what to do>`` on stderr with exit status 2.
Anything else is a bug and keeps its traceback; ``T2V2T_DEBUG=1`` shows the traceback always.

An error is expected when its type derives from :class:`ExpectedError`: each module that raises
one defines its type on that base, so this module needs to know none of them (it imports nothing
of the project). A command's argument errors take the same form through :class:`ArgumentParser`.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

DEBUG_ENV = "T2V2T_DEBUG"


class ExpectedError(Exception):
    """The base of every error the user fixes (a setting, a file, a command to run first): its
    message is one line that names the file or key and what to do; :func:`cli` prints it."""


class UsageError(ExpectedError, RuntimeError):
    """A problem the user fixes by running a command or passing another option."""


class CheckpointError(UsageError):
    """A checkpoint file that ``torch.load(weights_only=True)`` refuses (truncated, not ours,
    or holding objects other than tensors and plain containers)."""


# What to do about an OSError, by errno, on a path the user chose.
_OS_HINTS = {
    errno.ENOSPC: "free space on that disk or choose another output folder",
    errno.EDQUOT: "free space (disk quota) or choose another output folder",
    errno.EROFS: "the file system is read-only: choose a writable output folder",
    errno.EACCES: "no permission: fix the permissions or choose another folder",
    errno.EPERM: "no permission: fix the permissions or choose another folder",
    errno.ENOENT: "check the path",
    errno.EFBIG: "the file grew past the allowed size: raise the limit or free space",
}


def _first_line(text: str) -> str:
    lines = [s.strip() for s in str(text).strip().splitlines() if s.strip()]
    return lines[0] if lines else ""


@contextlib.contextmanager
def on_path(path: str | Path) -> Iterator[None]:
    """Give an ``OSError`` raised without a file name (``write()`` hitting ENOSPC) this path."""
    try:
        yield
    except OSError as err:
        if err.filename is None and err.errno is not None:
            raise OSError(err.errno, err.strerror or os.strerror(err.errno), str(path)) from err
        raise


def _message(err: BaseException) -> str:
    """The error's own words; a DataLoader worker's re-raise ("Caught ShardError in DataLoader
    worker process 0. Original Traceback ...") keeps only the original's last line."""
    text = str(err)
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = _first_line(text.strip().splitlines()[-1])
        return last.split(": ", 1)[1] if last.startswith(type(err).__module__) else last
    return _first_line(text)


def describe(err: BaseException) -> str | None:
    """The one-line message for an expected error, or None for a bug (keep the traceback)."""
    if isinstance(err, ExpectedError):
        return _message(err) or type(err).__name__
    if isinstance(err, UnicodeDecodeError):  # only the file's reader knows its name
        return None
    if isinstance(err, OSError) and err.filename is not None:
        what = err.strerror or _first_line(str(err))
        hint = _OS_HINTS.get(err.errno or 0, "check the path")
        return f"{what} ({err.filename}): {hint}"
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT):
        return f"{err.strerror}: {_OS_HINTS[err.errno]}"
    return None


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors read as the project's: one ``error:`` line
    naming the command and where its help is, exit status 2 (argparse's own report is the usage
    block plus ``prog: error: ...``)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} ({self.prog}): see {self.prog} --help", file=sys.stderr)
        sys.exit(2)


def cli(main: Callable[[], int | None]) -> int:
    """Run a script's ``main``; expected errors become one ``error:`` line and exit status 2."""
    try:
        return main() or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        msg = describe(err)
        if msg is None or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        _close_progress_bars()
        print(f"error: {msg}", file=sys.stderr)
        return 2


def _close_progress_bars() -> None:
    """End any tqdm bar still drawn on stderr, so the error starts a line of its own (a bar
    redraws its line with ``\r`` and leaves no newline until it is closed)."""
    tqdm_module = sys.modules.get("tqdm")  # never imported here: only a loaded one can be open
    bars = getattr(getattr(tqdm_module, "tqdm", None), "_instances", None) or ()
    for bar in list(bars):
        with contextlib.suppress(Exception):  # a half-torn-down bar must not hide the error
            bar.close()
