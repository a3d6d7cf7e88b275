"""Global mixing at build time: each training shard holds rows from all over the annotation.

Rows are grouped into blocks of :func:`block_rows` consecutive rows; the blocks are laid end to
end in a permutation seeded by ``(seed, number of blocks)``, and shard ``i`` holds positions
``[i*n, (i+1)*n)`` of that mixed sequence (``n`` samples per shard). A shard is still a pure
function of the annotation, ``n`` and the seed: byte-identical for any worker count, resumable.
Small blocks keep a shard's rows spread (two rows of one shard share a block with probability
about ``block_rows / n``), whole blocks keep a worker's reads few: ``n / block_rows`` byte ranges
of whole rows per shard (docs/data.md, "Mixing").

The same rule mixes a list in memory, a CSV planned as blocks of whole rows, and input tars
planned as blocks of whole samples (a block never crosses a tar, so a tar's last block may be
short). The driver holds about 38 bytes per block (file, byte range, first row, size; its place
in the permutation and its end position) and no row: WebVid-10M's 10.7M rows make 2.1M blocks of
5 rows at the default 1,323 samples per shard (docs/data.md, "Mixing", for the measured cost).
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


def _index_type(count: int) -> type:
    return np.int32 if count < 2**31 else np.int64  # half the driver's memory below 2**31


def block_order(num_blocks: int, seed: int) -> np.ndarray:
    """The mixed sequence's blocks: a permutation of ``0..num_blocks-1`` from the seed."""
    perm = rng_for(seed, "mixing", num_blocks).permutation(num_blocks)
    return perm.astype(_index_type(num_blocks))


def shard_runs(
    order: np.ndarray, sizes: np.ndarray, n: int
) -> Iterator[list[tuple[int, int, int]]]:
    """Per shard, its rows as ``(block, first, end)`` runs (rows ``[first, end)`` of a block);
    ``sizes``: rows per block, ``order``: :func:`block_order`."""
    total = int(sizes.sum(dtype=np.int64))
    ends = np.cumsum(sizes[order], dtype=_index_type(total + 1))
    j = 0
    for lo in range(0, total, n):
        hi, runs = min(lo + n, total), []
        while lo < hi:
            while int(ends[j]) <= lo:
                j += 1
            b = int(order[j])
            start = int(ends[j]) - int(sizes[b])
            end = min(hi, int(ends[j])) - start
            runs.append((b, lo - start, end))
            lo = start + end
        yield runs


def mixed_rows(num_rows: int, samples_per_shard: int, seed: int) -> np.ndarray:
    """The annotation row (0-based, header excluded) at each position of the mixed sequence of
    ``num_rows`` rows in blocks of :func:`block_rows` (the last may hold fewer): the order a
    CSV and a list are mixed in, computed whole (lists, tests, simulations)."""
    m = block_rows(samples_per_shard)
    sizes = np.full(-(-num_rows // m), m, dtype=np.int64)
    if len(sizes):
        sizes[-1] = num_rows - m * (len(sizes) - 1)
    order = block_order(len(sizes), seed).astype(np.int64)
    counts = sizes[order]
    first = np.repeat(order * m, counts)
    begin = np.repeat(np.cumsum(counts) - counts, counts)
    return first + (np.arange(num_rows, dtype=np.int64) - begin)


def mix_list(items: Sequence[T], samples_per_shard: int, seed: int) -> list[T]:
    """``items`` in mixed order (a list source: its rows are in memory already)."""
    return [items[int(r)] for r in mixed_rows(len(items), samples_per_shard, seed)]


# A block of whole rows as its planner gives it: (file, start byte, stop byte, first row or line,
# rows); a CSV's blocks follow each other, input tars' never cross a tar.
Block = tuple[str, int, int, int, int]


@dataclass(frozen=True)
class MixedSlice:
    """One shard's rows: ``runs`` of ``(block, first, end)`` in shard order, rows ``[first, end)``
    of each :data:`Block` (read by the source's own slice reader)."""

    runs: tuple[tuple[Block, int, int], ...]
    rows: int


class _Blocks:
    """The driver's table of blocks: numbers only (file index, bytes, first row, size)."""

    def __init__(self, blocks: Iterable[Block]) -> None:
        self.files: list[str] = []
        index: dict[str, int] = {}
        self.file, self.first = array("i"), array("q")
        self.start, self.stop, self.size = array("q"), array("q"), array("H")
        for path, start, stop, first, rows in blocks:
            self.file.append(index.setdefault(path, len(index)))
            if len(index) > len(self.files):
                self.files.append(path)
            self.start.append(start)
            self.stop.append(stop)
            self.first.append(first)
            self.size.append(rows)

    def block(self, b: int) -> Block:
        path = self.files[self.file[b]]
        return (path, self.start[b], self.stop[b], self.first[b], self.size[b])


def plan_mixed(blocks: Iterable[Block], samples_per_shard: int, seed: int) -> Iterator[MixedSlice]:
    """The shards' slices of a source cut into ``blocks`` of at most :func:`block_rows` rows.

    Needs every block before the first shard (the permutation spans the source): the driver
    holds about 38 bytes per block and no row.
    """
    table = _Blocks(blocks)
    sizes = np.frombuffer(table.size, dtype=np.uint16) if len(table.size) else np.zeros(0, int)
    order = block_order(len(sizes), seed)
    for runs in shard_runs(order, sizes, samples_per_shard):
        parts = tuple((table.block(b), a, e) for b, a, e in runs)
        yield MixedSlice(parts, sum(e - a for _, a, e in parts))


def mixed_records(read: Callable[[Block], list[T]], part: MixedSlice) -> list[T]:
    """A mixed slice's records in shard order; ``read``: one block's records (its adapter)."""
    out: list[T] = []
    for block, a, e in part.runs:
        out.extend(read(block)[a:e])
    return out
