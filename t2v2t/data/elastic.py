"""Elastic resume: the rest of an epoch, planned for a different number of ranks (no I/O).

An epoch checkpointed after ``k`` steps on ``N`` ranks resumes on ``M`` ranks (docs/reliability.md,
"Elastic resume"). What the ``N`` ranks consumed is a pure function of their plans and ``k``:
rank ``r`` consumed the first ``c * b_N`` items of its order, ``c`` being the batches of that
source among the epoch's first ``k`` steps. So the resumed epoch recomputes the ``N``-rank plans,
drops what they consumed and lays the rest over ``M`` ranks:

- items are numbered by their place ``g`` in the epoch's global order (the shard-shuffled runs of
  :func:`t2v2t.data.plan.train_plan`, per-caption passes included);
- a *layout* is every rank's real items in yield order, as *pieces*: ``g`` arrays each cut from
  one fresh rank's range in that rank's buffer order, so a piece streams its shards forward with
  the shuffle buffer's memory bound;
- the remainder is the unconsumed tail of every rank, rank by rank; ``M`` contiguous slices of it
  (differing by at most one item) become the new ranks' orders, padded by repeating a rank's last
  item (at most ``M - 1`` repeats), as a fresh epoch is;
- the global batch ``B`` is kept (``b_M = B / M``), so every source has ``ceil(R / B)`` batches
  left on any rank count and the epoch's source order (VindLU's interleave) stays the fresh one.

With ``drop_last`` the epoch is what its first ranks' (``N``) drop_last plans visit: each rank's
first ``S * b_N`` entries (``S = floor(ceil(T / N) / b_N)`` batches, its padding included where
visited); their dropped tails stay dropped this epoch. The layout is cut to that before anything
else, so every step takes one full global batch and ``(S - k) * B`` entries are left after ``k``
steps: ``M`` ranks get ``(S - k) * b_M`` each, no padding, and the epoch keeps its ``S`` steps.

Frames, crops and captions depend on ``(seed, epoch, key)`` (and the caption pass) only, never on
the rank, so a sample reads the same whoever reads it. Chained resumes (``N -> M -> K`` within
one epoch) apply the same step again: ``earlier`` lists every earlier part of the epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from t2v2t.data.plan import (
    RankPlan,
    _items,
    _segments,
    buffer_shuffle,
    interleave,
    pad_order,
    rank_range,
)
from t2v2t.seeding import rng_for

__all__ = ["EpochItems", "consumed_steps", "fresh_layout", "resumed_plans", "split_layout"]

Layout = list[list[np.ndarray]]  # per rank: pieces of global item numbers, in yield order


@dataclass(frozen=True)
class EpochItems:
    """One source's epoch: its runs ``(pass, shard, items)`` in global order and where each starts."""

    counts: list[int]
    captions: list[np.ndarray | None] | None
    runs: list[tuple[int, int, int]]
    starts: np.ndarray
    tag: str
    global_batch: int

    @classmethod
    def plan(
        cls,
        counts: list[int],
        captions: list[np.ndarray | None] | None,
        *,
        seed: int,
        epoch: int,
        tag: str,
        global_batch: int,
    ) -> EpochItems:
        runs = _segments(counts, captions, seed, epoch, tag)
        starts = np.concatenate([[0], np.cumsum([n for _, _, n in runs])]).astype(np.int64)
        return cls(counts, captions, runs, starts, tag, global_batch)

    @property
    def total(self) -> int:
        return int(self.starts[-1])

    @property
    def num_batches(self) -> int:
        return math.ceil(self.total / self.global_batch)

    def kept_batches(self, world: int) -> int:
        """Steps of a drop_last epoch on ``world`` ranks: ``floor(ceil(T / world) / b)``."""
        return math.ceil(self.total / world) // (self.global_batch // world)


