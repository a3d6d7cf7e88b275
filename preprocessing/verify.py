"""Check a shard folder against its manifest: sha256, counts, members per sample, JPEGs."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from t2v2t.progress import progress
from t2v2t.schema import decode_sample
from t2v2t.shards import (
    FAILURES,
    ShardError,
    check_shard_file,
    iter_samples,
    read_manifest,
    shard_infos,
)


def verify_dir(directory: str | Path, *, decode_jpegs: bool = True) -> list[str]:
    """Every problem found (empty list: the folder is sound)."""
    directory = Path(directory)
    try:
        manifest = read_manifest(directory)
    except ShardError as err:
        return [str(err)]
    problems: list[str] = []
    total = 0
    keys: set[str] = set()
    bar = progress(
        total=manifest.get("num_samples"), desc=f"verify {directory.name}", unit="sample"
    )
    for info in shard_infos(manifest):
        try:
            check_shard_file(directory, info)
        except ShardError as err:
            problems.append(str(err))
            continue
        count = 0
        try:
            for sample in iter_samples(directory / info.name):
                count += 1
                bar.update(1)
                key = sample["__key__"]
                where = f"{info.name}: sample {key}"
                if key in keys:
                    problems.append(f"{where}: duplicate key")
                keys.add(key)
                meta, jpegs = decode_sample(sample)
                extra = (
                    set(sample) - {"__key__", "json"} - {f"{i:03d}.jpg" for i in range(len(jpegs))}
                )
                if extra:
                    problems.append(f"{where}: unexpected members {sorted(extra)}")
                if meta.sampling.get("num_frames") != manifest["num_frames"]:
                    problems.append(f"{where}: num_frames differs from the manifest")
                if decode_jpegs:
                    for i, data in enumerate(jpegs):
                        with Image.open(io.BytesIO(data)) as img:
                            img.load()
                            if [img.height, img.width] != list(meta.size):
                                problems.append(
                                    f"{where}: frame {i} is {img.size}, meta {meta.size}"
                                )
        except Exception as err:  # noqa: BLE001 - any unreadable sample is a finding
            problems.append(f"{info.name}: {type(err).__name__}: {err}")
        if count != info.samples:
            problems.append(f"{info.name}: {count} samples, manifest says {info.samples}")
        total += count
    bar.close()
    if total != manifest["num_samples"]:
        problems.append(f"{total} samples in shards, manifest says {manifest['num_samples']}")
    fail_path = directory / FAILURES
    failed = len(fail_path.read_text().splitlines()) if fail_path.is_file() else 0
    if failed != manifest["num_failed"]:
        problems.append(
            f"{FAILURES}: {failed} lines, manifest says num_failed={manifest['num_failed']}"
        )
    return problems


def verdict(directory: str | Path) -> tuple[bool, str]:
    """``(ok, one-line verdict)``."""
    problems = verify_dir(directory)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return False, f"FAILED {directory}: {problems[0]}{more}"
    m = read_manifest(directory)
    return True, (
        f"OK {directory}: {len(m['shards'])} shards, {m['num_samples']} samples, "
        f"{m['num_failed']} failed inputs; sha256, counts, members and JPEGs check out"
    )
