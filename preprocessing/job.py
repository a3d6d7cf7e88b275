"""The Dask shard job: records -> fixed shards -> one task per shard -> manifest.

:func:`build_shards` reads in four steps: plan the tasks, prepare the folder, run them (a
window in flight; each keeps its finished shard or builds it), finish (check, failures,
manifest). One :class:`~preprocessing.spec.ShardSpec` carries the folder's settings into every
task and into the manifest. Inputs are split into shards by position (shard i always holds
rows ``[i*n, (i+1)*n)``, ``n`` the spec's samples per shard, of the annotation or of its seeded
mixed order: :mod:`preprocessing.mixing`), so the output does not depend on the number of
workers or which worker ran what. A WebVid CSV is handed
out as byte-range slices that the workers read, stat, fingerprint and hash themselves, and at
most a window of tasks is in flight: the driver's memory does not grow with the corpus
(docs/data.md, "Shards at scale"). A finished shard gets a done-marker (``.done/<shard>.json``:
its inputs' fingerprint, sha256 and failures); a re-run keeps shards whose file still matches
their marker and rebuilds the rest. The failures list and then the manifest are written last,
atomically: a folder with a manifest is complete.

Every path a task carries is absolute, so a Dask worker started in any folder (or on another
machine with the same mounts) reads and writes the same files. A build holds an exclusive lock
on ``<out>/.lock`` for its whole run: a second build into the same folder stops with one line
naming the holder (docs/reliability.md, "Errors and safety").
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from preprocessing import publish
from preprocessing.cluster import dask_client, windowed
from preprocessing.decode import decoder
from preprocessing.mixing import mix_list
from preprocessing.records import VideoRecord
from preprocessing.remote import sizes
from preprocessing.slices import Slice, SlicedSource, absolute, plan_parts, slice_records
from preprocessing.spec import ShardSpec
from preprocessing.writer import ShardTask, failure, run_shard_task
from t2v2t.atomic import atomic_open
from t2v2t.data.schema import FORMAT
from t2v2t.data.shards import (
    FAILURES,
    MANIFEST,
    SHARD_SUFFIX,
    atomic_write_bytes,
    sha256_file,
    shard_name,
    write_manifest,
)
from t2v2t.errors import UsageError, on_path
from t2v2t.storage import is_url

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
    name = decoder()  # decord, or PyAV where decord has no wheel (docs/data.md, "Decoders")
    out = {"format": FORMAT, "decoder": name}
    for pkg in ("t2v2t", "decord" if name == "decord" else "av", "pillow", "numpy", "zstandard"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def fingerprint(task: ShardTask, early: list[dict[str, str]] | None = None) -> str:
    """A digest of everything a shard's bytes depend on (not the absolute data location).

    ``early``: the failures a sliced task found before decoding (refused paths, duplicates).
    How shards were sized is not part of it: the records already say which rows a shard holds.
    """
    spec: dict[str, Any] = {"index": task.index, **task.spec.content()}
    if early:
        spec["early"] = early
    spec["path"] = Path(task.path).name
    spec["builder"] = [task.spec.builder_version, created_with()]
    media_bytes = sizes([r.media for r in task.records])  # concurrent for URLs
    spec["records"] = [
        [r.key, r.source, r.captions, r.timestamps, r.is_image, nbytes]
        for r, nbytes in zip(task.records, media_bytes, strict=True)
    ]
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _marker_path(out_dir: Path, name: str) -> Path:
    return out_dir / DONE_DIR / f"{name}.json"


def _reusable(out_dir: Path | str, task: ShardTask, digest: str) -> dict[str, Any] | None:
    """The recorded result of a finished shard if its file and inputs are unchanged."""
    if is_url(out_dir):  # published to object storage (preprocessing/publish.py)
        return publish.reusable(str(out_dir), Path(task.path).name, digest, task.index)
    marker = _marker_path(out_dir, Path(task.path).name)
    try:
        done = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    path = Path(task.path)
    # A shard recorded before caption counts were kept is rebuilt (per-caption epochs need them).
    if done.get("fingerprint") != digest or not path.is_file() or "captions" not in done["info"]:
        return None
    if path.stat().st_size != done["info"]["bytes"] or sha256_file(path) != done["info"]["sha256"]:
        return None
    return {
        "index": task.index,
        "info": done["info"],
        "failures": done["failures"],
        "fps_warnings": done.get("fps_warnings", 0),
    }


def _clean(out_dir: Path, keep: set[str] | None) -> None:
    """Remove temporary files of a killed build and (``keep`` given) shards not in this build."""
    for p in out_dir.iterdir():
        if p.name.startswith(".") and p.name.endswith(".tmp"):
            p.unlink()
        elif keep is not None and p.name.endswith(SHARD_SUFFIX) and p.name not in keep:
            p.unlink()
            _marker_path(out_dir, p.name).unlink(missing_ok=True)
    done = out_dir / DONE_DIR
    if done.is_dir():
        for p in done.iterdir():
            if p.name.endswith(".tmp"):
                p.unlink()


@dataclass(frozen=True)
class Work:
    """One submitted task: a shard's parameters with either its records or its annotation slice.

    A sliced task carries no records: the worker reads its rows, stats and hashes them itself,
    so the driver's memory does not grow with the corpus (docs/data.md, "Shards at scale").
    """

    task: ShardTask
    out: str
    source: SlicedSource | None = None
    part: Slice | None = None


def screen(records: Iterable[VideoRecord]) -> tuple[list[VideoRecord], list[dict[str, str]]]:
    """Usable records (absolute media paths) and failures for refused paths and duplicate keys.

    Duplicate keys would make two samples indistinguishable: the later ones fail. A record its
    adapter refused (a path outside the data folder) is never handed to the decoder.
    """
    seen: set[str] = set()
    unique: list[VideoRecord] = []
    early: list[dict[str, str]] = []
    for rec in records:
        if rec.refused:
            early.append(failure(rec, rec.refused))
        elif rec.key in seen:
            early.append(failure(rec, f"duplicate key {rec.key!r}"))
        else:
            seen.add(rec.key)
            media = rec.media if is_url(rec.media) else Path(os.path.abspath(rec.media))
            unique.append(replace(rec, media=media))
    return unique, early


def run_work(work: Work) -> dict[str, Any]:
    """Build (or keep) one shard in a worker; returns a small summary, never per-record data.

    The shard's failures go to its done-marker, read back when ``failures.jsonl`` is written.
    """
    task, early, rows = work.task, [], len(work.task.records)
    if work.part is not None and work.source is not None:
        records = slice_records(work.source, work.part)
        rows = len(records)
        unique, early = screen(records)
        task = replace(task, records=unique)
    url = work.out if is_url(work.out) else None
    if url:  # written in this machine's staging folder, then uploaded
        task = replace(task, path=str(publish.staging_dir(url) / Path(task.path).name))
    digest = fingerprint(task, early)
    result = _reusable(url or Path(work.out), task, digest)
    reused = result is not None
    if result is None:
        result = run_shard_task(task)
        result["failures"] = early + result["failures"]
        # The marker goes after the shard file: a shard without one is rebuilt next time.
        marker = {"fingerprint": digest, **result}
        if url:
            publish.publish(Path(task.path), url, marker)
        else:
            data = json.dumps(marker, sort_keys=True).encode()
            atomic_write_bytes(_marker_path(Path(work.out), result["info"]["name"]), data)
    return {
        "index": task.index,
        "info": result["info"],
        "num_failed": len(result["failures"]),
        "fps_warnings": result.get("fps_warnings", 0),
        "rows": rows,
        "reused": reused,
    }


@dataclass
class Plan:
    """The build's tasks (a generator for a sliced CSV: planned as they are submitted).

    ``early``: failures the driver found screening a list (a sliced task screens its own rows);
    ``num_records`` and ``total`` are known up front for a list only.
    """

    works: Iterable[Work]
    total: int | None
    num_records: int | None
    early: list[dict[str, str]] = field(default_factory=list)


def plan(records: list[VideoRecord] | SlicedSource, out: Path, spec: ShardSpec) -> Plan:
    """Shard i always holds the same inputs, whatever the worker count: rows ``[i*n, (i+1)*n)``
    of the annotation, or with ``spec.mixing="blocks"`` those positions of its seeded mixed
    order (:mod:`preprocessing.mixing`). A list is screened here; a sliced CSV by its workers."""
    n = spec.samples_per_shard

    def task(i: int, recs: list[VideoRecord]) -> ShardTask:
        return ShardTask(i, str(out / shard_name(spec.dataset, spec.split, i)), spec, recs)

    if isinstance(records, SlicedSource):
        source = absolute(records)
        works = (
            Work(task(i, []), str(out), source, part)
            for i, part in enumerate(plan_parts(source, n, spec.mixing, spec.seed))
        )
        return Plan(works, None, None)
    if spec.mixed:  # before screening: a duplicate key fails where it lands in the mixed order
        records = mix_list(records, n, spec.seed)
    unique, early = screen(records)
    listed = [
        Work(task(i, unique[start : start + n]), str(out))
        for i, start in enumerate(range(0, len(unique), n))
    ]
    return Plan(listed, len(listed), len(records), early)


@dataclass
class Tally:
    """Per shard the driver keeps only its small summary (name, size, sha256, counts)."""

    t0: float
    stats: dict[str, Any]
    results: dict[int, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stats.update(tasks=0, max_in_flight=0)

    def submitted(self) -> None:
        if self.stats["tasks"] == 0:
            self.stats["first_submit_s"] = time.perf_counter() - self.t0
        self.stats["tasks"] += 1
        in_flight = self.stats["tasks"] - len(self.results)
        self.stats["max_in_flight"] = max(self.stats["max_in_flight"], in_flight)

    def done(self, result: dict[str, Any]) -> None:
        self.results[result["index"]] = result


def run(
    p: Plan, tally: Tally, *, workers: int, scheduler: str | None, window: int, progress: bool
) -> None:
    """Run the plan's tasks with at most ``window`` in flight, refilled as they complete.

    Each task decides itself whether its finished shard can be kept (done) or must be built
    (todo): only the worker reads its rows, so only it can fingerprint them.
    """
    from tqdm import tqdm

    bar = tqdm(total=p.total, desc="shards", unit="shard", disable=not progress)
    try:
        if scheduler is None and workers == 0:  # in-process: tests and tiny jobs, no cluster
            for w in p.works:
                tally.submitted()
                tally.done(run_work(w))
                bar.update()
            return
        with dask_client(workers, scheduler) as client:
            if progress:
                print(f"[shards] Dask dashboard: {client.dashboard_link}", flush=True)
            for result in windowed(
                client,
                run_work,
                p.works,
                window=window if window >= 1 else 4 * max(workers, 1),
                name=lambda w: f"shard-{Path(w.task.path).name}",
                scheduler=scheduler,
                on_submit=tally.submitted,
            ):
                tally.done(result)
                bar.update()
    finally:
        bar.close()


def _write_failures(out: Path, early: list[dict[str, str]], names: list[str]) -> None:
    """``failures.jsonl``: the driver's own failures, then each shard's from its marker, streamed."""
    with atomic_open(out / FAILURES, "w", encoding="utf-8") as f:
        for item in early:
            f.write(json.dumps(item, sort_keys=True, ensure_ascii=False) + "\n")
        for name in names:
            for item in json.loads(_marker_path(out, name).read_text())["failures"]:
                f.write(json.dumps(item, sort_keys=True, ensure_ascii=False) + "\n")


def finish(
    out: Path, spec: ShardSpec, p: Plan, tally: Tally, progress: bool, url: str | None = None
) -> dict[str, Any]:
    """Check every input is a sample or a failure, drop stale files, write failures, manifest.

    ``url``: the shards were published there; failures and manifest follow, the manifest last.
    """
    results, n = tally.results, len(tally.results)
    if sorted(results) != list(range(n)):
        raise RuntimeError(f"{out}: shard results missing ({n} of {tally.stats['tasks']} tasks)")
    infos = [results[i]["info"] for i in range(n)]
    names = [info["name"] for info in infos]
    _clean(out, set(names))  # temp files of workers that died, shards of an older, bigger build
    kept = sum(r["reused"] for r in results.values())
    if progress and kept:
        print(f"[shards] {kept} of {n} shards were already complete (kept)")
    num_samples = sum(i["samples"] for i in infos)
    num_failed = len(p.early) + sum(r["num_failed"] for r in results.values())
    num_records = p.num_records
    if num_records is None:
        num_records = sum(r["rows"] for r in results.values())
    if num_samples + num_failed != num_records:  # never drop an input silently
        raise RuntimeError(
            f"{out}: {num_samples} samples + {num_failed} failures != {num_records} records"
        )
    if url:
        publish.collect(url, names, out)  # stale objects go, markers come to ``out``
    _write_failures(out, p.early, names)
    manifest = {
        "format": FORMAT,
        **spec.manifest_fields(),
        "num_samples": num_samples,
        "num_failed": num_failed,
        "warnings": {"fps_from_packets": sum(r.get("fps_warnings", 0) for r in results.values())},
        "shards": infos,
        "created_with": created_with(),
    }
    if ShardSpec.from_manifest(manifest) != spec:  # readers rebuild the spec from these keys
        raise RuntimeError(f"{out}: the manifest does not read back as {spec}")
    write_manifest(out, manifest)
    if url:
        publish.publish_finish(out, url)
    return manifest


def build_shards(
    records: list[VideoRecord] | SlicedSource,
    out_dir: str | Path,
    spec: ShardSpec,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    progress: bool = True,
    window: int = 0,
    stats: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build (or finish) a shard folder of ``spec`` from ``records``; returns the manifest.

    ``records``: a list, or a sliced source (a CSV, webdataset tars) cut into slices of
    ``spec.samples_per_shard`` rows that the workers read themselves (docs/data.md, "Shards
    at scale"). ``workers`` processes of a local Dask cluster, or the cluster at ``scheduler``
    (``tcp://host:port``); ``workers=0`` without a scheduler runs in this process.
    ``window``: tasks in flight at once (0: four per worker). ``stats``, when given, receives
    ``first_submit_s`` (seconds from the call to the first submitted task), ``tasks`` and
    ``max_in_flight``.
    """
    tally = Tally(time.perf_counter(), {} if stats is None else stats)
    if workers < 0:
        raise UsageError(f"workers must be >= 0 (WORKERS={workers}): 0 builds in this process")
    # OUT= a URL: shards are staged in a local folder and published (preprocessing/publish.py).
    url = str(out_dir) if is_url(out_dir) else None
    if url:
        publish.check_target(url)  # a read-only scheme, a missing bucket: before any work
    out = publish.staging_dir(url) if url else Path(os.path.abspath(out_dir))
    with on_path(out):
        out.mkdir(parents=True, exist_ok=True)
    with build_lock(out):
        (out / DONE_DIR).mkdir(exist_ok=True)
        todo = plan(records, out, spec)
        _clean(out, None)  # temp files of a killed build; stale shards go once the count is known
        (out / MANIFEST).unlink(missing_ok=True)  # the folder is incomplete until the new manifest
        if url:
            publish.unpublish_manifest(url)
            todo.works = (replace(w, out=url) for w in todo.works)  # tasks publish there
        run(todo, tally, workers=workers, scheduler=scheduler, window=window, progress=progress)
        return finish(out, spec, todo, tally, progress, url)
