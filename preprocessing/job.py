"""The Dask shard job: records -> fixed shards -> one task per shard -> manifest.

Records are split into shards before any work starts (shard i always holds the same records), so
the output does not depend on the number of workers or which worker ran what. A finished shard
gets a done-marker (``.done/<shard>.json``: its inputs' fingerprint, sha256 and failures); a
re-run keeps shards whose file still matches their marker and rebuilds the rest. The failures
list and then the manifest are written last, atomically: a folder with a manifest is complete.

Every path a task carries is absolute, so a Dask worker started in any folder (or on another
machine with the same mounts) reads and writes the same files. A build holds an exclusive lock
on ``<out>/.lock`` for its whole run: a second build into the same folder stops with one line
naming the holder (README.md, "Errors and safety").
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from dataclasses import asdict, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from preprocessing.records import VideoRecord
from preprocessing.writer import BUILDER_VERSION, ShardTask, failure, run_shard_task
from t2v2t.errors import UsageError, on_path
from t2v2t.frames import MIDDLE_MODES
from t2v2t.schema import FORMAT
from t2v2t.shards import (
    FAILURES,
    MANIFEST,
    SHARD_SUFFIX,
    atomic_write_bytes,
    sha256_file,
    shard_name,
    write_manifest,
)

DONE_DIR = ".done"
LOCK = ".lock"


@contextlib.contextmanager
def build_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.lock`` (``flock``: released by the kernel even when the build is killed)."""
    path = out / LOCK
    with on_path(path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise UsageError(
                f"another build is writing {out} ({holder}): wait for it to finish, "
                "or stop it and re-run (finished shards are kept)"
            ) from None
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # a finished build leaves an empty lock file naming no one
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def created_with() -> dict[str, str]:
    """Versions that decide the shard bytes (decoder, JPEG encoder, compressor)."""
    out = {"format": FORMAT}
    for pkg in ("t2v2t", "decord", "pillow", "numpy", "zstandard"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def fingerprint(task: ShardTask) -> str:
    """A digest of everything a shard's bytes depend on (not the absolute data location)."""
    spec = {k: v for k, v in asdict(task).items() if k not in ("records", "path")}
    spec["path"] = Path(task.path).name
    spec["builder"] = [BUILDER_VERSION, created_with()]
    spec["records"] = [
        [
            r.key,
            r.source,
            r.captions,
            r.timestamps,
            r.is_image,
            r.media.stat().st_size if r.media.is_file() else -1,
        ]
        for r in task.records
    ]
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _marker_path(out_dir: Path, name: str) -> Path:
    return out_dir / DONE_DIR / f"{name}.json"


def _reusable(out_dir: Path, task: ShardTask, digest: str) -> dict[str, Any] | None:
    """The recorded result of a finished shard if its file and inputs are unchanged."""
    marker = _marker_path(out_dir, Path(task.path).name)
    try:
        done = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    path = Path(task.path)
    if done.get("fingerprint") != digest or not path.is_file():
        return None
    if path.stat().st_size != done["info"]["bytes"] or sha256_file(path) != done["info"]["sha256"]:
        return None
    return {
        "index": task.index,
        "info": done["info"],
        "failures": done["failures"],
        "fps_warnings": done.get("fps_warnings", 0),
    }


def _clean(out_dir: Path, keep: set[str]) -> None:
    """Remove temporary files of a killed build and shards no longer part of this build."""
    for p in out_dir.iterdir():
        if p.name.startswith(".") and p.name.endswith(".tmp"):
            p.unlink()
        elif p.name.endswith(SHARD_SUFFIX) and p.name not in keep:
            p.unlink()
            _marker_path(out_dir, p.name).unlink(missing_ok=True)
    done = out_dir / DONE_DIR
    if done.is_dir():
        for p in done.iterdir():
            if p.name.endswith(".tmp"):
                p.unlink()


def _run(
    tasks: list[ShardTask],
    workers: int,
    scheduler: str | None,
    progress: bool,
    on_done: Callable[[dict[str, Any]], None],
) -> None:
    from tqdm import tqdm

    if not tasks:
        return
    bar = tqdm(total=len(tasks), desc="shards", unit="shard", disable=not progress)
    if scheduler is None and workers == 0:  # in-process: tests and tiny jobs, no cluster
        for t in tasks:
            on_done(run_shard_task(t))
            bar.update()
        bar.close()
        return
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    # The client logs every failed reconnect with a traceback; a lost scheduler is reported
    # below in one line instead.
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
        if progress:
            print(f"[shards] Dask dashboard: {client.dashboard_link}", flush=True)
        futures = [
            client.submit(
                run_shard_task,
                t,
                key=f"shard-{Path(t.path).name}-{os.getpid()}",
                pure=False,
                retries=1,
            )
            for t in tasks
        ]
        try:
            for fut in as_completed(futures):
                on_done(fut.result())
                bar.update()
        except (OSError, CancelledError, TimeoutError) as err:
            if isinstance(err, OSError) and err.filename is not None:
                raise  # a worker's file error (full disk, permissions): the path says it all
            where = f"SCHEDULER={scheduler}" if scheduler else "the local cluster"
            raise UsageError(
                f"lost the Dask scheduler ({where}): {type(err).__name__}: {err}; "
                "re-run the same command when it is back: finished shards are kept"
            ) from None
    finally:
        bar.close()
        client.close()
        if cluster is not None:
            cluster.close()
        client_log.setLevel(client_level)


def build_shards(
    records: list[VideoRecord],
    out_dir: str | Path,
    *,
    dataset: str,
    split: str,
    num_frames: int,
    mode: str,
    candidates: int,
    seed: int = 0,
    short_side: int = 224,
    jpeg_quality: int = 90,
    samples_per_shard: int = 64,
    workers: int = 2,
    scheduler: str | None = None,
    progress: bool = True,
    synthetic: bool = False,
) -> dict[str, Any]:
    """Build (or finish) a shard folder from ``records``; returns the manifest.

    ``workers`` processes of a local Dask cluster, or the cluster at ``scheduler``
    (``tcp://host:port``); ``workers=0`` without a scheduler runs in this process.
    ``synthetic`` is recorded in the manifest (training and evaluation warn about it).
    """
    if workers < 0:
        raise UsageError(f"workers must be >= 0 (WORKERS={workers}): 0 builds in this process")
    if samples_per_shard < 1:
        raise UsageError(
            f"samples per shard must be >= 1 (--samples-per-shard={samples_per_shard})"
        )
    if num_frames < 1:
        raise UsageError(f"frames per video must be >= 1 (FRAMES={num_frames}): e.g. FRAMES=4")
    if mode in MIDDLE_MODES:
        candidates = 1
    out = Path(os.path.abspath(out_dir))
    with on_path(out):
        out.mkdir(parents=True, exist_ok=True)
    with build_lock(out):
        return _build_locked(
            records,
            out,
            dataset=dataset,
            split=split,
            num_frames=num_frames,
            mode=mode,
            candidates=candidates,
            seed=seed,
            short_side=short_side,
            jpeg_quality=jpeg_quality,
            samples_per_shard=samples_per_shard,
            workers=workers,
            scheduler=scheduler,
            progress=progress,
            synthetic=synthetic,
        )


def _build_locked(
    records: list[VideoRecord],
    out: Path,
    *,
    dataset: str,
    split: str,
    num_frames: int,
    mode: str,
    candidates: int,
    seed: int,
    short_side: int,
    jpeg_quality: int,
    samples_per_shard: int,
    workers: int,
    scheduler: str | None,
    progress: bool,
    synthetic: bool,
) -> dict[str, Any]:
    (out / DONE_DIR).mkdir(exist_ok=True)

    # Duplicate keys would make two samples indistinguishable: the later ones fail. A record
    # its adapter refused (a path outside the data folder) is never handed to a worker.
    seen: set[str] = set()
    unique: list[VideoRecord] = []
    early_failures: list[dict[str, str]] = []
    for rec in records:
        if rec.refused:
            early_failures.append(failure(rec, rec.refused))
        elif rec.key in seen:
            early_failures.append(failure(rec, f"duplicate key {rec.key!r}"))
        else:
            seen.add(rec.key)
            unique.append(replace(rec, media=Path(os.path.abspath(rec.media))))

    tasks = [
        ShardTask(
            index=i,
            path=str(out / shard_name(dataset, split, i)),
            records=unique[start : start + samples_per_shard],
            dataset=dataset,
            split=split,
            num_frames=num_frames,
            mode=mode,
            candidates=candidates,
            seed=seed,
            short_side=short_side,
            jpeg_quality=jpeg_quality,
        )
        for i, start in enumerate(range(0, len(unique), samples_per_shard))
    ]
    _clean(out, {Path(t.path).name for t in tasks})

    results: dict[int, dict[str, Any]] = {}
    digests = {t.index: fingerprint(t) for t in tasks}
    pending = []
    for t in tasks:
        done = _reusable(out, t, digests[t.index])
        if done is None:
            pending.append(t)
        else:
            results[t.index] = done
    if progress and len(pending) < len(tasks):
        print(f"[shards] {len(tasks) - len(pending)} of {len(tasks)} shards already complete")

    if pending:  # the folder is incomplete until the new manifest is written
        (out / MANIFEST).unlink(missing_ok=True)

    def on_done(result: dict[str, Any]) -> None:
        # The marker goes after the shard file: a shard without one is rebuilt next time.
        results[result["index"]] = result
        marker = {"fingerprint": digests[result["index"]], **result}
        atomic_write_bytes(
            _marker_path(out, result["info"]["name"]), json.dumps(marker, sort_keys=True).encode()
        )

    _run(pending, workers, scheduler, progress, on_done)
    _clean(out, {Path(t.path).name for t in tasks})  # temp files of workers that died

    infos = [results[t.index]["info"] for t in tasks]
    failures = early_failures + [f for t in tasks for f in results[t.index]["failures"]]
    num_samples = sum(i["samples"] for i in infos)
    if num_samples + len(failures) != len(records):  # never drop an input silently
        raise RuntimeError(
            f"{out}: {num_samples} samples + {len(failures)} failures != {len(records)} records"
        )
    lines = "".join(json.dumps(f, sort_keys=True, ensure_ascii=False) + "\n" for f in failures)
    atomic_write_bytes(out / FAILURES, lines.encode())
    manifest = {
        "format": FORMAT,
        "dataset": dataset,
        "split": split,
        "num_frames": num_frames,
        "mode": mode,
        "candidates": candidates,
        "seed": seed,
        "short_side": short_side,
        "jpeg_quality": jpeg_quality,
        "num_samples": num_samples,
        "num_failed": len(failures),
        "synthetic": bool(synthetic),
        "warnings": {
            "fps_from_packets": sum(results[t.index].get("fps_warnings", 0) for t in tasks)
        },
        "shards": infos,
        "created_with": created_with(),
    }
    write_manifest(out, manifest)
    return manifest
