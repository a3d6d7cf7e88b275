"""The epoch plan: which samples each rank sees, in which order, decided up front (no I/O).

The loader fixes a whole epoch before reading a byte, from the manifest's per-shard sample counts
and ``(seed, epoch)`` alone. Workers then only fetch and decode the batches the plan gives them, so
the number of loader workers cannot change what an epoch contains, and resuming after ``k``
batches is "drop the first ``k`` batches of the plan".

Stages: shard shuffle seeded by ``(seed, epoch)`` -> split by rank into contiguous sample ranges
of that shard order (ranges may cut through shards, so ranks stay balanced however few and big
the shards are) -> sample shuffle through a simulated seeded buffer (the WebDataset
``shuffle(n)`` stage, replayed on stream positions instead of samples) -> pad every rank to
``ceil(total / world_size)`` samples (at most ``world_size - 1`` repeats per epoch, as
``DistributedSampler``) -> (later, in :mod:`t2v2t.data.loader`) split by worker at batch granularity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from t2v2t.seeding import rng_for


@dataclass(frozen=True)
class RankPlan:
    """One rank's epoch for one source.

    ``shards``/``counts``: the shards this rank streams, in stream order, and their sample counts
    (indices into the caller's shard list). ``order``: stream positions (into the concatenation of
    those shards) in the order the rank yields them, padded to the same length on every rank
    (the last batch may be short). ``num_real``: how many entries of ``order`` come before padding.
    ``passes``: the caption pass of each streamed shard (a per-caption epoch streams a shard once
    per pass; a video's caption in pass ``j`` is the ``j``-th of its shuffled captions); empty:
    all pass 0. ``drop_last``: the short last batch is not yielded (VindLU's training
    loaders): its entries, the tail of ``order``, are not visited this epoch.
    """

    shards: list[int]
    counts: list[int]
    order: np.ndarray
    num_real: int
    batch_size: int
    passes: list[int] = field(default_factory=list)
    drop_last: bool = False

    @property
    def num_batches(self) -> int:
        if self.drop_last:
            return len(self.order) // self.batch_size
        return math.ceil(len(self.order) / self.batch_size)

    def batch(self, i: int) -> np.ndarray:
        return self.order[i * self.batch_size : (i + 1) * self.batch_size]

    def shard_starts(self) -> np.ndarray:
        """Stream position of each streamed shard's first sample."""
        return np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    def locate(self, position: int) -> tuple[int, int]:
        """(index into ``shards``, sample index inside that shard) of a stream position."""
        starts = self.shard_starts()
        i = int(np.searchsorted(starts, position, side="right") - 1)
        return i, int(position - starts[i])

    def pass_of(self, position: int) -> int:
        """The caption pass a stream position belongs to (0 outside a per-caption epoch)."""
        return self.passes[self.locate(position)[0]] if self.passes else 0


def buffer_shuffle(n: int, buffer: int, rng: np.random.Generator) -> np.ndarray:
    """The output order of a WebDataset-style shuffle buffer fed ``0..n-1``.

    Fill the buffer; once it holds ``buffer`` items, each new item replaces a random slot whose
    occupant is emitted; at the end the remainder comes out in random order. Memory while
    streaming stays at ``buffer`` samples, which is why a buffer and not a full permutation.
    """
    if buffer <= 1 or n <= 1:
        return np.arange(n, dtype=np.int64)
    out = np.empty(n, dtype=np.int64)
    slots: list[int] = []
    picks = rng.random(n)  # drawn up front: one generator call instead of n
    k = 0
    for i in range(n):
        if len(slots) < buffer:
            slots.append(i)
            continue
        j = int(picks[i] * buffer)
        out[k] = slots[j]
        slots[j] = i
        k += 1
    tail = np.asarray(slots, dtype=np.int64)
    out[k:] = tail[rng.permutation(len(tail))]
    return out


def pad_order(order: np.ndarray, total: int) -> np.ndarray:
    """Pad ``order`` to ``total`` entries by repeating its last entries (cyclically if needed).

    Repeating the tail (rather than the head) means the repeated samples were read moments
    earlier, so a streaming worker keeps them in memory only briefly.
    """
    n = len(order)
    pad = total - n
    if pad <= 0:
        return order[:total]
    if n == 0:
        raise ValueError("cannot pad an empty rank: it has no samples to repeat")
    extra = order[np.arange(n - pad, n) % n]
    return np.concatenate([order, extra])


def rank_range(total: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous slice ``[lo, hi)`` of an epoch's ``total`` samples.

    Slices differ in length by at most one, like ``DistributedSampler``'s; they may start and end
    inside a shard.
    """
    return total * rank // world_size, total * (rank + 1) // world_size


def _segments(
    counts: list[int], captions: list[np.ndarray | None] | None, seed: int, epoch: int, tag: str
) -> list[tuple[int, int, int]]:
    """The epoch's item sequence as ``(pass, shard, items)`` runs, in global order.

    ``captions[s]``: shard ``s``'s per-sample caption counts (None: one caption each); None for
    all: one pass over the samples (one caption per video). A per-caption epoch makes one pass
    per caption rank: pass ``j`` holds, in shard order shuffled by ``(seed, epoch, j)``, the
    samples with more than ``j`` captions, so every (video, caption) is one item.
    """
    live = [i for i, c in enumerate(counts) if c > 0]
    if not live:
        raise ValueError("no samples: every shard is empty or was skipped")
    per_shard = captions or [None] * len(counts)
    passes = max((int(c.max()) for c in per_shard if c is not None and len(c)), default=1)
    runs = []
    for j in range(passes):
        # Pass 0 keeps the shard order of a one-caption epoch (the same plan where every
        # video has one caption).
        rng = rng_for(seed, epoch, "shards", tag, *([j] if j else []))
        for s in (live[i] for i in rng.permutation(len(live))):
            c = per_shard[s]
            n = (counts[s] if j == 0 else 0) if c is None else int((c > j).sum())
            if n:
                runs.append((j, s, n))
    return runs


def _items(
    run: tuple[int, int, int], counts: list[int], captions: list[np.ndarray | None] | None
) -> np.ndarray:
    """The sample indices (inside the shard) of one run's items, in shard order."""
    j, s, _ = run
    c = captions[s] if captions else None
    return np.arange(counts[s], dtype=np.int64) if c is None else np.flatnonzero(c > j)


def train_plan(
    counts: list[int],
    *,
    seed: int,
    epoch: int,
    rank: int,
    world_size: int,
    batch_size: int,
    shuffle_buffer: int,
    tag: str,
    captions: list[np.ndarray | None] | None = None,
    drop_last: bool = False,
) -> RankPlan:
    """Rank ``rank``'s training plan for one source.

    The epoch's items (samples, or with ``captions`` every (video, caption): :func:`_segments`)
    are laid end to end in shard order shuffled by ``(seed, epoch)``; rank ``r`` takes the
    contiguous range :func:`rank_range` of that global order, cutting through a shard where the
    range does (the rank opens that shard and skips to its first item). Every rank yields
    ``ceil(total / world_size)`` items, so the ranks one short repeat their last item: at most
    ``world_size - 1`` repeats per epoch for any shard count, as ``DistributedSampler`` allows.
    The last batch may be short; with ``drop_last`` it is left out (``floor`` instead of
    ``ceil`` batches, the same count on every rank). Only this rank's order is shuffled; the
    others' ranges are known from the counts.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world_size {world_size}")
    runs = _segments(counts, captions, seed, epoch, tag)
    starts = np.concatenate([[0], np.cumsum([n for _, _, n in runs])]).astype(np.int64)
    total = int(starts[-1])
    if total < world_size:
        raise ValueError(f"{world_size} ranks but only {total} samples: some rank gets none")
    lo, hi = rank_range(total, rank, world_size)
    first = int(np.searchsorted(starts, lo, side="right") - 1)
    last = int(np.searchsorted(starts, hi - 1, side="right") - 1)
    mine = runs[first : last + 1]
    parts, offset = [], 0
    for k, run in enumerate(mine, start=first):
        a, b = max(lo, starts[k]) - starts[k], min(hi, starts[k + 1]) - starts[k]
        parts.append(offset + _items(run, counts, captions)[a:b])
        offset += counts[run[1]]
    positions = np.concatenate(parts)
    rng = rng_for(seed, epoch, "samples", tag, rank)
    order = positions[buffer_shuffle(len(positions), shuffle_buffer, rng)]
    return RankPlan(
        shards=[s for _, s, _ in mine],
        counts=[counts[s] for _, s, _ in mine],
        order=pad_order(order, -(-total // world_size)),
        num_real=len(order),
        batch_size=batch_size,
        passes=[j for j, _, _ in mine] if captions else [],
        drop_last=drop_last,
    )


def train_plans(counts: list[int], *, world_size: int, **kw) -> list[RankPlan]:
    """Every rank's plan (for tests and tools): ``[train_plan(counts, rank=r, ...) ...]``."""
    return [train_plan(counts, rank=r, world_size=world_size, **kw) for r in range(world_size)]


def eval_plan(counts: list[int], *, rank: int, world_size: int, batch_size: int) -> RankPlan:
    """Rank ``rank``'s contiguous slice of the manifest order, no shuffling, no padding.

    The last batch may be short (``order`` is not a multiple of ``batch_size``); ranks may differ
    by one sample. Stream positions equal manifest positions (all shards, manifest order).
    """
    total = sum(counts)
    lo, hi = total * rank // world_size, total * (rank + 1) // world_size
    return RankPlan(
        shards=list(range(len(counts))),
        counts=list(counts),
        order=np.arange(lo, hi, dtype=np.int64),
        num_real=hi - lo,
        batch_size=batch_size,
    )


def interleave(num_batches: list[int], seed: int, epoch: int) -> list[tuple[int, int]]:
    """VindLU's MetaLoader order: every source's batches, mixed by a permutation of (seed, epoch).

    Returns ``(source index, batch index within that source)`` per global step; each source's
    batches stay in their own order. The same on every rank (all ranks have equal batch counts).
    """
    tags = np.repeat(np.arange(len(num_batches)), num_batches)
    if len(num_batches) > 1:
        tags = tags[rng_for(seed, epoch, "interleave").permutation(len(tags))]
    seen = [0] * len(num_batches)
    steps = []
    for t in tags.tolist():
        steps.append((t, seen[t]))
        seen[t] += 1
    return steps
