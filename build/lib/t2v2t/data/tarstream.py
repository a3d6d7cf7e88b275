"""A lean tar reader for the loader's hot path: ustar headers parsed straight off the zstd stream.

``tarfile`` in stream mode spends tens of microseconds of Python per member; a training sample
has one member per stored frame, so that shows up next to JPEG decoding. This reader handles what
tar writers produce for WebDataset shards (ustar/GNU regular files, GNU long names, pax ``path``
records), verifies every header checksum, and fails with :class:`ValueError` on anything else.
It yields the same WebDataset-style dicts as :func:`t2v2t.data.shards.iter_samples`, grouped by
the one :func:`group_members`.

It reads bytes and knows no files: a shard is opened by :func:`t2v2t.data.shards.open_shard`.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import zstandard

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


def _skip(stream: io.BufferedIOBase, count: int, scratch: memoryview) -> int:
    """Consume ``count`` bytes without materialising them; returns how many were there."""
    done = 0
    while done < count:
        got = stream.readinto(scratch[: min(count - done, len(scratch))])
        if not got:
            break
        done += got
    return done


def iter_tar(
    stream: io.BufferedIOBase, want: Callable[[str], bool] | None = None
) -> Iterator[tuple[str, bytes | None]]:
    """``(member name, bytes)`` of the regular files in a tar stream, in order.

    Members for which ``want(name)`` is false come as ``(name, None)``: their bytes are still
    decompressed (a stream cannot seek) but never copied into Python objects.
    """
    read = stream.read
    scratch = memoryview(bytearray(1 << 16))
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
        padded = size + (-size % BLOCK)
        if kind in (b"L", b"x"):  # a long name for the next member
            data = read(padded)
            if len(data) < padded:
                raise EOFError("tar stream ends inside a long-name record (truncated)")
            data = data[:size]
            long_name = (
                data.rstrip(b"\0").decode("utf-8") if kind == b"L" else _pax_path(data) or long_name
            )
            continue
        if kind not in _REGULAR:  # directories, links, global pax headers: nothing to load
            long_name = None
            if _skip(stream, padded, scratch) < padded:
                raise EOFError("tar stream ends inside a member (truncated)")
            continue
        if long_name is not None:
            name, long_name = long_name, None
        else:
            name = header[:100].split(b"\0", 1)[0].decode("utf-8")
            if header[257:262] == b"ustar":
                prefix = header[345:500].split(b"\0", 1)[0]
                if prefix:
                    name = f"{prefix.decode('utf-8')}/{name}"
        if want is not None and not want(name):
            if _skip(stream, padded, scratch) < padded:
                raise EOFError(f"tar stream ends inside member {name} (truncated)")
            yield name, None
            continue
        data = read(size)
        if len(data) < size:
            raise EOFError(f"tar stream ends inside {name} ({len(data)} of {size} bytes)")
        pad = padded - size
        if pad and len(read(pad)) < pad:
            raise EOFError(f"tar stream ends inside the padding of {name} (truncated)")
        yield name, data


def group_members(members: Iterable[tuple[str, bytes | None]]) -> Iterator[dict[str, Any]]:
    """Tar members in order -> WebDataset-style samples ``{"__key__", "json", "000.jpg", ...}``.

    A sample is the run of consecutive members whose names share the part before the first dot
    (docs/data.md, "Shards"). A member whose bytes are ``None`` (streamed past, see
    :func:`iter_tar`) marks its sample ``"__skipped__": True`` instead of adding bytes.
    """
    current: dict[str, Any] | None = None
    for name, data in members:
        key, _, ext = name.partition(".")
        if current is None or current["__key__"] != key:
            if current is not None:
                yield current
            current = {"__key__": key}
        if data is None:
            current["__skipped__"] = True
        else:
            current[ext] = data
    if current is not None:
        yield current


def iter_shard_samples(
    shard: IO[bytes] | io.RawIOBase, keep: Callable[[int], bool] | None = None
) -> Iterator[dict[str, Any]]:
    """The samples of one ``.tar.zst`` shard, read from ``shard`` (its compressed bytes).

    ``shard`` comes from :func:`t2v2t.data.shards.open_shard` (the caller closes it). Opened with
    the manifest's sha256, it hashes what passes: at the end of the tar the digest is verified,
    and a read error on a shard whose digest is wrong becomes the one-line digest
    :class:`~t2v2t.data.shards.ShardError` (the cause, not a symptom).

    ``keep(i)`` false for the shard's ``i``-th sample: it still comes out, as
    ``{"__key__": key, "__skipped__": True}``, without its bytes (a loader worker streams past
    the samples other workers decode; this halves what that costs).
    """
    verify = getattr(shard, "verify", None)  # a HashingReader: the digest is checked
    try:
        with zstandard.ZstdDecompressor().stream_reader(shard, closefd=False) as raw:
            yield from _group(raw, keep)
    except (EOFError, OSError, ValueError, zstandard.ZstdError):
        if verify is not None:
            verify()  # raises the digest's one line when the bytes are not the manifest's
        raise
    if verify is not None:
        verify()


def _group(raw: Any, keep: Callable[[int], bool] | None) -> Iterator[dict[str, Any]]:
    """Decompressed tar bytes -> samples; ``keep`` decides per sample whose bytes are copied."""
    state = {"key": None, "index": -1}

    def want(name: str) -> bool:
        key = name.partition(".")[0]
        if key != state["key"]:
            state["key"], state["index"] = key, state["index"] + 1
        return keep(state["index"])  # type: ignore[misc]

    with io.BufferedReader(raw, buffer_size=1 << 20) as stream:
        yield from group_members(iter_tar(stream, want if keep is not None else None))
