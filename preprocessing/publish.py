"""Shards published to object storage: staged locally, uploaded when complete, manifest last.

When ``OUT=`` is an fsspec URL (``s3://bucket/prefix``, ``gs://...``), every shard is written
to a local staging folder first (the same deterministic bytes as a local build), uploaded
under its final name once complete, and removed locally. Its done-marker
(``.done/<shard>.json``) is uploaded after it, recording the object's size, sha256 and the
store's own version tag (``ETag``...). ``failures.jsonl`` and then ``manifest.json`` go last,
and a build deletes an older manifest before it starts: a prefix with a manifest is complete,
and a killed build leaves none (docs/storage.md, "Object storage").

A re-run keeps a published shard whose marker matches its inputs and whose object still has
the recorded size and version tag (one metadata request, no download); where the store gives
no tag, the object is downloaded and its sha256 compared.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from t2v2t import retry
from t2v2t.atomic import atomic_write_bytes
from t2v2t.data.shards import FAILURES, MANIFEST, SHARD_SUFFIX
from t2v2t.errors import UsageError
from t2v2t.storage import (
    check_writable,
    join,
    open_read,
    put_file,
    scheme,
    url_fs,
    write_bytes,
)

__all__ = ["check_target", "publish", "reusable", "staging_dir"]

DONE_DIR = ".done"
BUCKET_SCHEMES = ("s3", "gs", "gcs")  # the first part of the path is a bucket that must exist
# Metadata fields that change whenever an object's bytes do, by store (s3, gcs, local/memory).
VERSION_FIELDS = ("ETag", "etag", "md5Hash", "generation", "mtime", "created")


def _sub(path: str, *parts: str) -> str:
    """A path inside a filesystem (no protocol) joined with ``parts``."""
    return "/".join([path.rstrip("/"), *parts])


def check_target(url: str) -> None:
    """Refuse, before any work, an ``OUT=`` URL that cannot be written: a read-only scheme
    (http, https, hf) or a bucket that does not exist."""
    check_writable(url)
    if scheme(url) not in BUCKET_SCHEMES:
        return
    fs, path = url_fs(url)
    bucket = path.split("/", 1)[0]
    with _writing(url):
        found = _bucket_exists(url, fs, bucket)
    if not found:
        raise UsageError(
            f"bucket {bucket} does not exist (OUT={url}): create it or check the URL "
            "(and AWS_ENDPOINT_URL for a store other than AWS)"
        )


def _bucket_exists(url: str, fs: Any, bucket: str) -> bool:
    """Whether ``bucket`` is there. s3fs's ``exists`` of a bucket answers False on any error, a
    503 included: S3 is asked directly, so that a busy store is retried, not taken for none."""
    if scheme(url) != "s3":
        return bool(retry.call(url, "exists", fs.exists, bucket))
    try:
        retry.call(url, "exists", fs.call_s3, "head_bucket", Bucket=bucket)
    except (FileNotFoundError, PermissionError):
        return False  # as s3fs answers: none, or not one of ours
    return True


@contextlib.contextmanager
def _writing(url: str) -> Iterator[None]:
    """A store's refusal (no bucket, no permission, no connection) is one line naming ``url``.

    Local errors name their file and pass through (docs/reliability.md, "Errors and safety").
    """
    try:
        yield
    except OSError as err:
        if err.filename is not None:
            raise
        raise UsageError(
            f"cannot write to {url} (OUT=): {type(err).__name__}: {err}; check that the bucket "
            "exists, the endpoint answers and the credentials may write there"
        ) from None


def staging_dir(url: str) -> Path:
    """This machine's local folder for shards on their way to ``url`` (under ``TMPDIR``)."""
    tag = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    # Per user: another user's staging folder in a shared /tmp is not writable.
    path = Path(tempfile.gettempdir()) / f"t2v2t-staging-{os.getuid()}" / tag
    path.mkdir(parents=True, exist_ok=True)
    return path


def _version(info: dict[str, Any]) -> str | None:
    for field in VERSION_FIELDS:
        if info.get(field) is not None:
            return f"{field}:{info[field]}"
    return None


