"""Is a fusion's gain real? Bootstrap intervals and paired tests over queries.

Every figure is a mean over queries of a per-query value: R@K is the mean of ``rank <= K`` (x100),
Avg the mean of the three. So:

- **interval**: a 95% percentile bootstrap interval, resampling queries with replacement
  (``resamples`` draws, fixed ``seed``);
- **paired test** of fusion B against ``none`` on the same queries: the two-sided paired
  sign-flip permutation test of the mean per-query difference (under "no difference" each query's
  two results are exchangeable, so the sign of its difference is a coin flip). It is exact when
  the queries whose results differ admit at most ``resamples`` sign patterns, else Monte Carlo
  with ``p = (1 + #{|T*| >= |T|}) / (1 + resamples)``. The difference's interval is a paired
  bootstrap (the same resampled queries for both fusions).

Several datasets (the ablation's Total Avg) are strata: each is resampled within itself and the
statistic is the mean of the datasets' means, as the table averages them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import product
from typing import Any

import numpy as np

from t2v2t.retrieval.fusion import FUSIONS
from t2v2t.retrieval.metrics import RECALL_AT, Scores, best_ranks, video_targets

METRICS = ("R1", "R5", "R10", "Avg")
# Per-query values of one fusion: one array, or one per dataset (strata).
Values = np.ndarray | Sequence[np.ndarray]
RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
METHOD = {
    "interval": "percentile bootstrap over queries",
    "paired_test": "two-sided paired sign-flip permutation test vs none (exact when small)",
    "difference_interval": "paired bootstrap over queries",
    "resamples": RESAMPLES,
    "seed": SEED,
    "level": LEVEL,
}
_CHUNK_ELEMS = 4_000_000  # resampled values held at once


def per_query_values(ranks: np.ndarray) -> np.ndarray:
    """[n, 4] per-query R1 R5 R10 Avg contributions (x100): their column means are the metrics."""
    ranks = np.asarray(ranks)
    hits = np.stack([(ranks <= k) for k in RECALL_AT], axis=1).astype(np.float64) * 100.0
    return np.concatenate([hits, hits.mean(axis=1, keepdims=True)], axis=1)


def _strata(values: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(values, np.ndarray):
        values = [values]
    out = [np.asarray(v, dtype=np.float64) for v in values]
    if not out or any(v.ndim != 2 or len(v) == 0 for v in out):
        raise ValueError("need at least one non-empty [queries, metrics] array per stratum")
    return out


def bootstrap_means(
    values: np.ndarray | Sequence[np.ndarray], *, resamples: int = RESAMPLES, seed: int = SEED
) -> np.ndarray:
    """[resamples, m] means of query-resampled ``values`` ([n, m], or a list of strata: then
    each stratum is resampled within itself and the strata's means are averaged)."""
    strata = _strata(values)
    rng = np.random.default_rng(seed)
    total = np.zeros((resamples, strata[0].shape[1]))
    for v in strata:
        n = len(v)
        chunk = max(1, _CHUNK_ELEMS // (n * v.shape[1]))
        for start in range(0, resamples, chunk):
            b = min(chunk, resamples - start)
            idx = rng.integers(0, n, size=(b, n))
            total[start : start + b] += v[idx].mean(axis=1)
    return total / len(strata)


def _interval(draws: np.ndarray, level: float) -> np.ndarray:
    tail = 100.0 * (1.0 - level) / 2.0
    return np.percentile(draws, [tail, 100.0 - tail], axis=0)  # [2, m]


def bootstrap_interval(
    values: np.ndarray | Sequence[np.ndarray],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> np.ndarray:
    """[m, 2] (low, high) percentile bootstrap intervals of each column's mean."""
    return _interval(bootstrap_means(values, resamples=resamples, seed=seed), level).T


def _weighted_diffs(a: Values, b: Values) -> tuple[np.ndarray, np.ndarray]:
    sa, sb = _strata(a), _strata(b)
    if [x.shape for x in sa] != [x.shape for x in sb]:
        raise ValueError("a paired test needs the same queries for both fusions")
    d = np.concatenate([y - x for x, y in zip(sa, sb, strict=True)])
    # The statistic is the mean of the strata's means: query i of stratum s weighs 1/(n_s S).
    w = np.concatenate([np.full(len(x), 1.0 / (len(x) * len(sa))) for x in sa])
    return d, w


def sign_flip_p(
    a: Values, b: Values, *, resamples: int = RESAMPLES, seed: int = SEED
) -> np.ndarray:
    """[m] two-sided paired sign-flip permutation p-values of mean(b) - mean(a), per column."""
    d, w = _weighted_diffs(a, b)
    wd = d * w[:, None]
    wd = wd[np.any(d != 0, axis=1)]  # queries with equal results never change the statistic
    observed = np.abs(wd.sum(axis=0))
    tol = 1e-9 * (1.0 + observed)  # float sums of the same terms in another order
    m = len(wd)
    if m == 0:
        return np.ones(d.shape[1])
    if m <= 30 and 2**m <= resamples:
        # Exact: every sign pattern once (the identity included).
        signs = np.array(list(product((1.0, -1.0), repeat=m)))
        stats = np.abs(signs @ wd)
        return (stats >= observed - tol).mean(axis=0)
    rng = np.random.default_rng(seed)
    count = np.zeros(d.shape[1])
    chunk = max(1, _CHUNK_ELEMS // m)
    for start in range(0, resamples, chunk):
        k = min(chunk, resamples - start)
        signs = rng.integers(0, 2, size=(k, m)) * 2.0 - 1.0
        count += (np.abs(signs @ wd) >= observed - tol).sum(axis=0)
    return (1.0 + count) / (1.0 + resamples)


def paired_comparison(
    a: Values, b: Values, *, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL
) -> dict[str, dict[str, Any]]:
    """Per metric: ``diff`` = mean(b) - mean(a), its paired bootstrap ``ci``, and ``p``."""
    _weighted_diffs(a, b)  # the same queries on both sides, or a clear error
    sa, sb = _strata(a), _strata(b)
    diff = np.mean([y.mean(axis=0) - x.mean(axis=0) for x, y in zip(sa, sb, strict=True)], axis=0)
    # Paired bootstrap: the same resampled queries (same seed, same sizes) for both fusions.
    ci = _interval(
        bootstrap_means(
            [y - x for x, y in zip(sa, sb, strict=True)], resamples=resamples, seed=seed
        ),
        level,
    ).T
    p = sign_flip_p(a, b, resamples=resamples, seed=seed)
    return {
        name: {"diff": _r(diff[j]), "ci": [_r(ci[j, 0]), _r(ci[j, 1])], "p": _r(p[j])}
        for j, name in enumerate(METRICS)
    }


def _r(x: float) -> float:
    return round(float(x), 6)


def fusion_statistics(
    ranks: Mapping[str, np.ndarray],
    *,
    baseline: str = "none",
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> dict[str, Any]:
    """``{"intervals": {fusion: {metric: [lo, hi]}}, "paired": {fusion: {metric: {...}}}}`` from
    each fusion's per-query ranks (or a list of per-dataset rank arrays: strata)."""

    def values(r: Values) -> Values:
        if isinstance(r, np.ndarray):
            return per_query_values(r)
        return [per_query_values(x) for x in r]

    vals = {name: values(r) for name, r in ranks.items()}
    intervals = {}
    for name, v in vals.items():
        ci = bootstrap_interval(v, resamples=resamples, seed=seed, level=level)
        intervals[name] = {m: [_r(ci[j, 0]), _r(ci[j, 1])] for j, m in enumerate(METRICS)}
    paired = {
        name: paired_comparison(vals[baseline], v, resamples=resamples, seed=seed, level=level)
        for name, v in vals.items()
        if name != baseline and baseline in vals
    }
    return {"intervals": intervals, "paired": paired}


def direction_ranks(t2v: Scores, v2t: Scores, gt: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
    """Per-query best ranks in both directions, the queries ``retrieval_metrics`` counts."""
    v2t = np.asarray(v2t.detach().float().cpu().numpy() if hasattr(v2t, "detach") else v2t)
    per_video = video_targets(gt, v2t.shape[0])
    keep = [v for v, texts in enumerate(per_video) if texts]
    return {
        "t2v": best_ranks(t2v, gt),
        "v2t": best_ranks(v2t[keep], [per_video[v] for v in keep]),
    }


def retrieval_statistics(
    matrices: Mapping[str, tuple[Any, Any]],
    gt: Sequence[Sequence[int]],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> dict[str, Any]:
    """The evaluation JSON's ``statistics``: method, then per direction intervals and tests.

    ``matrices``: fusion -> (t2v [Nt, Nv], v2t [Nv, Nt]) score matrices.
    """
    ranks = {name: direction_ranks(t2v, v2t, gt) for name, (t2v, v2t) in matrices.items()}
    out: dict[str, Any] = {"method": {**METHOD, "resamples": resamples, "seed": seed}}
    for direction in ("t2v", "v2t"):
        out[direction] = fusion_statistics(
            {name: r[direction] for name, r in ranks.items()}, resamples=resamples, seed=seed
        )
    return out


def statistics_from_scores(
    arrays: Mapping[str, np.ndarray], gt: Sequence[Sequence[int]]
) -> dict[str, Any]:
    """``statistics`` from a scores ``.npz`` (text->video only: the npz holds no v2t matrices)."""
    ranks = {f: best_ranks(arrays[f"t2v_{f}"], gt) for f in FUSIONS if f"t2v_{f}" in arrays}
    return {"method": dict(METHOD), "t2v": fusion_statistics(ranks)}


def fmt_interval(ci: Sequence[float]) -> str:
    return f"[{ci[0]:.1f}, {ci[1]:.1f}]"


def fmt_p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else "<0.001"
