"""A lean tar reader for the loader's hot path: ustar headers parsed straight off the zstd stream.

``tarfile`` in stream mode spends tens of microseconds of Python per member; a training sample
has one member per stored frame, so that shows up next to JPEG decoding. This reader handles what
tar writers produce for WebDataset shards (ustar/GNU regular files, GNU long names, pax ``path``
records), verifies every header checksum, and fails with :class:`ValueError` on anything else.
It yields the same WebDataset-style dicts as :func:`t2v2t.shards.iter_samples`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from t2v2t.shards import open_zstd

BLOCK = 512
_REGULAR = (b"0", b"\0", b"7")


def _number(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256 for sizes >= 8 GiB
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _checksum_ok(header: bytes) -> bool:
    stored = _number(header[148:156])
    # The checksum counts its own field as eight spaces (0x20 * 8 = 256).
    return stored == sum(header[:148]) + 256 + sum(header[156:])


def _pax_path(data: bytes) -> str | None:
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        keyword, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        if keyword == b"path":
            return value.decode("utf-8")
        pos += length
    return None


def iter_tar(stream: io.BufferedIOBase) -> Iterator[tuple[str, bytes]]:
    """``(member name, bytes)`` of the regular files in a tar stream, in order."""
    read = stream.read
    long_name: str | None = None
    while True:
        header = read(BLOCK)
        if len(header) < BLOCK:
            if header:
                raise EOFError("tar stream ends inside a header (truncated)")
            return  # no end-of-archive marker: tolerated, as tarfile does
        if header.count(0) == BLOCK:
            return  # end-of-archive marker
        if not _checksum_ok(header):
            raise ValueError("bad tar header checksum (corrupted data)")
        size = _number(header[124:136])
        kind = header[156:157]
        data = read(size)
        if len(data) < size:
            raise EOFError(f"tar stream ends inside a member ({len(data)} of {size} bytes)")
        pad = -size % BLOCK
        if pad and len(read(pad)) < pad:
            raise EOFError("tar stream ends inside member padding (truncated)")
        if kind == b"L":
            long_name = data.rstrip(b"\0").decode("utf-8")
            continue
        if kind == b"x":
            long_name = _pax_path(data) or long_name
            continue
        if kind not in _REGULAR:
            long_name = None
            continue  # directories, links, global pax headers: nothing to load
        if long_name is not None:
            name, long_name = long_name, None
        else:
            name = header[:100].split(b"\0", 1)[0].decode("utf-8")
            if header[257:262] == b"ustar":
                prefix = header[345:500].split(b"\0", 1)[0]
                if prefix:
                    name = f"{prefix.decode('utf-8')}/{name}"
        yield name, data


def iter_shard_samples(path: str | Path) -> Iterator[dict[str, Any]]:
    """Group a ``.tar.zst`` shard's members into ``{"__key__", "json", "000.jpg", ...}`` dicts."""
    with open_zstd(path) as raw, io.BufferedReader(raw, buffer_size=1 << 20) as stream:
        current: dict[str, Any] | None = None
        for name, data in iter_tar(stream):
            key, _, ext = name.partition(".")
            if current is None or current["__key__"] != key:
                if current is not None:
                    yield current
                current = {"__key__": key}
            current[ext] = data
        if current is not None:
            yield current
