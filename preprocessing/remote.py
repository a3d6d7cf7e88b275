"""Builder inputs at fsspec URLs: annotation files and media read from ``s3://``, ``gs://``,
``hf://``, ``http(s)://`` as from local paths.

A location is a local :class:`~pathlib.Path` or a URL string (:mod:`t2v2t.storage`); each
helper takes either, so an adapter joins, tests and opens its files the same way for both.
Media at a URL are copied to a local temporary file before decoding (decord and ffmpeg read
paths) and removed after (docs/storage.md, "Object storage").
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from t2v2t import retry, storage
from t2v2t.storage import Location, is_url, join, location, url_fs

__all__ = ["Location", "is_url", "join", "location"]


def is_file(path: Location) -> bool:
    if not is_url(path):
        return Path(path).is_file()
    fs, p = url_fs(str(path))
    return bool(retry.call(str(path), "exists", fs.isfile, p))


def size(path: Location) -> int:
    """Bytes of the file, -1 when there is none (what a fingerprint records)."""
    if not is_url(path) and not Path(path).is_file():
        return -1
    try:
        return storage.size(path)
    except FileNotFoundError:
        return -1


def sizes(paths: list[Location]) -> list[int]:
    """:func:`size` of each path; URLs on an asynchronous store (s3, gcs, http) are asked
    concurrently, so a re-run fingerprints a slice of thousands of videos in a few round trips."""
    urls = [str(p) for p in paths if is_url(p)]
    if not urls:
        return [size(p) for p in paths]
    fs, _ = url_fs(urls[0])
    if len(urls) != len(paths) or not getattr(fs, "async_impl", False):
        return [size(p) for p in paths]
    from fsspec.asyn import _run_coros_in_chunks, sync

    coros = [fs._size(url_fs(u)[1]) for u in urls]
    found = sync(fs.loop, _run_coros_in_chunks, coros, return_exceptions=True)
    out = []
    for url, got in zip(urls, found, strict=True):
        if isinstance(got, FileNotFoundError) or got is None:
            out.append(-1)
        elif isinstance(got, Exception) and retry.transient(got):
            out.append(size(url))  # asked again on its own, with retries
        elif isinstance(got, BaseException):
            raise got
        else:
            out.append(int(got))
    return out


def glob(root: Location, pattern: str) -> list[Location]:
    """Sorted matches of ``pattern`` directly under ``root``."""
    if not is_url(root):
        return sorted(Path(root).glob(pattern))
    fs, p = url_fs(str(root))
    try:
        found = retry.call(str(root), "list", fs.glob, posixpath.join(p, pattern))
    except (OSError, NotImplementedError, ValueError):
        return []  # a store that cannot list (plain http): only exact names are found
    return sorted(str(join(root, posixpath.basename(m))) for m in found)


@contextlib.contextmanager
def open_binary(path: Location) -> Iterator[BinaryIO]:
    """A buffered binary reader (a URL's lines come out at local speed, not a block each)."""
    if not is_url(path):
        with open(path, "rb") as f:
            yield f
        return
    with storage.open_read(path) as raw, io.BufferedReader(raw, buffer_size=1 << 20) as f:
        yield f


def is_inside(path: Location, root: Location) -> bool:
    """Whether a URL ``path`` stays under ``root`` once ``..`` is normalised."""
    full, base = posixpath.normpath(str(path)), posixpath.normpath(str(root))
    return full == base or full.startswith(base.rstrip("/") + "/")


def relative(path: Location, root: Location) -> str:
    """``path`` relative to ``root`` when inside it, else the whole location."""
    full, base = posixpath.normpath(str(path)), posixpath.normpath(str(root))
    return full[len(base) + 1 :] if is_inside(path, root) else str(path)


@contextlib.contextmanager
def local_copy(path: Location) -> Iterator[Path]:
    """``path`` itself when local; a URL's bytes as a temporary file, removed afterwards."""
    if not is_url(path):
        yield Path(path)
        return
    fd, name = tempfile.mkstemp(prefix="t2v2t-media-", suffix=posixpath.splitext(str(path))[1])
    os.close(fd)
    try:
        try:
            storage.get_file(path, name)
        except FileNotFoundError:
            raise FileNotFoundError(f"missing file {path}") from None
        yield Path(name)
    finally:
        os.unlink(name)
