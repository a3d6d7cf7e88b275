"""Retrieval metrics against a brute-force oracle (single and multiple ground truths, ties)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2v2t.retrieval.metrics import (
    best_ranks,
    retrieval_metrics,
    summarize,
    t2v_metrics,
    v2t_metrics,
    video_targets,
)


def oracle_rank(row: np.ndarray, targets: list[int]) -> int:
    """Rank by counting: items strictly better, plus equal items with a lower index, plus one."""
    best = None
    for j in targets:
        r = 1 + sum(1 for i in range(len(row)) if row[i] > row[j] or (row[i] == row[j] and i < j))
        best = r if best is None else min(best, r)
    return best


def oracle_summary(ranks: list[int]) -> dict[str, float]:
    n = len(ranks)
    out = {f"R{k}": 100.0 * sum(r <= k for r in ranks) / n for k in (1, 5, 10)}
    out["Avg"] = (out["R1"] + out["R5"] + out["R10"]) / 3
    s = sorted(ranks)
    out["MdR"] = (s[(n - 1) // 2] + s[n // 2]) / 2
    out["MnR"] = sum(ranks) / n
    return out


def random_case(seed: int, nt: int, nv: int, levels: int | None, multi: bool):
    rng = np.random.default_rng(seed)
    if levels:  # few distinct values: many ties
        scores = rng.integers(0, levels, size=(nt, nv)).astype(np.float32)
    else:
        scores = rng.normal(size=(nt, nv)).astype(np.float32)
    if multi:
        gt = [
            sorted(rng.choice(nv, size=rng.integers(1, 4), replace=False).tolist())
            for _ in range(nt)
        ]
    else:
        gt = [[int(rng.integers(nv))] for _ in range(nt)]
    return scores, gt


@pytest.mark.parametrize(
    "seed,levels,multi",
    [(0, None, False), (1, 3, False), (2, None, True), (3, 4, True), (4, 1, True)],
)
def test_metrics_match_oracle(seed, levels, multi):
    nt, nv = 37, 23
    scores, gt = random_case(seed, nt, nv, levels, multi)
    t2v_ranks = [oracle_rank(scores[t], gt[t]) for t in range(nt)]
    assert best_ranks(scores, gt).tolist() == t2v_ranks
    got = t2v_metrics(scores, gt)
    for key, val in oracle_summary(t2v_ranks).items():
        assert got[key] == pytest.approx(val, abs=1e-5), key

    # v2t: a video's best-ranked text among those whose GT includes it; undescribed videos skipped.
    v2t = scores.T.copy()
    per_video = [[t for t in range(nt) if v in gt[t]] for v in range(nv)]
    v2t_ranks = [oracle_rank(v2t[v], per_video[v]) for v in range(nv) if per_video[v]]
    got = v2t_metrics(v2t, gt)
    for key, val in oracle_summary(v2t_ranks).items():
        assert got[key] == pytest.approx(val, abs=1e-5), key


def test_tie_rule_lower_index_first():
    scores = np.array([[1.0, 1.0, 1.0, 0.0]])
    assert best_ranks(scores, [[0]]).tolist() == [1]
    assert best_ranks(scores, [[2]]).tolist() == [3]
    assert best_ranks(scores, [[3, 1]]).tolist() == [2]  # best of several ground truths


def test_torch_input_chunking_and_errors(monkeypatch):
    import t2v2t.retrieval.metrics as metrics

    scores, gt = random_case(5, 50, 20, 5, True)
    expected = best_ranks(scores, gt)
    monkeypatch.setattr(metrics, "ROW_CHUNK", 7)  # several row blocks
    assert (best_ranks(torch.from_numpy(scores), gt) == expected).all()
    with pytest.raises(ValueError, match="NaN"):
        best_ranks(np.full((2, 2), np.nan), [[0], [1]])
    with pytest.raises(ValueError, match="out of range"):
        best_ranks(np.zeros((1, 2)), [[2]])
    with pytest.raises(ValueError, match="no ground-truth"):
        best_ranks(np.zeros((1, 2)), [[]])


def test_summary_values_and_both_directions():
    s = summarize(np.array([1, 2, 6, 11]))
    assert s == {"R1": 25.0, "R5": 50.0, "R10": 75.0, "Avg": 50.0, "MdR": 4.0, "MnR": 5.0}
    eye = np.eye(4)
    res = retrieval_metrics(eye, eye, [[0], [1], [2], [3]])
    assert res["t2v"]["R1"] == 100.0 and res["v2t"]["MnR"] == 1.0
    assert video_targets([[1], [0, 1]], 3) == [[1], [0, 1], []]