def fresh_layout(items: EpochItems, *, seed: int, epoch: int, world: int, buffer: int) -> Layout:
    """The layout :func:`t2v2t.data.plan.train_plan` gives ``world`` ranks (same ranges, same
    seeded buffer replay), in global item numbers."""
    if items.total < world:
        raise ValueError(f"{world} ranks but only {items.total} samples: some rank gets none")
    out = []
    for r in range(world):
        lo, hi = rank_range(items.total, r, world)
        rng = rng_for(seed, epoch, "samples", items.tag, r)
        out.append([lo + buffer_shuffle(hi - lo, buffer, rng)])
    return out


def kept_layout(layout: Layout, length: int, kept: int) -> Layout:
    """Every rank's first ``kept`` entries of its order padded to ``length`` (as
    :func:`t2v2t.data.plan.pad_order` pads: the rank's last items repeated): a drop_last epoch's
    visited part."""
    out = []
    for pieces in layout:
        real = np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)
        pad = pad_order(real, length)[len(real) :]
        out.append(_head([*pieces, pad] if len(pad) else pieces, kept))
    return out


def _head(pieces: list[np.ndarray], n: int) -> list[np.ndarray]:
    """The first ``n`` entries of ``pieces``, as pieces."""
    out = []
    for piece in pieces:
        if n <= 0:
            break
        out.append(piece[:n])
        n -= len(piece)
    return out


def remainder(layout: Layout, batches: int, batch_size: int) -> list[np.ndarray]:
    """The pieces left after every rank took ``batches`` batches of ``batch_size``, rank by rank."""
    out = []
    for pieces in layout:
        skip = batches * batch_size
        for piece in pieces:
            if len(piece) > skip:
                out.append(piece[skip:])
            skip = max(0, skip - len(piece))
    return out


def split_layout(pieces: list[np.ndarray], world: int) -> Layout:
    """``world`` contiguous slices of the concatenated ``pieces`` (lengths differ by <= 1)."""
    ends = np.cumsum([len(p) for p in pieces]).astype(np.int64)
    total = int(ends[-1]) if len(ends) else 0
    out: Layout = []
    for m in range(world):
        lo, hi = rank_range(total, m, world)
        mine = []
        for piece, end in zip(pieces, ends.tolist(), strict=True):
            start = end - len(piece)
            a, b = max(lo, start), min(hi, end)
            if a < b:
                mine.append(piece[a - start : b - start])
        out.append(mine)
    return out


def padded_length(layout: Layout) -> int:
    """Entries every rank yields: the longest rank's (the others repeat their last item)."""
    return max((sum(len(p) for p in pieces) for pieces in layout), default=0)


def batch_sizes(length: int, batch_size: int) -> list[int]:
    """One rank's batch sizes over ``length`` entries (the last may be short)."""
    return [min(batch_size, length - i) for i in range(0, length, batch_size)]


def consumed_steps(samples: int, sizes: list[int]) -> int:
    """How many of the steps with per-rank ``sizes`` make up ``samples``; a batch boundary."""
    ends = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    k = int(np.searchsorted(ends, samples))
    if samples < 0 or k >= len(ends) or int(ends[k]) != samples:
        raise ValueError(
            f"{samples} samples per rank is not a batch boundary of this part of the epoch "
            f"({int(ends[-1])} samples per rank in {len(sizes)} batches)"
        )
    return k


def layout_plan(
    items: EpochItems, pieces: list[np.ndarray], padded: int, batch: int, num_real: int
) -> RankPlan:
    """One rank's :class:`RankPlan` for its ``pieces`` (the first ``num_real`` items real, the
    rest padding): each piece streams the runs it spans, forward."""
    shards, counts, passes, parts = [], [], [], []
    offset = 0
    for piece in pieces:
        run = np.searchsorted(items.starts, piece, side="right") - 1
        first, last = int(run.min()), int(run.max())
        span = items.runs[first : last + 1]
        # Each spanned item's sample index in its shard, and each run's first stream position.
        inside = np.concatenate([_items(r, items.counts, items.captions) for r in span])
        run_start = offset + np.concatenate([[0], np.cumsum([items.counts[s] for _, s, _ in span])])
        parts.append(run_start[run - first] + inside[piece - items.starts[first]])
        shards += [s for _, s, _ in span]
        counts += [items.counts[s] for _, s, _ in span]
        passes += [j for j, _, _ in span]
        offset = int(run_start[-1])
    order = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    return RankPlan(
        shards=shards,
        counts=counts,
        order=pad_order(order, padded),
        num_real=num_real,
        batch_size=batch,
        passes=passes if items.captions else [],
    )


