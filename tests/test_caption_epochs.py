"""Per-caption epochs (``data.captions_per_epoch: all``): every (video, caption) once per epoch.

VindLU's training set has one entry per (video, caption) with a per-video match id
(``ImgTxtRetTrainDataset``: the length is the number of caption entries); the rules below are
written out from that, independently of the plan's code.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from t2v2t.data.captions import caption_in_pass
from t2v2t.data.plan import train_plan, train_plans

COUNTS = [5, 7, 3, 6]  # samples per shard


def _caption_counts(seed: int = 0) -> list[np.ndarray]:
    g = np.random.default_rng(seed)
    return [g.integers(1, 6, size=n) for n in COUNTS]


def _items(plan, start=0, stop=None):  # noqa: ANN001
    """(shard, sample, pass) of each entry of the plan's order."""
    out = []
    for p in plan.order[start:stop]:
        i, k = plan.locate(int(p))
        out.append((plan.shards[i], k, plan.passes[i] if plan.passes else 0))
    return out


@pytest.mark.parametrize("world", [1, 2, 3])
def test_every_video_caption_pair_once_per_epoch(world):
    caps = _caption_counts()
    expected = Counter((s, k, j) for s, c in enumerate(caps) for k in range(len(c)) for j in range(c[k]))
    total = sum(expected.values())
    batch = 4
    plans = train_plans(
        COUNTS, world_size=world, seed=3, epoch=1, batch_size=batch, shuffle_buffer=8,
        tag="t", captions=caps,
    )  # fmt: skip
    real = Counter(it for p in plans for it in _items(p, 0, p.num_real))
    assert real == expected  # before padding: each (video, caption) exactly once
    every = Counter(it for p in plans for it in _items(p))
    assert sum(every.values()) - total <= world - 1  # DistributedSampler's padding
    assert set(every) == set(expected)
    for p in plans:
        # VindLU: len(loader) = ceil(entries / (world x batch)) (without drop_last)
        assert p.num_batches == math.ceil(total / (world * batch))
        # A sample's pass j is within its caption count: the caption exists.
        for s, k, j in _items(p):
            assert j < caps[s][k]


def test_one_caption_each_is_the_one_caption_plan():
    ones = [np.ones(n, dtype=np.int64) for n in COUNTS]
    kw = dict(seed=5, epoch=2, world_size=2, batch_size=3, shuffle_buffer=4, tag="x")
    for rank in range(2):
        a = train_plan(COUNTS, rank=rank, **kw)
        b = train_plan(COUNTS, rank=rank, captions=ones, **kw)
        assert a.shards == b.shards and a.counts == b.counts
        np.testing.assert_array_equal(a.order, b.order)


def test_the_plan_depends_on_seed_and_epoch_only():
    caps = _caption_counts(1)
    kw = dict(seed=1, world_size=2, rank=1, batch_size=3, shuffle_buffer=4, tag="x", captions=caps)
    a, b = train_plan(COUNTS, epoch=0, **kw), train_plan(COUNTS, epoch=0, **kw)
    np.testing.assert_array_equal(a.order, b.order)
    assert a.passes == b.passes
    c = train_plan(COUNTS, epoch=1, **kw)
    assert not np.array_equal(a.order, c.order)


def test_caption_in_pass_visits_each_caption_once():
    caps = [f"caption {i}" for i in range(7)]
    seen = [caption_in_pass(caps, 4, 0, "video12", j) for j in range(7)]
    assert sorted(seen) == sorted(caps)
    again = [caption_in_pass(caps, 4, 1, "video12", j) for j in range(7)]
    assert again != seen  # a new order each epoch
    assert caption_in_pass(["only"], 4, 0, "k", 0) == "only"
    with pytest.raises(ValueError, match="rebuild"):
        caption_in_pass(caps, 4, 0, "video12", 7)


def test_shards_record_caption_counts(tmp_path):
    from t2v2t.data.schema import SampleMeta, encode_sample
    from t2v2t.data.shards import ShardInfo, info_dict, write_shard

    def sample(key: str, n: int):  # noqa: ANN202
        meta = SampleMeta(
            key=key, dataset="d", split="train", source=f"{key}.mp4",
            captions=[f"c{i}" for i in range(n)], fps=25.0, vlen=8, duration=0.32,
            frame_indices=[[4]], sampling={"mode": "rand", "num_frames": 1, "candidates": 1,
            "seed": 0}, size=[8, 8],
        )  # fmt: skip
        return encode_sample(meta, [b"jpeg"])

    many = write_shard(tmp_path / "a.tar.zst", [sample("a", 3), sample("b", 1), sample("c", 20)])
    assert (many.samples, many.captions, many.caption_counts) == (3, 24, [3, 1, 20])
    ones = write_shard(tmp_path / "b.tar.zst", [sample("d", 1), sample("e", 1)])
    assert (ones.captions, ones.caption_counts) == (2, None)
    assert "caption_counts" not in info_dict(ones)  # absent = one caption each
    assert ShardInfo(**info_dict(many)) == many  # round trip through the manifest
