"""Dask plumbing shared by the shard build and the shard check: a client, a bounded window.

``windowed`` keeps at most ``window`` tasks in flight and submits the next one as each
completes, so a driver planning millions of inputs never holds more than ``window`` futures
(docs/data.md, "Shards at scale"). Results come back in completion order; callers index them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import Any

from t2v2t.errors import ExpectedError, UsageError


@contextlib.contextmanager
def dask_client(workers: int, scheduler: str | None) -> Iterator[Any]:
    """A client of the cluster at ``scheduler``, or of a local cluster of ``workers`` processes."""
    from dask.distributed import Client, LocalCluster

    cluster = None
    # The client logs every failed reconnect with a traceback; a lost scheduler is reported
    # in one line instead (by ``windowed``).
    client_log = logging.getLogger("distributed.client")
    client_level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    if scheduler:
        try:
            client = Client(scheduler)
        except (OSError, TimeoutError) as err:
            client_log.setLevel(client_level)
            raise UsageError(
                f"cannot reach the Dask scheduler (SCHEDULER={scheduler}): {err}; start it with "
                "`dask scheduler`, or leave SCHEDULER= empty for a local cluster"
            ) from None
    else:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
        client_log.setLevel(client_level)


@dataclass
class _Expected:
    """An expected error (a setting, a shard, a store that kept failing) on its way back as a
    task's result: raised, Dask would run the task once more (``retries``), which can only fail
    the same way, and a store's whole retry budget again. Carried pickled by the standard
    library (Dask's own pickler trips over what a store error's context holds)."""

    pickled: bytes

    def error(self) -> BaseException:
        return pickle.loads(self.pickled)  # noqa: S301 - our own worker's error, as Dask's are


def _expected_as_result(fn: Callable[[Any], Any], item: Any) -> Any:
    try:
        return fn(item)
    except ExpectedError as err:
        try:
            return _Expected(pickle.dumps(err))
        except Exception:  # noqa: BLE001 - an error that does not pickle: its one line
            return _Expected(pickle.dumps(UsageError(str(err))))


def windowed(
    client: Any,
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    window: int,
    name: Callable[[Any], str],
    scheduler: str | None,
    on_submit: Callable[[], None] = lambda: None,
) -> Iterator[Any]:
    """``fn(item)`` on the cluster for every item, at most ``window`` in flight; yields results."""
    from dask.distributed import as_completed

    pending = iter(items)
    running = as_completed()

    def submit_next() -> None:
        item = next(pending, None)
        if item is not None:
            on_submit()
            key = f"{name(item)}-{os.getpid()}"
            task = client.submit(_expected_as_result, fn, item, key=key, pure=False, retries=1)
            running.add(task)

    for _ in range(max(window, 1)):
        submit_next()
    try:
        for fut in running:
            result = fut.result()
            if isinstance(result, _Expected):
                raise result.error()
            yield result
            submit_next()
    except (OSError, CancelledError, TimeoutError) as err:
        if isinstance(err, OSError) and err.filename is not None:
            raise  # a worker's file error (full disk, permissions): the path says it all
        where = f"SCHEDULER={scheduler}" if scheduler else "the local cluster"
        raise UsageError(
            f"lost the Dask scheduler ({where}): {type(err).__name__}: {err}; "
            "re-run the same command when it is back: finished shards are kept"
        ) from None
