"""The node cache: shards read from object storage are kept on local disk, checked by sha256.

Every loader worker, evaluation pass and tool on one machine that reads a shard URL
(``s3://bucket/prefix/webvid/train_4f/...``) goes through :meth:`NodeCache.open`, so a shard
crosses the network at most once per node while it stays cached, however many processes read it
(docs/storage.md, "The node cache"). Local shard folders never go through the cache.

How it stays correct with many processes (all locks are ``fcntl.flock`` on files under
``<root>/.locks``, so they also hold between unrelated processes):

- **One download per shard.** An entry is named by the manifest's sha256. Filling it happens
  under that entry's *fill* lock: the first process downloads to a temporary name, hashes it,
  and renames it into place; the others wait on the lock and then find it there.
- **Checked.** A download whose sha256 is not the manifest's is fetched again once; a cached
  file that changed since it was checked (its size or modification time: a checked file is
  sealed read-only with mtime 0) is hashed again and, when it differs, replaced the same way.
  A second bad copy is a :class:`~t2v2t.data.shards.ShardError` naming the URL.
- **One retry budget per node.** A download that keeps failing (:mod:`t2v2t.retry`) leaves its
  error in ``<root>/.locks/<sha256>.failed``; processes that were waiting for the fill lock
  meanwhile stop with that error at once instead of each trying the store again.
- **Bounded.** Before a download, least-recently-opened entries are removed until the cache
  plus the incoming shard fit ``max_bytes``. A file some process has open holds a shared *use*
  lock and is never removed; so the bound can be exceeded by the shards being read right now
  (and by one shard larger than the bound). Lock files (empty) stay.

Settings: ``T2V2T_CACHE`` (folder; default ``$XDG_CACHE_HOME/t2v2t/shards``, else
``~/.cache/t2v2t/shards``) and ``T2V2T_CACHE_GB`` (bound in GB of 10^9 bytes; default 50).
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from t2v2t import storage
from t2v2t.data.integrity import ShardError, corrupt_message, sha256_file
from t2v2t.errors import UsageError
from t2v2t.retry import StorageError

__all__ = ["CACHE_ENV", "CACHE_GB_ENV", "CachedFile", "NodeCache", "node_cache", "user_cache_dir"]

log = logging.getLogger(__name__)

CACHE_ENV = "T2V2T_CACHE"
CACHE_GB_ENV = "T2V2T_CACHE_GB"
DEFAULT_GB = 50.0
_SEAL_NS = 0  # the mtime of a checked entry (see the module docstring)
_ENTRY = re.compile(r"^[0-9a-f]{64}-")  # <sha256>-<shard name>


def user_cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/t2v2t/<name>`` (else ``~/.cache/t2v2t/<name>``): the user's own cache,
    so nothing is written beside data that may sit on a read-only or shared mount."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "t2v2t" / name


def _default_root() -> Path:
    return user_cache_dir("shards")


def _lock_fd(path: Path, mode: int) -> int | None:
    """An fd of ``path`` holding ``flock(mode)``; None when ``mode`` has LOCK_NB and it is taken."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextmanager
def _locked(path: Path, mode: int = fcntl.LOCK_EX) -> Iterator[bool]:
    """Hold ``flock(mode)`` on ``path`` for the block; yields False when LOCK_NB found it taken."""
    fd = _lock_fd(path, mode)
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)


class CachedFile(io.FileIO):
    """A cache entry open for reading. It holds the entry's shared use lock until closed, so
    eviction leaves it in place; ``url`` is where its bytes came from (for messages)."""

    def __init__(self, path: Path, url: str, use_fd: int) -> None:
        super().__init__(path, "rb")
        self.url = url
        self._use_fd: int | None = use_fd

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._use_fd is not None:
                os.close(self._use_fd)
                self._use_fd = None


