"""Locations that are local paths or fsspec URLs (``s3://``, ``gs://``, ``hf://``, ``http(s)://``).

Every helper takes either kind; a local path goes through the standard library unchanged, a
URL through the filesystem fsspec picks for its scheme (s3fs for ``s3://``, gcsfs for ``gs://``,
huggingface_hub for ``hf://``). Credentials and endpoints come only from those libraries' usual
environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``, ``GOOGLE_APPLICATION_CREDENTIALS``, ``HF_TOKEN``...): nothing here adds a
setting. ``http(s)://`` and ``hf://`` are read-only here: writing to them is one clear error.
docs/storage.md, "Object storage".
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import shutil
from pathlib import Path
from typing import Any, BinaryIO

from t2v2t.atomic import atomic_open
from t2v2t.errors import UsageError

__all__ = [
    "READ_ONLY_SCHEMES",
    "Location",
    "basename",
    "check_writable",
    "exists",
    "get_file",
    "is_url",
    "join",
    "list_sizes",
    "location",
    "open_read",
    "put_file",
    "scheme",
    "size",
    "url_fs",
]

Location = str | Path
READ_ONLY_SCHEMES = ("http", "https", "hf")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# The package that gives fsspec each scheme (what to install when it is missing).
_PACKAGES = {"s3": "s3fs (pip install 't2v2t[s3]')", "gs": "gcsfs", "gcs": "gcsfs"}
_PACKAGES.update(http="aiohttp", https="aiohttp", hf="huggingface_hub")


def is_url(path: object) -> bool:
    """Whether ``path`` is a ``scheme://`` URL (or an fsspec chain such as ``simplecache::s3://``)."""
    text = str(path)
    return bool(_URL.match(text)) or ("::" in text and "://" in text)


def scheme(url: str) -> str:
    """The protocol of a URL's outermost filesystem: ``s3`` for ``s3://b/k``, ``""`` for a path."""
    if not is_url(url):
        return ""
    return str(url).rsplit("::", 1)[-1].split("://", 1)[0].lower()


def location(path: str | os.PathLike[str]) -> Location:
    """A URL stays a string (``Path`` would fold its ``//``); anything else becomes a Path."""
    return str(path) if is_url(path) else Path(path)


def join(root: str | os.PathLike[str], *parts: str) -> Location:
    """``root/part/...``: a URL string for a URL root, a :class:`Path` for a local one."""
    if is_url(root):
        return "/".join([str(root).rstrip("/"), *(p.strip("/") for p in parts)])
    return Path(root).joinpath(*parts)


def basename(loc: str | os.PathLike[str]) -> str:
    """The last component of a path or URL (``train_4f`` for ``s3://b/webvid/train_4f/``)."""
    return str(loc).rstrip("/").rsplit("/", 1)[-1] if is_url(loc) else Path(loc).name


def url_fs(url: str) -> tuple[Any, str]:
    """``(fsspec filesystem, path without the protocol)`` of ``url``; one clear error when the
    scheme's package is missing or the URL cannot be understood."""
    import fsspec.core

    try:
        return fsspec.core.url_to_fs(str(url))
    except ImportError as err:
        need = _PACKAGES.get(scheme(url), "the scheme's fsspec package")
        raise UsageError(f"cannot open {url}: {err}; install {need}") from None
    except ValueError as err:
        raise UsageError(f"cannot open {url}: {err}; check the URL") from None


def check_writable(url: str) -> None:
    """Raise :class:`UsageError` when ``url`` is on a read-only scheme (http, https, hf)."""
    if scheme(url) in READ_ONLY_SCHEMES:
        raise UsageError(
            f"cannot write to {url}: {scheme(url)}:// is read-only here; "
            "write to a local folder or an object store (s3://, gs://) instead"
        )


def _not_found(loc: Location) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(loc))


def exists(loc: Location) -> bool:
    if not is_url(loc):
        return Path(loc).exists()
    fs, path = url_fs(str(loc))
    return bool(fs.exists(path))


def size(loc: Location) -> int:
    """Bytes of a file; :class:`FileNotFoundError` naming it when there is none."""
    if not is_url(loc):
        return Path(loc).stat().st_size
    fs, path = url_fs(str(loc))
    try:
        return int(fs.info(path)["size"])
    except FileNotFoundError:
        raise _not_found(loc) from None


def list_sizes(loc: Location) -> dict[str, int]:
    """``{file name: bytes}`` of the files directly inside a folder or URL prefix.

    One listing request for an object store (not one per file); a folder that does not exist,
    or a store that cannot list (plain http without an index page), gives ``{}``, and files
    listed without a size are left out: callers ask :func:`size` for a name not found here.
    """
    if not is_url(loc):
        folder = Path(loc)
        if not folder.is_dir():
            return {}
        return {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
    fs, path = url_fs(str(loc))
    fs.invalidate_cache(path)  # another process may have published since this one last looked
    try:
        entries = fs.ls(path, detail=True)
    except (FileNotFoundError, NotImplementedError, ValueError):
        return {}
    return {
        posixpath.basename(e["name"].rstrip("/")): int(e["size"])
        for e in entries
        if e.get("type") == "file" and e.get("size") is not None
    }


def open_read(loc: Location) -> BinaryIO:
    """A binary reader of a local file or an object (buffered: lines come at local speed)."""
    if not is_url(loc):
        return open(loc, "rb")  # noqa: SIM115 - the caller closes it
    fs, path = url_fs(str(loc))
    try:
        return fs.open(path, "rb", block_size=1 << 22)
    except FileNotFoundError:
        raise _not_found(loc) from None


def get_file(loc: Location, local: str | Path) -> None:
    """Copy a file or object to the local path ``local`` (overwritten)."""
    if not is_url(loc):
        shutil.copyfile(loc, local)
        return
    fs, path = url_fs(str(loc))
    try:
        fs.get_file(path, str(local))
    except FileNotFoundError:
        raise _not_found(loc) from None


def put_file(local: str | Path, loc: Location) -> None:
    """Publish the finished local file ``local`` at ``loc``: atomically for a local target (a
    temporary sibling renamed into place); for an object store a single upload, which the store
    makes visible only once complete."""
    if not is_url(loc):
        Path(loc).parent.mkdir(parents=True, exist_ok=True)
        with open(local, "rb") as src, atomic_open(loc, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        return
    check_writable(str(loc))
    fs, path = url_fs(str(loc))
    fs.put_file(str(local), path)
