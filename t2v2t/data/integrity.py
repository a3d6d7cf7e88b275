"""Shard integrity: the shard error, the file hash, and the reader that hashes what it reads.

Below ``shards.py`` and ``cache.py``, which both check bytes against a manifest's sha256
(docs/reliability.md, "Shard integrity"); this module knows no shard layout.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any, BinaryIO

from t2v2t import storage
from t2v2t.errors import ExpectedError


class ShardError(ExpectedError, RuntimeError):
    """A shard folder or file that cannot be used as it is."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def corrupt_message(path: str | Path) -> str:
    """The one line for a shard whose bytes disagree with the manifest's sha256."""
    return f"{path}: sha256 differs from the manifest (corrupted or replaced); rebuild the shard"


class HashingReader(io.RawIOBase):
    """A shard file read front to back, every byte that passes going into a sha256.

    The loader decompresses through this, so hashing costs no extra read; :meth:`verify` hashes
    whatever the reader did not consume (a reader that stopped mid-shard) and compares the
    digest with the manifest's.
    """

    def __init__(self, path: str | Path, sha256: str, file: BinaryIO | None = None) -> None:
        super().__init__()
        self.path = storage.location(path)  # a URL is named as such in messages
        self.expected = sha256
        # ``file``: the bytes of ``path`` already open (a node-cache copy of a URL).
        self._file = file if file is not None else open(path, "rb")  # noqa: SIM115 - closed by close()
        self._hash = hashlib.sha256()
        self._verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._file.readinto(buffer)
        if n:
            self._hash.update(memoryview(buffer)[:n])
        return n or 0

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._hash.update(data)
        return data

    def matches(self) -> bool:
        """Hash the rest of the file; True when the whole file's digest is the manifest's."""
        for block in iter(lambda: self._file.read(1 << 20), b""):
            self._hash.update(block)
        return self._hash.hexdigest() == self.expected

    def verify(self, hint: str = "") -> None:
        """Raise :class:`ShardError` (one line) unless the file matches the manifest (once)."""
        if self._verified:
            return
        self._verified = True
        if not self.matches():
            raise ShardError(corrupt_message(self.path) + hint)

    def close(self) -> None:
        self._file.close()
        super().close()
