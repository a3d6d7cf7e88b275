"""Elastic resume at plan level (pure functions, no I/O): an epoch stopped after ``k`` steps on
``N`` ranks and resumed on ``M`` visits every unconsumed item exactly once, plus at most
``M - 1`` padding repeats, and nothing consumed before (docs/reliability.md, "Elastic resume").

The consumed set is taken from :func:`t2v2t.data.plan.train_plan` itself (the plan the ``N`` ranks
really ran), never from the elastic module's own replay of it.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from t2v2t.data.elastic import EpochItems, resumed_plans
from t2v2t.data.plan import RankPlan, interleave, train_plan

SEED, EPOCH, BUFFER = 7, 3, 5
COUNTS = [9, 4, 13, 1, 7, 11]  # 45 samples in uneven shards (ranges cut through shards)


def _identity(plan: RankPlan, position: int) -> tuple[int, int, int]:
    """(caption pass, shard, sample in shard) of a stream position: what a reader sees."""
    i, index = plan.locate(int(position))
    return (plan.passes[i] if plan.passes else 0, plan.shards[i], index)


def _all_items(counts: list[int], captions: list[np.ndarray] | None) -> set:
    if captions is None:
        return {(0, s, i) for s, n in enumerate(counts) for i in range(n)}
    return {(j, s, i) for s, c in enumerate(captions) for i, n in enumerate(c) for j in range(n)}


def _source(counts, captions, tag, batch):  # noqa: ANN001, ANN202
    return dict(counts=counts, captions=captions, tag=tag, batch=batch)


def _plans(src: dict, world: int, drop_last: bool = False) -> list[RankPlan]:
    """Every rank's real fresh plan of one source."""
    return [
        train_plan(
            src["counts"],
            seed=SEED,
            epoch=EPOCH,
            rank=r,
            world_size=world,
            batch_size=src["batch"] // world,
            shuffle_buffer=BUFFER,
            tag=src["tag"],
            captions=src["captions"],
            drop_last=drop_last,
        )
        for r in range(world)
    ]


def _items(srcs: list[dict]) -> list[EpochItems]:
    return [
        EpochItems.plan(
            s["counts"],
            s["captions"],
            seed=SEED,
            epoch=EPOCH,
            tag=s["tag"],
            global_batch=s["batch"],
        )
        for s in srcs
    ]


def _taken(plans: list[RankPlan], batches: int) -> Counter:
    """What the ranks of ``plans`` read in their first ``batches`` batches (padding included)."""
    return Counter(_identity(p, x) for p in plans for b in range(batches) for x in p.batch(b))


def _resume(srcs: list[dict], earlier: list[tuple[int, int]], world: int, **kw) -> list:  # noqa: ANN003
    """(plans per rank, steps per rank, steps done per rank) of the resumed part."""
    out = [
        resumed_plans(
            _items(srcs),
            seed=SEED,
            epoch=EPOCH,
            buffer=BUFFER,
            earlier=earlier,
            world=world,
            rank=m,
            **kw,
        )
        for m in range(world)
    ]
    return [[o[0] for o in out], [o[1] for o in out], [o[2] for o in out]]


def _samples_per_rank(plans_by_source: list[list[RankPlan]], steps: list) -> list[int]:
    """Per-rank samples of each step (the same on every rank)."""
    return [len(plans_by_source[s][0].batch(b)) for s, b in steps]


