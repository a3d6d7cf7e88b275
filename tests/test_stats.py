"""Bootstrap intervals and paired tests against brute-force computations on small matrices."""

from __future__ import annotations

from itertools import product

import numpy as np
import pytest

from t2v2t.retrieval.metrics import best_ranks, summarize
from t2v2t.retrieval.report import ablation_markdown
from t2v2t.retrieval.stats import (
    METRICS,
    bootstrap_interval,
    bootstrap_means,
    fusion_statistics,
    per_query_values,
    retrieval_statistics,
    sign_flip_p,
)


def test_per_query_values_average_to_the_metrics() -> None:
    ranks = np.random.default_rng(0).integers(1, 20, size=37)
    got = per_query_values(ranks).mean(axis=0)
    want = summarize(ranks)
    assert np.allclose(got, [want[m] for m in METRICS])


def test_bootstrap_matches_a_slow_loop_with_the_same_rng() -> None:
    values = np.random.default_rng(1).random((13, 3))
    fast = bootstrap_means(values, resamples=500, seed=7)
    rng = np.random.default_rng(7)
    slow = np.empty((500, 3))
    for b in range(500):  # one resample at a time, element by element
        idx = rng.integers(0, 13, size=13)
        for j in range(3):
            slow[b, j] = sum(values[i, j] for i in idx) / 13
    assert np.allclose(fast, slow)
    lo, hi = np.sort(slow, axis=0)[[12, 487]]  # ~2.5% and ~97.5% order statistics
    ci = bootstrap_interval(values, resamples=500, seed=7)
    assert np.all(np.abs(ci[:, 0] - lo) < 0.05) and np.all(np.abs(ci[:, 1] - hi) < 0.05)


def test_bootstrap_interval_against_every_resample_of_a_tiny_set() -> None:
    # n = 5 queries: all 5^5 equally likely resamples give the exact bootstrap distribution.
    values = np.random.default_rng(2).random((5, 1))
    exact = np.sort([values[list(idx), 0].mean() for idx in product(range(5), repeat=5)])
    draws = bootstrap_means(values, resamples=20000, seed=0)[:, 0]
    assert abs(draws.mean() - exact.mean()) < 0.01 and abs(draws.std() - exact.std()) < 0.01
    lo, hi = bootstrap_interval(values, resamples=20000, seed=0)[0]
    # The fraction of the exact distribution below each end is ~2.5% (one discrete step slack).
    assert 0.015 <= np.mean(exact < lo) <= 0.035 and 0.965 <= np.mean(exact <= hi) <= 0.985


def _brute_p(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = b - a
    observed = np.abs(d.mean(axis=0))
    hits = np.zeros(d.shape[1])
    patterns = list(product((1, -1), repeat=len(d)))
    for signs in patterns:
        stat = np.abs((np.array(signs)[:, None] * d).mean(axis=0))
        hits += stat >= observed - 1e-12
    return hits / len(patterns)


@pytest.mark.parametrize("seed", range(4))
def test_sign_flip_exact_matches_enumerating_every_query(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ra, rb = rng.integers(1, 8, size=12), rng.integers(1, 8, size=12)
    a, b = per_query_values(ra), per_query_values(rb)
    assert np.allclose(sign_flip_p(a, b, resamples=4096), _brute_p(a, b))


def test_sign_flip_monte_carlo_matches_a_slow_loop_and_the_exact_value() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.random((14, 2)), rng.random((14, 2)) + 0.1
    got = sign_flip_p(a, b, resamples=300, seed=3)  # 2^14 > 300: Monte Carlo
    r = np.random.default_rng(3)
    d = b - a
    observed = np.abs(d.mean(axis=0))
    count = np.zeros(2)
    for _ in range(300):
        signs = r.integers(0, 2, size=14) * 2.0 - 1.0
        count += np.abs((signs[:, None] * d).mean(axis=0)) >= observed - 1e-12
    assert np.allclose(got, (1 + count) / 301)
    exact = _brute_p(a, b)
    assert np.all(np.abs(sign_flip_p(a, b, resamples=20000, seed=0) - exact) < 0.015)


def test_strata_average_the_datasets_and_identical_fusions_are_not_different() -> None:
    rng = np.random.default_rng(6)
    r1, r2 = rng.integers(1, 10, size=40), rng.integers(1, 10, size=15)
    s = fusion_statistics({"none": [r1, r2], "t2v2t": [r1, r2]}, resamples=400)
    assert s["paired"]["t2v2t"]["Avg"] == {"diff": 0.0, "ci": [0.0, 0.0], "p": 1.0}
    # The stratified mean is the mean of the two datasets' means (not of the pooled queries).
    draws = bootstrap_means([per_query_values(r1), per_query_values(r2)], resamples=400)
    one = bootstrap_means(per_query_values(r1), resamples=400)
    assert not np.allclose(draws, one)
    lo, hi = s["intervals"]["none"]["Avg"]
    point = (summarize(r1)["Avg"] + summarize(r2)["Avg"]) / 2
    assert lo <= point <= hi


def test_a_clear_gain_is_significant_and_statistics_reach_the_ablation_table() -> None:
    rng = np.random.default_rng(8)
    nt = 60
    gt = [[t] for t in range(nt)]
    noise = rng.normal(size=(nt, nt))
    better = noise + 3.0 * np.eye(nt)  # the ground truth boosted: most ranks become 1
    stats = retrieval_statistics(
        {"none": (noise, noise.T), "naive": (noise, noise.T), "t2v2t": (better, better.T)}, gt
    )
    test = stats["t2v"]["paired"]["t2v2t"]["R1"]
    r_none, r_better = best_ranks(noise, gt), best_ranks(better, gt)
    assert test["diff"] == pytest.approx(summarize(r_better)["R1"] - summarize(r_none)["R1"])
    assert test["p"] < 0.001 and test["ci"][0] > 0
    assert stats["t2v"]["paired"]["naive"]["R1"]["p"] == 1.0
    result = {
        "split": "test", "num_texts": nt, "num_videos": nt, "k": nt, "checkpoint": "x.pt",
        "results": {f: {"t2v": summarize(best_ranks(m, gt))} for f, m in
                    (("none", noise), ("naive", noise), ("t2v2t", better))},
        "statistics": stats,
    }  # fmt: skip
    ranks = {"msrvtt": {"none": r_none, "naive": r_none, "t2v2t": r_better}}
    table = ablation_markdown({"msrvtt": result}, ["msrvtt"], ranks=ranks)
    lo, hi = stats["t2v"]["intervals"]["t2v2t"]["R1"]
    assert f"[{lo:.1f}, {hi:.1f}]" in table
    assert "vs VindLU" in table and f"{test['diff']:+.1f} [" in table and "p=<0.001" in table
    assert "permutation" in table and "2000 resamples" in table
