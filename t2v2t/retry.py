"""Retries of object-store requests that fail transiently (docs/reliability.md, "Flaky storage").

A store under load answers 503 SlowDown, drops connections or stalls a read; a long run must not
die on one. :func:`call` runs one request again after such an error, with capped exponential
backoff and full jitter, logs each retry once (a warning naming the URL), and after the last
attempt raises :class:`StorageError`: one ``error:`` line naming the URL. A missing object, a
refused permission or a bad setting is never retried.

Settings: ``T2V2T_RETRIES`` (attempts in all, default 6: waits of up to 1, 2, 4, 8 and 16 s,
31 s at most), ``T2V2T_RETRY_WAIT`` (the first wait in seconds, default 1; each later one
doubles, capped at ``16 x`` it) and ``T2V2T_STORAGE_TIMEOUT`` (seconds a connection or a read
may stall before it counts as failed, default 30).
"""

from __future__ import annotations

import errno
import logging
import os
import random
import time
from collections.abc import Callable
from typing import TypeVar

from t2v2t.errors import UsageError

__all__ = ["RETRIES_ENV", "StorageError", "call", "settings", "timeout_s", "transient"]

log = logging.getLogger(__name__)

RETRIES_ENV = "T2V2T_RETRIES"
WAIT_ENV = "T2V2T_RETRY_WAIT"
TIMEOUT_ENV = "T2V2T_STORAGE_TIMEOUT"
_CAP = 16.0  # the longest wait, in units of the first one
# Words of a store's answer that mean "try again later" (S3, GCS, plain HTTP).
_BUSY_WORDS = (
    "SlowDown",
    "reduce your request rate",
    "ServiceUnavailable",
    "Throttl",
    "RequestTimeout",
    "InternalError",
    "503",
    "502",
    "500 ",
    "504",
)
_BUSY_ERRNOS = {
    errno.EBUSY,
    errno.EAGAIN,
    errno.ECONNRESET,
    errno.ETIMEDOUT,
    errno.EPIPE,
    errno.ECONNABORTED,
    errno.ECONNREFUSED,
}
_PERMANENT = (
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    FileExistsError,
    UsageError,
)
# Exception class names of botocore / aiohttp / fsspec that are transient by nature.
_TRANSIENT_NAMES = {
    "HTTPClientError",
    "ConnectionClosedError",
    "EndpointConnectionError",
    "ReadTimeoutError",
    "ConnectTimeoutError",
    "IncompleteRead",
    "ResponseStreamingError",
    "ClientPayloadError",
    "ServerDisconnectedError",
    "ClientOSError",
    "ClientConnectorError",
    "FSTimeoutError",
    "ResponseParserError",
    "ProtocolError",
}

T = TypeVar("T")


class StorageError(UsageError):
    """A store request that kept failing after every attempt (its message names the URL)."""


def _env_number(name: str, default: float, minimum: float) -> float:
    raw = os.environ.get(name) or str(default)
    try:
        value = float(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise UsageError(f"{name}={raw}: give a number >= {minimum:g} (default {default:g})")
    return value


def settings() -> tuple[int, float]:
    """(attempts, first wait in seconds) from the environment."""
    return int(_env_number(RETRIES_ENV, 6, 1)), _env_number(WAIT_ENV, 1.0, 0)


def timeout_s() -> float:
    """Seconds a connection or read may stall (``T2V2T_STORAGE_TIMEOUT``)."""
    return _env_number(TIMEOUT_ENV, 30.0, 0.1)


def _chain(err: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    while err is not None and err not in out and len(out) < 8:
        out.append(err)
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return out


def transient(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) is a failure worth another attempt."""
    if isinstance(err, _PERMANENT):
        return False
    for e in _chain(err):
        if isinstance(e, (ConnectionError, TimeoutError)):
            return True
        if {c.__name__ for c in type(e).__mro__} & _TRANSIENT_NAMES:
            return True
        if isinstance(e, OSError) and e.errno in _BUSY_ERRNOS:
            return True
        if type(e).__name__ == "ClientError" and any(w in str(e) for w in _BUSY_WORDS):
            return True
    return isinstance(err, OSError) and any(w in str(err) for w in _BUSY_WORDS[:4])


def call(url: str, what: str, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """``fn(*args, **kwargs)``, run again after transient errors; ``what`` names the request
    (``read``, ``upload``...) in the messages."""
    attempts, wait = settings()
    start = time.monotonic()
    for attempt in range(1, attempts + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - classified just below
            if not transient(err):
                raise
            why = f"{type(err).__name__}: {str(err)[:200] or 'no answer in time'}"
            if attempt == attempts:
                raise StorageError(
                    f"{url}: {what} failed {attempts} times in {time.monotonic() - start:.0f} s "
                    f"({why}); the store keeps failing: check the endpoint and retry later, or "
                    f"raise {RETRIES_ENV}"
                ) from None
            # Full jitter: many workers refused at once do not come back at once.
            pause = random.uniform(0, wait * min(2 ** (attempt - 1), _CAP))
            log.warning(
                "%s: %s failed (%s); retry %d of %d in %.1f s",
                url,
                what,
                why,
                attempt,
                attempts - 1,
                pause,
            )
            time.sleep(pause)
    raise AssertionError("unreachable")