def publish(local: Path, url: str, marker: dict[str, Any]) -> None:
    """Upload a finished shard under its final name, then its done-marker.

    The marker records the object's version tag; a shard without a marker is rebuilt next
    time. The local file is removed once the object is there with the right size: the staging
    folder holds only shards in flight.
    """
    info = marker["info"]
    target = str(join(url, info["name"]))
    fs, folder = url_fs(url)
    with _writing(target):
        put_file(local, target)
        meta = retry.call(target, "info", fs.info, _sub(folder, info["name"]))
    if int(meta.get("size", -1)) != info["bytes"]:
        raise UsageError(
            f"{target}: {meta.get('size')} bytes after upload, expected {info['bytes']}: "
            "re-run the build (finished shards are kept)"
        )
    local.unlink()
    marker = {**marker, "version": _version(meta)}
    with _writing(target):
        data = json.dumps(marker, sort_keys=True).encode()
        write_bytes(str(join(url, DONE_DIR, f"{info['name']}.json")), data)


def _marker(path: str, name: str) -> str:
    return _sub(path, DONE_DIR, f"{name}.json")


def _read_marker(url: str, name: str) -> dict[str, Any] | None:
    fs, path = url_fs(url)
    try:
        return json.loads(retry.call(url, "read", fs.cat_file, _marker(path, name)))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _object_sha256(url: str) -> str:
    h = hashlib.sha256()
    with open_read(url) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def reusable(url: str, name: str, digest: str, index: int) -> dict[str, Any] | None:
    """A published shard's recorded result if its inputs and its object are unchanged."""
    done = _read_marker(url, name)
    if done is None or done.get("fingerprint") != digest or "captions" not in done["info"]:
        return None  # changed inputs, or recorded before caption counts were kept
    target = str(join(url, name))
    fs, path = url_fs(target)
    try:
        meta = retry.call(target, "info", fs.info, path)
    except FileNotFoundError:
        return None
    if int(meta.get("size", -1)) != done["info"]["bytes"]:
        return None
    recorded, now = done.get("version"), _version(meta)
    if recorded is None or now is None or recorded != now:
        # No tag to compare (or it moved): the bytes decide.
        if _object_sha256(target) != done["info"]["sha256"]:
            return None
    return {
        "index": index,
        "info": done["info"],
        "failures": done["failures"],
        "fps_warnings": done.get("fps_warnings", 0),
    }


def unpublish_manifest(url: str) -> None:
    """Remove an older manifest first: the prefix is incomplete until the new one is uploaded."""
    fs, path = url_fs(str(join(url, MANIFEST)))
    with _writing(url):
        if retry.call(url, "exists", fs.exists, path):
            retry.call(url, "delete", fs.rm_file, path)


def collect(url: str, names: list[str], staging: Path) -> None:
    """Before the failures list: delete shards (and markers) of an older, bigger build under
    ``url``, and copy this build's markers into ``staging/.done`` (failures are read there)."""
    fs, path = url_fs(url)
    fs.invalidate_cache(path)  # workers in other processes wrote here
    keep = set(names)
    for entry in retry.call(url, "list", fs.ls, path, detail=False):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        if name.endswith(SHARD_SUFFIX) and name not in keep:
            retry.call(url, "delete", fs.rm_file, entry)
            if retry.call(url, "exists", fs.exists, _marker(path, name)):
                retry.call(url, "delete", fs.rm_file, _marker(path, name))
    (staging / DONE_DIR).mkdir(parents=True, exist_ok=True)
    for start in range(0, len(names), 256):  # a batch of requests at once, bounded memory
        batch = {_marker(path, n): n for n in names[start : start + 256]}
        got = retry.call(url, "read", fs.cat, list(batch), on_error="raise")
        for key, data in got.items():
            atomic_write_bytes(staging / DONE_DIR / f"{batch[key]}.json", data)


def publish_finish(staging: Path, url: str) -> None:
    """Upload ``failures.jsonl``, then the manifest: the last object of a complete build.

    The local copies go (markers, shards a killed build left staged): the staging folder keeps
    only the lock.
    """
    for name in (FAILURES, MANIFEST):
        with _writing(url):
            put_file(staging / name, join(url, name))
        (staging / name).unlink()
    for left in [*(staging / DONE_DIR).glob("*.json"), *staging.glob(f"*{SHARD_SUFFIX}")]:
        left.unlink()
