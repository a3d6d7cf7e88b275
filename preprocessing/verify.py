"""Check a shard folder against its manifest: sha256, counts, members per sample, JPEGs."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from preprocessing.cluster import dask_client, windowed
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


def verify_shard(job: tuple[str, dict[str, Any], int, bool]) -> dict[str, Any]:
    """One shard's problems and its keys' 64-bit digests (runs in a Dask worker or in-process).

    ``job``: (folder, the manifest's shard entry, the manifest's ``num_frames``, decode JPEGs).
    """
    folder, entry, num_frames, decode_jpegs = job
    directory = Path(folder)
    info = ShardInfo(**entry)
    problems: list[str] = []
    digests: list[int] = []
    try:
        check_shard_file(directory, info)
    except ShardError as err:
        return {"name": info.name, "problems": [str(err)], "count": 0, "keys": np.zeros(0, "<u8")}
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
    The driver keeps 8 bytes per key to find keys that occur in two shards.
    """
    directory = Path(directory)
    try:
        manifest = read_manifest(directory)
    except ShardError as err:
        return [str(err)]
    entries = [asdict(i) for i in shard_infos(manifest)]
    folder = os.path.abspath(directory)
    jobs = [(folder, e, manifest["num_frames"], decode_jpegs) for e in entries]
    results: dict[str, dict[str, Any]] = {}
    bar = (
        progress_bar(
            total=manifest.get("num_samples"), desc=f"verify {directory.name}", unit="sample"
        )
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
    fail_path = directory / FAILURES
    failed = 0
    if fail_path.is_file():
        with open(fail_path, "rb") as f:
            failed = sum(1 for _ in f)
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
