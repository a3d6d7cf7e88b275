"""Check a shard folder against its manifest: sha256, counts, members per sample, JPEGs."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from preprocessing.cluster import dask_client, windowed
from t2v2t import retry
from t2v2t.data.schema import decode_sample
from t2v2t.data.shards import (
    FAILURES,
    ShardError,
    ShardInfo,
    check_shard_file,
    iter_samples,
    read_manifest,
    shard_infos,
)
from t2v2t.progress import progress as progress_bar
from t2v2t.storage import get_file, is_url, join, url_fs


def verify_shard(job: tuple[str, dict[str, Any], int, bool]) -> dict[str, Any]:
    """One shard's problems and its keys' 64-bit digests (runs in a Dask worker or in-process).

    ``job``: (folder, the manifest's shard entry, the manifest's ``num_frames``, decode JPEGs).
    """
    folder, entry, num_frames, decode_jpegs = job
    if is_url(folder):
        return _verify_object(job)
    directory = Path(folder)
    info = ShardInfo(**entry)
    problems: list[str] = []
    digests: list[int] = []
    try:
        check_shard_file(directory, info)
    except ShardError as err:
        return _unreadable(info.name, str(err))
    count = 0
    keys: set[str] = set()
    try:
        for sample in iter_samples(directory / info.name):
            count += 1
            key = sample["__key__"]
            where = f"{info.name}: sample {key}"
            if key in keys:
                problems.append(f"{where}: duplicate key")
            keys.add(key)
            digests.append(int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest()))
            meta, jpegs = decode_sample(sample)
            extra = set(sample) - {"__key__", "json"} - {f"{i:03d}.jpg" for i in range(len(jpegs))}
            if extra:
                problems.append(f"{where}: unexpected members {sorted(extra)}")
            if meta.sampling.get("num_frames") != num_frames:
                problems.append(f"{where}: num_frames differs from the manifest")
            if decode_jpegs:
                for i, data in enumerate(jpegs):
                    with Image.open(io.BytesIO(data)) as img:
                        img.load()
                        if [img.height, img.width] != list(meta.size):
                            problems.append(f"{where}: frame {i} is {img.size}, meta {meta.size}")
    except Exception as err:  # noqa: BLE001 - any unreadable sample is a finding
        problems.append(f"{info.name}: {type(err).__name__}: {err}")
    if count != info.samples:
        problems.append(f"{info.name}: {count} samples, manifest says {info.samples}")
    return {
        "name": info.name,
        "problems": problems,
        "count": count,
        "keys": np.unique(np.asarray(digests, dtype="<u8")),
    }


def _unreadable(name: str, problem: str) -> dict[str, Any]:
    return {"name": name, "problems": [problem], "count": 0, "keys": np.zeros(0, "<u8")}


def _verify_object(job: tuple[str, dict[str, Any], int, bool]) -> dict[str, Any]:
    """:func:`verify_shard` of a shard in object storage: its size from the store, then the
    checks on a temporary local copy; problems name the object's URL, not the copy."""
    url, entry, num_frames, decode_jpegs = job
    target = str(join(url, entry["name"]))
    fs, path = url_fs(target)
    try:
        size = int(retry.call(target, "info", fs.info, path)["size"])
    except FileNotFoundError:
        return _unreadable(entry["name"], f"{target}: listed in the manifest but missing")
    if size != entry["bytes"]:
        return _unreadable(
            entry["name"],
            f"{target}: {size} bytes, manifest says {entry['bytes']} (truncated or replaced)",
        )
    with tempfile.TemporaryDirectory(prefix="t2v2t-verify-") as tmp:
        get_file(target, os.path.join(tmp, entry["name"]))
        res = verify_shard((tmp, entry, num_frames, decode_jpegs))
    res["problems"] = [p.replace(tmp, url.rstrip("/")) for p in res["problems"]]
    return res