def _check_rest(srcs, consumed, plans, steps, done, world, total_steps):  # noqa: ANN001, ANN202
    """The resumed plans cover the rest of every source exactly, padding <= world - 1."""
    assert all(s == steps[0] for s in steps) and set(done) == {done[0]}  # one schedule
    assert done[0] + len(steps[0]) == total_steps  # the epoch keeps its step count
    for i, src in enumerate(srcs):
        rest = _all_items(src["counts"], src["captions"]) - set(consumed[i])
        per_rank = [plans[m][i] for m in range(world)]
        assert {len(p.order) for p in per_rank} == {max(len(p.order) for p in per_rank)}
        read = Counter(_identity(p, x) for p in per_rank for x in p.order)
        assert set(read) == rest  # everything not yet read, and nothing read before
        real = Counter(_identity(p, x) for p in per_rank for x in p.order[: p.num_real])
        assert set(real.values()) <= {1} and set(real) == rest  # the real part: each once
        assert sum(read.values()) - len(rest) <= world - 1  # padding repeats
        assert all(p.batch_size == src["batch"] // world for p in per_rank)  # global batch kept
        for p in per_rank:
            assert _max_pending(p) <= BUFFER + 1  # streams forward within the buffer's memory
        assert sum(s == i for s, _ in steps[0]) == per_rank[0].num_batches


def _max_pending(plan: RankPlan) -> int:
    """Most samples a forward stream holds for later while yielding ``plan.order``."""
    read_to, most, need = -1, 0, Counter(plan.order.tolist())
    held: set = set()
    for i, p in enumerate(plan.order.tolist()):
        # a shard occurrence is read forward: everything up to p that is still needed is held
        if p > read_to:
            held |= {q for q in plan.order[i:].tolist() if read_to < q <= p}
            read_to = p
        need[p] -= 1
        if need[p] == 0:
            held.discard(p)
        most = max(most, len(held))
    return most


CAPTIONS = [np.array([(s + i) % 3 + 1 for i in range(n)]) for s, n in enumerate(COUNTS)]


@pytest.mark.parametrize("per_caption", [False, True])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_resume_on_any_rank_count_covers_the_rest_once(n: int, per_caption: bool) -> None:
    srcs = [_source(COUNTS, CAPTIONS if per_caption else None, "0:toy/train", 12)]
    fresh = _plans(srcs[0], n)
    total_steps = fresh[0].num_batches
    tags = [s for s, _ in interleave([total_steps], SEED, EPOCH)]
    for k in range(1, total_steps):  # every mid-epoch checkpoint
        consumed = [_taken(fresh, k)]
        samples = sum(len(fresh[0].batch(b)) for b in range(k))
        assert tags[:k].count(0) == k
        for m in [1, 2, 3, 4, 6, 12]:  # M < N, M = N, M > N, M = 1
            plans, steps, done = _resume(srcs, [(n, samples)], m)
            assert done == [k] * m
            _check_rest(srcs, consumed, plans, steps, done, m, total_steps)


def test_two_sources_keep_the_epochs_source_order() -> None:
    # Two corpora with their own global batches: the resumed steps follow the fresh interleave.
    srcs = [
        _source(COUNTS, None, "0:a/train", 8),
        _source([5, 6, 3, 9], None, "1:b/train", 4),
    ]
    fresh = [_plans(s, 2) for s in srcs]
    nb = [f[0].num_batches for f in fresh]
    order = interleave(nb, SEED, EPOCH)
    for k in range(1, len(order)):
        taken = [sum(1 for s, _ in order[:k] if s == i) for i in range(2)]
        consumed = [_taken(fresh[i], taken[i]) for i in range(2)]
        samples = sum(_samples_per_rank(fresh, order[:k]))
        for m in (1, 4):
            plans, steps, done = _resume(srcs, [(2, samples)], m)
            _check_rest(srcs, consumed, plans, steps, done, m, len(order))
            assert [s for s, _ in steps[0]] == [s for s, _ in order[k:]]


def test_chained_resume_n_to_m_to_k() -> None:
    # 2 ranks for 1 step, then 3 ranks for 1 step, then 4 ranks (or 1, or back to 2).
    srcs = [_source(COUNTS, CAPTIONS, "0:toy/train", 12)]
    fresh = _plans(srcs[0], 2)
    first = _taken(fresh, 1)
    plans3, steps3, _ = _resume(srcs, [(2, 6)], 3)
    second = Counter(_identity(plans3[m][0], x) for m in range(3) for x in plans3[m][0].batch(0))
    assert not set(first) & set(second)
    per_rank = len(plans3[0][0].batch(0))
    for last in (4, 1, 2):
        plans, steps, done = _resume(srcs, [(2, 6), (3, per_rank)], last)
        assert done == [2] * last
        _check_rest(srcs, [first + second], plans, steps, done, last, fresh[0].num_batches)


def test_fewer_items_left_than_ranks() -> None:
    # 13 samples, global batch 12: one step leaves 1 sample for 4 ranks -> 3 repeats.
    srcs = [_source([6, 7], None, "0:toy/train", 12)]
    fresh = _plans(srcs[0], 2)
    plans, steps, done = _resume(srcs, [(2, 6)], 4)
    _check_rest(srcs, [_taken(fresh, 1)], plans, steps, done, 4, 2)
    assert [p[0].num_real for p in plans] == [0, 0, 0, 1]


def test_not_a_batch_boundary_is_refused() -> None:
    srcs = [_source(COUNTS, None, "0:toy/train", 12)]
    with pytest.raises(ValueError, match="not a batch boundary"):
        _resume(srcs, [(2, 5)], 1)


def _check_drop_last_rest(src, fresh, k, plans, steps, m):  # noqa: ANN001, ANN202
    """The rest of a drop_last epoch on ``m`` ranks: exactly what the ``N``-rank plans still
    visit (full batches, no padding of its own); what they dropped stays unread."""
    total = fresh[0].num_batches  # VindLU's floor(ceil(T / N) / b_N), every rank
    visited, consumed = _taken(fresh, total), _taken(fresh, k)
    rest = visited - consumed  # a multiset: the N plans' own visited padding stays in it
    per_rank = [p[0] for p in plans]
    read = Counter(_identity(p, x) for p in per_rank for x in p.order)
    assert read == rest  # each unread visited entry once: no new padding, nothing extra
    dropped = _all_items(src["counts"], src["captions"]) - set(visited)
    assert not set(read) & dropped  # the N plans' dropped tails stay dropped this epoch
    twice = {x for x, c in visited.items() if c > 1}  # the N plans' own repeats
    assert not (set(read) & set(consumed)) - twice  # nothing read before the checkpoint
    for p in per_rank:
        assert len(p.order) == (total - k) * src["batch"] // m  # an equal share, no padding
        assert p.num_batches == total - k and p.batch_size == src["batch"] // m
        assert all(len(p.batch(b)) == p.batch_size for b in range(p.num_batches))  # full
        assert _max_pending(p) <= BUFFER + 1
    assert steps[0] == [(0, b) for b in range(total - k)]  # the epoch keeps its S steps


@pytest.mark.parametrize("per_caption", [False, True])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_drop_last_resume_on_any_rank_count_is_the_rest_of_the_n_rank_epoch(
    n: int, per_caption: bool
) -> None:
    # 45 samples, global batch 12: N = 1 drops 9, 2 drops 5 a rank, 3 drops 3 a rank, 4 drops
    # none (ranks of 11 visit their padding repeat).
    srcs = [_source(COUNTS, CAPTIONS if per_caption else None, "0:toy/train", 12)]
    fresh = _plans(srcs[0], n, drop_last=True)
    for k in range(1, fresh[0].num_batches):  # every mid-epoch checkpoint
        samples = k * 12 // n
        for m in [1, 2, 3, 4, 6]:
            plans, steps, done = _resume(srcs, [(n, samples)], m, drop_last=True)
            assert done == [k] * m and all(s == steps[0] for s in steps)
            _check_drop_last_rest(srcs[0], fresh, k, plans, steps, m)


def test_drop_last_chained_resume_n_to_m_to_k() -> None:
    # drop_last, 2 ranks for 1 step, 3 ranks for 1 step, then 4, 1 or 2 ranks: the three parts
    # read exactly what the 2-rank drop_last epoch visits (its S steps of 12), each entry once.
    srcs = [_source(COUNTS, CAPTIONS, "0:toy/train", 12)]
    fresh = _plans(srcs[0], 2, drop_last=True)
    total = fresh[0].num_batches
    assert total == -(-sum(int(c.sum()) for c in CAPTIONS) // 2) // 6  # floor(ceil(T / 2) / 6)
    plans3, _, _ = _resume(srcs, [(2, 6)], 3, drop_last=True)
    second = Counter(_identity(p[0], x) for p in plans3 for x in p[0].batch(0))
    for last in (4, 1, 2):
        plans, steps, done = _resume(srcs, [(2, 6), (3, 4)], last, drop_last=True)
        assert done == [2] * last and steps[0] == [(0, b) for b in range(total - 2)]
        third = Counter(_identity(p[0], x) for p in plans for x in p[0].order)
        assert _taken(fresh, 1) + second + third == _taken(fresh, total)
        assert all(len(p[0].order) == (total - 2) * 12 // last for p in plans)