def resumed_plans(
    sources: Sequence[EpochItems],
    *,
    seed: int,
    epoch: int,
    buffer: int,
    earlier: Sequence[tuple[int, int]],
    world: int,
    rank: int,
    drop_last: bool = False,
) -> tuple[list[RankPlan], list[tuple[int, int]], int]:
    """This rank's plan per source for the rest of an epoch whose ``earlier`` parts ran as
    ``(world size, samples each rank consumed)``; the remaining steps ``(source, batch)``; the
    epoch's steps already taken. Batch sizes are ``global_batch / world size`` per part;
    ``drop_last``: the epoch is its first part's drop_last plans (the module docstring)."""
    for w in [w for w, _ in earlier] + [world]:
        for src in sources:
            if src.global_batch % w:
                raise ValueError(
                    f"{src.tag}: global batch {src.global_batch} does not split over {w} ranks"
                )
    first = earlier[0][0] if earlier else world
    layouts = [
        fresh_layout(src, seed=seed, epoch=epoch, world=first, buffer=buffer) for src in sources
    ]
    batches = [src.num_batches for src in sources]
    if drop_last:  # only what the first part's plans visit; their dropped tails stay dropped
        batches = [src.kept_batches(first) for src in sources]
        layouts = [
            kept_layout(lay, padded_length(lay), n * (src.global_batch // first))
            for src, lay, n in zip(sources, layouts, batches, strict=True)
        ]
    tags = [s for s, _ in interleave(batches, seed, epoch)]
    done = 0
    for part, (w, samples) in enumerate(earlier):
        k = consumed_steps(samples, _step_sizes(sources, layouts, tags[done:], w))
        nxt = earlier[part + 1][0] if part + 1 < len(earlier) else world
        taken = [tags[done : done + k].count(i) for i in range(len(sources))]
        layouts = [
            split_layout(remainder(lay, c, src.global_batch // w), nxt)
            for src, lay, c in zip(sources, layouts, taken, strict=True)
        ]
        done += k
    plans = []
    for src, lay in zip(sources, layouts, strict=True):
        real = sum(len(p) for p in lay[rank])
        mine = lay[rank] or _fallback(lay)  # fewer items than ranks: repeat one
        plans.append(layout_plan(src, mine, padded_length(lay), src.global_batch // world, real))
    left = tags[done:]
    for i, plan in enumerate(plans):
        if plan.num_batches != left.count(i):
            raise ValueError(f"source {i}: {plan.num_batches} batches planned, {left.count(i)} due")
    seen = [0] * len(sources)
    steps = []
    for t in left:
        steps.append((t, seen[t]))
        seen[t] += 1
    return plans, steps, done


def _step_sizes(
    sources: Sequence[EpochItems], layouts: list[Layout], tags: list[int], world: int
) -> list[int]:
    """Per-rank batch sizes of the steps ``tags`` over ``layouts`` on ``world`` ranks."""
    per_source = [
        batch_sizes(padded_length(lay), src.global_batch // world)
        for src, lay in zip(sources, layouts, strict=True)
    ]
    seen = [0] * len(sources)
    out = []
    for t in tags:
        out.append(per_source[t][seen[t]])
        seen[t] += 1
    return out


def _fallback(layout: Layout) -> list[np.ndarray]:
    """An empty rank's one padding item: the last item of the last non-empty rank."""
    for pieces in reversed(layout):
        if pieces:
            return [pieces[-1][-1:]]
    return []
