"""One place that turns the project's expected errors into one ``error:`` line (docs/reliability.md,
"Errors and safety").

Every script in ``scripts/`` runs its ``main`` through :func:`cli`: a problem the user fixes
(a bad option, a missing or damaged file, a full or read-only disk, a lost Dask scheduler) is
printed as ``error: <what> (<file or setting>): <what to do>`` on stderr with exit status 2.
Anything else is a bug and keeps its traceback; ``T2V2T_DEBUG=1`` shows the traceback always.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

DEBUG_ENV = "T2V2T_DEBUG"


class UsageError(RuntimeError):
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


def _expected_types() -> tuple[type[BaseException], ...]:
    """The project's own error types (imported lazily: the model package pulls in torch)."""
    from preprocessing.adapters import AnnotationError
    from t2v2t.data.shards import ShardError
    from t2v2t.training.config import ConfigError

    types: list[type[BaseException]] = [UsageError, ConfigError, ShardError, AnnotationError]
    models = sys.modules.get("t2v2t.models")
    if models is not None:
        types += [models.WeightsUnavailableError, models.WeightsMismatchError]
    return tuple(types)


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
    if isinstance(err, _expected_types()):
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


def _argparse_error(self: argparse.ArgumentParser, message: str) -> None:
    # argparse's own report is the usage block plus "prog: error: ..."; one line says it.
    print(f"error: {message} ({self.prog}): see {self.prog} --help", file=sys.stderr)
    sys.exit(2)


def cli(main: Callable[[], int | None]) -> int:
    """Run a script's ``main``; expected errors become one ``error:`` line and exit status 2."""
    argparse.ArgumentParser.error = _argparse_error  # type: ignore[method-assign]
    try:
        return main() or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        msg = describe(err)
        if msg is None or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        print(f"error: {msg}", file=sys.stderr)
        return 2