@dataclass(frozen=True)
class NodeCache:
    """A size-bounded folder of checked shard copies shared by every process on this machine."""

    root: Path
    max_bytes: int

    @classmethod
    def from_env(cls) -> NodeCache:
        """The cache ``T2V2T_CACHE`` / ``T2V2T_CACHE_GB`` describe (module docstring)."""
        raw_root = os.environ.get(CACHE_ENV) or str(_default_root())
        if storage.is_url(raw_root):
            raise UsageError(f"{CACHE_ENV}={raw_root}: the node cache must be a local folder")
        raw_gb = os.environ.get(CACHE_GB_ENV) or str(DEFAULT_GB)
        try:
            gb = float(raw_gb)
        except ValueError:
            gb = -1.0
        if not gb > 0:
            raise UsageError(f"{CACHE_GB_ENV}={raw_gb}: give the cache's bound in GB, e.g. 50")
        return cls(Path(raw_root).expanduser(), int(gb * 1e9))

    # ------------------------------------------------------------------ layout

    def entry(self, url: str, sha256: str) -> Path:
        """Where the copy of ``url`` with digest ``sha256`` lives (named by digest, then name)."""
        return self.root / f"{sha256}-{url.rstrip('/').rsplit('/', 1)[-1]}"

    def _lock_path(self, sha256: str, kind: str) -> Path:
        return self.root / ".locks" / f"{sha256}.{kind}"

    def _prepare(self) -> None:
        for sub in (self.root / ".locks", self.root / ".tmp"):
            sub.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ reading

    def open(self, url: str, sha256: str, size: int | None = None) -> CachedFile:
        """A checked local copy of ``url`` (the manifest says: digest ``sha256``, ``size``
        bytes), downloaded first unless this node has it. The caller closes it."""
        self._prepare()
        entry = self.entry(url, sha256)
        asked = time.time()
        with _locked(self._lock_path(sha256, "fill")):
            self._fill_or_fail(url, entry, sha256, size, asked)
            use_path = self._lock_path(sha256, "use")
            use_fd = _lock_fd(use_path, fcntl.LOCK_SH)
            assert use_fd is not None  # a blocking lock always returns an fd
            try:
                os.utime(use_path)  # last use, for eviction
                return CachedFile(entry, url, use_fd)
            except BaseException:
                os.close(use_fd)
                raise

    def _fill_or_fail(
        self, url: str, entry: Path, sha256: str, size: int | None, asked: float
    ) -> None:
        """:meth:`_fill`, except after a download that kept failing while this process waited
        for the lock: its error again, at once, so a node spends one retry budget on an object,
        not one per waiting process (docs/reliability.md, "Flaky storage")."""
        failed = self._lock_path(sha256, "failed")
        if failed.exists() and failed.stat().st_mtime >= asked and not entry.exists():
            raise StorageError(failed.read_text())
        try:
            self._fill(url, entry, sha256, size)
        except StorageError as err:
            failed.write_text(str(err))
            raise
        failed.unlink(missing_ok=True)

    def _fill(self, url: str, entry: Path, sha256: str, size: int | None) -> None:
        """Make ``entry`` a checked copy (the fill lock is held). Two bad copies: ShardError."""
        copies = 0
        if entry.exists():
            if self._sealed(entry, size):
                return
            copies = 1
            if sha256_file(entry) == sha256:
                self._seal(entry)
                return
            log.warning("%s: cached copy %s differs from the manifest: fetching again", url, entry)
            entry.unlink()
        while copies < 2:
            copies += 1
            if self._download(url, entry, sha256, size):
                return
        raise ShardError(corrupt_message(url) + " (checked on two downloads)")

    def _sealed(self, entry: Path, size: int | None) -> bool:
        st = entry.stat()
        return st.st_mtime_ns == _SEAL_NS and (size is None or st.st_size == size)

    def _seal(self, path: Path) -> None:
        path.chmod(0o444)
        os.utime(path, ns=(_SEAL_NS, _SEAL_NS))

    def _download(self, url: str, entry: Path, sha256: str, size: int | None) -> bool:
        """Fetch ``url`` into ``entry``; False (nothing kept) when its sha256 is not ``sha256``."""
        self.evict(incoming=size or 0)
        # One name per entry: only the fill lock's holder writes it, and a killed download's
        # leftover is overwritten by the next one instead of piling up.
        tmp = self.root / ".tmp" / f"{entry.name}.part"
        try:
            storage.get_file(url, tmp)
            got = tmp.stat().st_size
            if sha256_file(tmp) != sha256:
                log.info("%s: the downloaded copy differs from the manifest", url)
                return False
            self._seal(tmp)
            os.replace(tmp, entry)
        finally:
            tmp.unlink(missing_ok=True)
        log.info("%s: fetched into the node cache (%d bytes)", url, got)
        return True

    # ------------------------------------------------------------------ eviction

    def _entries(self) -> list[tuple[float, Path, int]]:
        """(last use, path, bytes) of every cached copy, least recently used first."""
        out = []
        for e in os.scandir(self.root):
            if not _ENTRY.match(e.name) or not e.is_file():
                continue  # only our own copies: other files in the folder are never removed
            use = self._lock_path(e.name[:64], "use")
            last = use.stat().st_mtime if use.exists() else 0.0
            out.append((last, Path(e.path), e.stat().st_size))
        return sorted(out, key=lambda t: (t[0], t[1].name))

    def evict(self, incoming: int = 0) -> int:
        """Remove least-recently-used copies no process has open until the cache plus
        ``incoming`` bytes fit ``max_bytes``; returns the bytes removed. One process evicts at a
        time (another one already evicting: nothing to do here)."""
        self._prepare()
        freed = 0
        with _locked(self.root / ".locks" / "evict", fcntl.LOCK_EX | fcntl.LOCK_NB) as mine:
            if not mine:
                return 0
            entries = self._entries()
            total = sum(n for _, _, n in entries)
            for _, path, n in entries:
                if total + incoming <= self.max_bytes:
                    break
                if self._remove_unused(path):
                    total -= n
                    freed += n
        return freed

    def _remove_unused(self, path: Path) -> bool:
        """Delete ``path`` unless it is being filled or is open somewhere (non-blocking)."""
        sha = path.name[:64]
        nb = fcntl.LOCK_EX | fcntl.LOCK_NB
        with _locked(self._lock_path(sha, "fill"), nb) as filling_free:
            if not filling_free:
                return False
            with _locked(self._lock_path(sha, "use"), nb) as unused:
                if not unused:
                    return False
                path.unlink(missing_ok=True)
                log.info("%s: evicted from the node cache", path)
                return True


_CACHES: dict[tuple[str, str], NodeCache] = {}


def node_cache() -> NodeCache:
    """The process's :class:`NodeCache`, as the environment describes it now."""
    key = (os.environ.get(CACHE_ENV, ""), os.environ.get(CACHE_GB_ENV, ""))
    if key not in _CACHES:
        _CACHES[key] = NodeCache.from_env()
    return _CACHES[key]
