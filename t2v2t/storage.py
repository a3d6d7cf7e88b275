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
import io
import os
import posixpath
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from t2v2t import retry
from t2v2t.atomic import atomic_open
from t2v2t.errors import UsageError

__all__ = [
    "READ_ONLY_SCHEMES",
    "Location",
    "ShardFolder",
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
    "upload_limit_s",
    "url_fs",
    "write_bytes",
]

Location = str | Path
READ_ONLY_SCHEMES = ("http", "https", "hf")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# The package that gives fsspec each scheme (what to install when it is missing).
_PACKAGES = {"s3": "s3fs (pip install 't2v2t[s3]')", "gs": "gcsfs", "gcs": "gcsfs"}
_RANGED = ("s3", "gs", "gcs")  # stores that answer byte ranges: read as retried blocks
_PACKAGES.update(http="aiohttp", https="aiohttp", hf="huggingface_hub")
_MIN_UPLOAD_RATE = 1e6  # bytes/s an upload keeps up at least, or it counts as stalled


@dataclass(frozen=True)
class ShardFolder:
    """A shard folder resolved once: a local folder (``root`` a Path) or a URL prefix (``root`` a
    string, ``remote``). Made at the edge where a command, config or API first gets the folder
    (:meth:`of`); the read path below lists, opens and joins through it without asking again
    what kind of place it is (docs/architecture.md, "A shard folder, resolved once")."""

    root: Location
    remote: bool

    @classmethod
    def of(cls, where: str | os.PathLike[str] | ShardFolder) -> ShardFolder:
        """``where`` as a ShardFolder; one already made comes back unchanged."""
        if isinstance(where, ShardFolder):
            return where
        remote = is_url(where)
        return cls(str(where) if remote else Path(where), remote)

    def __str__(self) -> str:  # messages name the folder as before, a URL as typed
        return str(self.root)

    @property
    def name(self) -> str:
        """The folder's last component (``train_4f`` for ``s3://b/webvid/train_4f/``)."""
        return basename(self.root)

    def join(self, *parts: str) -> Location:
        """A member's location: a URL string in a remote folder, a Path in a local one."""
        return join(self.root, *parts)

    def exists(self) -> bool:
        """Whether the folder is there (a store: whether its prefix exists)."""
        return exists(self.root) if self.remote else Path(self.root).is_dir()

    def has(self, name: str) -> bool:
        """Whether member ``name`` is there (a local one must be a file)."""
        return exists(self.join(name)) if self.remote else Path(self.join(name)).is_file()

    def list_sizes(self) -> dict[str, int]:
        """``{file name: bytes}`` of the members (one listing request for a store)."""
        return list_sizes(self.root)

    def open(self, name: str) -> BinaryIO:
        """A binary reader of member ``name`` (the caller closes it)."""
        return open_read(self.join(name))


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
        fs, path = fsspec.core.url_to_fs(str(url), **_options(str(url)))
    except ImportError as err:
        need = _PACKAGES.get(scheme(url), "the scheme's fsspec package")
        raise UsageError(f"cannot open {url}: {err}; install {need}") from None
    except ValueError as err:
        raise UsageError(f"cannot open {url}: {err}; check the URL") from None
    if _options(str(url)):
        fs.retries = 1  # s3fs's own retry loop (a class setting, not an option)
    return fs, path


def _options(url: str) -> dict[str, Any]:
    """Filesystem options: for S3, one attempt per request and a bounded stall, so that
    :mod:`t2v2t.retry` alone decides what is tried again (and logs it)."""
    if scheme(url) != "s3" or "::" in url:
        return {}
    t = retry.timeout_s()
    config = {"retries": {"total_max_attempts": 1}, "connect_timeout": t, "read_timeout": t}
    return {"config_kwargs": config}


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
    return bool(retry.call(str(loc), "exists", fs.exists, path))


def size(loc: Location) -> int:
    """Bytes of a file; :class:`FileNotFoundError` naming it when there is none."""
    if not is_url(loc):
        return Path(loc).stat().st_size
    fs, path = url_fs(str(loc))
    try:
        return int(retry.call(str(loc), "info", fs.info, path)["size"])
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
        entries = retry.call(str(loc), "list", fs.ls, path, detail=True)
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
        info = retry.call(str(loc), "info", fs.info, path)
    except FileNotFoundError:
        raise _not_found(loc) from None
    if scheme(str(loc)) not in _RANGED or info.get("size") is None:
        # A plain web server may ignore ranges (or not give a size): one stream, as fsspec reads it
        return retry.call(str(loc), "open", fs.open, path, "rb", block_size=1 << 22)
    raw = _RangeReader(fs, path, str(loc), int(info["size"]))
    return io.BufferedReader(raw, buffer_size=1 << 22)  # type: ignore[return-value]


class _RangeReader(io.RawIOBase):
    """An object read by ranged requests, each retried on its own (a reset mid-shard costs one
    block, not the shard)."""

    def __init__(self, fs: Any, path: str, url: str, size: int) -> None:
        self._fs, self._path, self.name, self._size, self._pos = fs, path, url, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        end = min(self._size, self._pos + len(buffer))
        if end <= self._pos:
            return 0
        data = retry.call(
            self.name, "read", self._fs.cat_file, self._path, start=self._pos, end=end
        )
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n


def get_file(loc: Location, local: str | Path) -> None:
    """Copy a file or object to the local path ``local`` (overwritten)."""
    if not is_url(loc):
        shutil.copyfile(loc, local)
        return
    # Through ranged reads, each retried on its own: a reset costs one block, not the file.
    with open_read(loc) as src, open(local, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 22)


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
    limit = upload_limit_s(Path(local).stat().st_size)
    retry.call(str(loc), "upload", _bounded, fs, limit, "put_file", str(local), path)


def write_bytes(url: str, data: bytes) -> None:
    """Upload ``data`` as the object at ``url`` (a store URL), retried as :func:`put_file`."""
    check_writable(url)
    fs, path = url_fs(url)
    retry.call(url, "upload", _bounded, fs, upload_limit_s(len(data)), "pipe_file", path, data)


def upload_limit_s(nbytes: int) -> float:
    """How long an upload of ``nbytes`` may take before it counts as stalled:
    ``T2V2T_STORAGE_TIMEOUT`` plus 1 s per MB (a floor of 1 MB/s)."""
    return retry.timeout_s() + nbytes / _MIN_UPLOAD_RATE


def _bounded(fs: Any, limit: float, method: str, *args: Any) -> Any:
    """``fs.<method>(*args)``, given up after ``limit`` seconds (a :class:`TimeoutError`, which
    is retried). aiohttp times a response only once the request's body is sent, so a store that
    never answers an upload's ``Expect: 100-continue`` (or stops reading its body) would
    otherwise hold it for ever; the cancelled request's connection is closed."""
    if not getattr(fs, "async_impl", False):
        return getattr(fs, method)(*args)
    import asyncio

    from fsspec.asyn import sync

    return sync(fs.loop, asyncio.wait_for, getattr(fs, f"_{method}")(*args), limit)
