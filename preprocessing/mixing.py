"""Global mixing at build time: each training shard holds rows from all over the annotation.

Rows are grouped into blocks of :func:`block_rows` consecutive rows; the blocks are laid end to
end in a permutation seeded by ``(seed, number of blocks)``, and shard ``i`` holds positions
``[i*n, (i+1)*n)`` of that mixed sequence (``n`` samples per shard). A shard is still a pure
function of the annotation, ``n`` and the seed: byte-identical for any worker count, resumable.
Small blocks keep a shard's rows spread (two rows of one shard share a block with probability
about ``block_rows / n``), whole blocks keep a worker's reads few: ``n / block_rows`` byte ranges
of whole rows per shard (docs/data.md, "Mixing").

The driver holds three numbers per block (start byte, first line, place in the permutation), 24
bytes per ``block_rows`` rows and no row: about 52 MB at WebVid-10M's 10.7M rows in the 5-row
blocks of its default 1,323-sample shards.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from t2v2t.seeding import rng_for

MIXINGS = ("blocks", "none")  # the manifest's ``mixing`` values; "none": annotation order
BLOCKS_PER_SHARD = 256  # a full shard gathers this many blocks (fewer when it is small)

T = TypeVar("T")


def block_rows(samples_per_shard: int) -> int:
    """Rows per block: ``n // 256`` (1 for small shards: every row its own block)."""
    return max(1, samples_per_shard // BLOCKS_PER_SHARD)


def block_order(num_blocks: int, seed: int) -> np.ndarray:
    """The mixed sequence's blocks: a permutation of ``0..num_blocks-1`` from the seed."""
    return rng_for(seed, "mixing", num_blocks).permutation(num_blocks).astype(np.int64)


def shard_runs(
    order: np.ndarray, num_rows: int, m: int, n: int
) -> Iterator[list[tuple[int, int, int]]]:
    """Per shard, its rows as ``(block, first, end)`` runs (rows ``[first, end)`` of a block).

    Every block holds ``m`` rows but the last one (block ``len(order) - 1``), so where a mixed
    position falls is arithmetic: no table of block offsets beside ``order``.
    """
    if num_rows == 0:
        return
    nb = len(order)
    short = num_rows - m * (nb - 1)
    at = int(np.flatnonzero(order == nb - 1)[0])  # where the short block lies in the sequence

    def locate(p: int) -> tuple[int, int]:
        """(index into ``order``, first mixed position of that block) of position ``p``."""
        if p < at * m:
            return p // m, p // m * m
        if p < at * m + short:
            return at, at * m
        j = at + 1 + (p - at * m - short) // m
        return j, at * m + short + (j - at - 1) * m

    for lo in range(0, num_rows, n):
        hi, runs = min(lo + n, num_rows), []
        while lo < hi:
            j, begin = locate(lo)
            b = int(order[j])
            size = short if b == nb - 1 else m
            end = min(hi - begin, size)
            runs.append((b, lo - begin, end))
            lo = begin + end
        yield runs


def _sizes(num_rows: int, m: int) -> np.ndarray:
    sizes = np.full(-(-num_rows // m), m, dtype=np.int64)
    if len(sizes):
        sizes[-1] = num_rows - m * (len(sizes) - 1)
    return sizes


def mixed_rows(num_rows: int, samples_per_shard: int, seed: int) -> np.ndarray:
    """The annotation row (0-based, header excluded) at each position of the mixed sequence.

    The same rule :func:`plan_mixed` plans a CSV by, for rows in memory and for simulations.
    """
    m = block_rows(samples_per_shard)
    sizes = _sizes(num_rows, m)
    order = block_order(len(sizes), seed)
    counts = sizes[order]
    first = np.repeat(order * m, counts)
    begin = np.repeat(np.cumsum(counts) - counts, counts)
    return first + (np.arange(num_rows, dtype=np.int64) - begin)


def mix_list(items: Sequence[T], samples_per_shard: int, seed: int) -> list[T]:
    """``items`` in mixed order (a list source: its rows are in memory already)."""
    return [items[int(r)] for r in mixed_rows(len(items), samples_per_shard, seed)]


@dataclass(frozen=True)
class MixedSlice:
    """One shard's rows of ``path``: ``runs`` of ``(start, stop, first line, first, end)``, in
    shard order; rows ``[first, end)`` of the block of whole rows at bytes ``[start, stop)``."""

    path: str
    runs: tuple[tuple[int, int, int, int, int], ...]
    rows: int


def plan_mixed(
    path: str, blocks: Iterable[tuple[int, int, int, int]], samples_per_shard: int, seed: int
) -> Iterator[MixedSlice]:
    """The shards' slices of a CSV cut into ``blocks`` of ``(start, stop, first line, rows)``,
    consecutive, each of :func:`block_rows` rows but the last. Needs the whole block list before
    the first shard: the permutation spans the file."""
    m = block_rows(samples_per_shard)
    starts, lines = array("q"), array("q")  # 8 bytes each a block, no Python object per block
    final, rows, last = 0, 0, m
    for start, stop, line, last in blocks:
        starts.append(start)
        lines.append(line)
        rows, final = rows + last, stop
    starts.append(final)
    if rows and (rows != m * (len(lines) - 1) + last or last > m):
        raise ValueError(f"{path}: blocks of {m} rows expected (the last may hold fewer)")
    order = block_order(len(lines), seed)
    for runs in shard_runs(order, rows, m, samples_per_shard):
        parts = tuple((starts[b], starts[b + 1], lines[b], a, e) for b, a, e in runs)
        yield MixedSlice(path, parts, sum(e - a for _, _, _, a, e in parts))


def mixed_records(read: Callable[[tuple[int, int, int]], list[T]], part: MixedSlice) -> list[T]:
    """A mixed slice's records in shard order; ``read``: a byte range's records (its adapter)."""
    out: list[T] = []
    for start, stop, line, a, e in part.runs:
        out.extend(read((start, stop, line))[a:e])
    return out
