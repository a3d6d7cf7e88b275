"""How well an epoch's batches are mixed: ``batch_locality``, measured on the plan alone.

``batch_locality``: the share of same-batch sample pairs whose annotation rows lie within 1% of
the dataset of each other. A uniform permutation gives ``2d - d**2`` (``d = 0.01``: 0.0199);
batches drawn from neighbouring rows give nearly 1. The epoch is simulated without reading a
byte: shards of ``n`` rows in annotation order (``mixing="none"``) or in the mixed order of
:func:`preprocessing.mixing.mixed_rows`, then :func:`t2v2t.data.plan.train_plan` as the loader
runs it (docs/data.md, "Mixing").
"""

from __future__ import annotations

import numpy as np

from preprocessing.mixing import mixed_rows
from t2v2t.data.plan import train_plan


def batch_locality(batches: np.ndarray, num_rows: int, within: float = 0.01) -> float:
    """Share of pairs inside each row of ``batches`` (``[num_batches, B]`` annotation rows) whose
    rows differ by at most ``within * num_rows``."""
    s = np.sort(np.asarray(batches, dtype=np.int64), axis=1)
    limit = within * num_rows
    b = s.shape[1]
    close = sum(int(np.count_nonzero(s[:, k:] - s[:, :-k] <= limit)) for k in range(1, b))
    return close / (s.shape[0] * b * (b - 1) / 2)


def uniform_locality(within: float = 0.01) -> float:
    """The same share for two independent uniform rows (the limit of a uniform permutation)."""
    return 2 * within - within * within


def shard_rows(num_rows: int, samples_per_shard: int, mixing: str, seed: int = 0) -> np.ndarray:
    """The annotation row of each sample, in shard order (shard ``i``: entries ``[i*n, (i+1)*n)``)."""
    if mixing == "none":
        return np.arange(num_rows, dtype=np.int64)
    return mixed_rows(num_rows, samples_per_shard, seed)


def epoch_batches(
    rows: np.ndarray,
    samples_per_shard: int,
    *,
    batch_size: int,
    world_size: int = 1,
    ranks: int = 1,
    seed: int = 0,
    epoch: int = 0,
    shuffle_buffer: int = 1000,
) -> list[np.ndarray]:
    """The annotation rows of each full batch of the first ``ranks`` ranks' plans, per rank a
    ``[num_batches, batch_size]`` array (padding repeats and the short last batch left out)."""
    n = samples_per_shard
    counts = [min(n, len(rows) - i) for i in range(0, len(rows), n)]
    out = []
    for rank in range(ranks):
        plan = train_plan(
            counts,
            seed=seed,
            epoch=epoch,
            rank=rank,
            world_size=world_size,
            batch_size=batch_size,
            shuffle_buffer=shuffle_buffer,
            tag="locality",
        )
        starts = plan.shard_starts()
        order = plan.order[: plan.num_real]
        which = np.searchsorted(starts, order, side="right") - 1
        flat = np.asarray(plan.shards, dtype=np.int64)[which] * n + (order - starts[which])
        full = len(flat) // batch_size * batch_size
        out.append(rows[flat[:full]].reshape(-1, batch_size))
    return out


def uniform_batches(num_rows: int, batch_size: int, num_batches: int, seed: int = 0) -> np.ndarray:
    """Batches of a uniform permutation of the rows (``DistributedSampler(shuffle=True)``)."""
    perm = np.random.default_rng(seed).permutation(num_rows)
    return perm[: num_batches * batch_size].reshape(num_batches, batch_size)