def _count_failures(directory: str | Path) -> int:
    """Lines of ``failures.jsonl`` (0 when there is none)."""
    if is_url(directory):
        fs, path = url_fs(str(join(directory, FAILURES)))
        url = str(join(directory, FAILURES))
        if not retry.call(url, "exists", fs.exists, path):
            return 0
        return retry.call(url, "read", fs.cat_file, path).count(b"\n")
    fail_path = Path(directory) / FAILURES
    if not fail_path.is_file():
        return 0
    with open(fail_path, "rb") as f:
        return sum(1 for _ in f)


def verify_dir(
    directory: str | Path,
    *,
    decode_jpegs: bool = True,
    workers: int = 0,
    scheduler: str | None = None,
    progress: bool = False,
) -> list[str]:
    """Every problem found (empty list: the folder is sound).

    Shards are checked by ``workers`` local Dask processes or the cluster at ``scheduler``
    (in this process when both are unset), a bounded window at a time, with a progress bar.
    The driver keeps 8 bytes per key to find keys that occur in two shards. ``directory``
    may be an fsspec URL (``s3://bucket/prefix/webvid/train_4f``): each shard is then fetched
    by the worker that checks it (docs/storage.md, "Object storage").
    """
    try:
        manifest = read_manifest(directory)
    except ShardError as err:
        return [str(err)]
    entries = [asdict(i) for i in shard_infos(manifest)]
    folder = str(directory) if is_url(directory) else os.path.abspath(directory)
    label = str(directory).rstrip("/").rsplit("/", 1)[-1]
    jobs = [(folder, e, manifest["num_frames"], decode_jpegs) for e in entries]
    results: dict[str, dict[str, Any]] = {}
    bar = (
        progress_bar(total=manifest.get("num_samples"), desc=f"verify {label}", unit="sample")
        if progress
        else tqdm(disable=True)
    )
    try:
        if scheduler is None and workers == 0:
            for job in jobs:
                res = verify_shard(job)
                results[res["name"]] = res
                bar.update(res["count"])
        else:
            with dask_client(workers, scheduler) as client:
                for res in windowed(
                    client,
                    verify_shard,
                    jobs,
                    window=4 * max(workers, 1),
                    name=lambda j: f"verify-{j[1]['name']}",
                    scheduler=scheduler,
                ):
                    results[res["name"]] = res
                    bar.update(res["count"])
    finally:
        bar.close()
    ordered = [results[e["name"]] for e in entries]
    problems = [p for r in ordered for p in r["problems"]]
    problems += _shared_keys(ordered)
    total = sum(r["count"] for r in ordered)
    if total != manifest["num_samples"]:
        problems.append(f"{total} samples in shards, manifest says {manifest['num_samples']}")
    failed = _count_failures(directory)
    if failed != manifest["num_failed"]:
        problems.append(
            f"{FAILURES}: {failed} lines, manifest says num_failed={manifest['num_failed']}"
        )
    return problems


def _shared_keys(results: list[dict[str, Any]]) -> list[str]:
    """One problem per pair of shards that hold the same key."""
    if not results:
        return []
    digests = np.concatenate([r["keys"] for r in results])
    owner = np.repeat(np.arange(len(results)), [len(r["keys"]) for r in results])
    order = np.argsort(digests, kind="stable")
    same = np.flatnonzero(digests[order][1:] == digests[order][:-1])
    pairs = sorted({(int(owner[order][i]), int(owner[order][i + 1])) for i in same})
    return [
        f"{results[a]['name']} and {results[b]['name']}: a key occurs in both" for a, b in pairs
    ]


def verdict(directory: str | Path, **kw: Any) -> tuple[bool, str]:
    """``(ok, one-line verdict)``; ``kw`` as :func:`verify_dir`."""
    problems = verify_dir(directory, **kw)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return False, f"FAILED {directory}: {problems[0]}{more}"
    m = read_manifest(directory)
    return True, (
        f"OK {directory}: {len(m['shards'])} shards, {m['num_samples']} samples, "
        f"{m['num_failed']} failed inputs; sha256, counts, members and JPEGs check out"
    )
