"""The post-hoc methods on stage 2's re-ranked candidate logits (docs/evaluation.md, "Which
fusion?"): each against its formula written out here one entry at a time over the scored pairs
P = C_t ∪ C_v; the fusions' rows equal the fusion table's; the bank methods are not applicable."""

from __future__ import annotations

import math

import pytest
import torch

from t2v2t.retrieval.fusion import candidate_masks, fuse_all
from t2v2t.retrieval.metrics import retrieval_metrics
from t2v2t.retrieval.posthoc_rerank import (
    NOT_APPLICABLE,
    ON_CANDIDATES,
    compare_reranked,
    rescore_reranked,
)

NT, NV, K = 8, 6, 3


def case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    sims = torch.randn(NT, NV, generator=g, dtype=torch.float64)
    cand_t, cand_v = candidate_masks(sims, K)
    m = torch.randn(NT, NV, generator=g, dtype=torch.float64) * 3
    m = torch.where(cand_t | cand_v, m, torch.full_like(m, float("nan")))  # never read
    return m, cand_t, cand_v


def lse(values) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(x - top) for x in values))


def ref(method: str, m, cand, valid, p) -> dict[tuple[int, int], float]:
    """method's score of every candidate pair (t, v in C_t), from the docs' formulas."""
    nq, ng = len(m), len(m[0])
    texts_of = {v: [t for t in range(nq) if valid[t][v]] for v in range(ng)}  # {t' : (t',v) in P}
    cands_of = {t: [v for v in range(ng) if cand[t][v]] for t in range(nq)}
    out = {}
    if method == "sinkhorn":
        logp = {(t, v): m[t][v] / p["eps"] for t in range(nq) for v in range(ng) if valid[t][v]}
        for _ in range(p["iters"]):
            for t in range(nq):
                row = [v for v in range(ng) if valid[t][v]]
                z = lse([logp[t, v] for v in row])
                for v in row:
                    logp[t, v] -= z
            for v in range(ng):
                z = lse([logp[t, v] for t in texts_of[v]])
                for t in texts_of[v]:
                    logp[t, v] -= z
        return {(t, v): logp[t, v] for t in range(nq) for v in cands_of[t]}
    for t in range(nq):
        for v in cands_of[t]:
            x = m[t][v]
            col = [m[u][v] for u in texts_of[v]]
            if method == "none":
                out[t, v] = x
            elif method == "dsl":
                out[t, v] = x * math.exp(x / p["tau"] - lse([c / p["tau"] for c in col]))
            elif method in ("is", "qbnorm"):
                out[t, v] = p["beta"] * x - lse([p["beta"] * c for c in col])
            elif method == "csls":
                row = sorted((m[t][w] for w in cands_of[t]), reverse=True)[: p["k"]]
                best = sorted(col, reverse=True)[: p["k"]]
                out[t, v] = 2 * x - sum(row) / len(row) - sum(best) / len(best)
    return out


PARAMS = {
    "none": {},
    "dsl": {"tau": 0.7},
    "is": {"beta": 2.0},
    "qbnorm": {"beta": 2.0, "k": 1},
    "csls": {"k": 2},
    "sinkhorn": {"eps": 1.5, "iters": 4},
}


@pytest.mark.parametrize("method", ON_CANDIDATES)
@pytest.mark.parametrize("direction", ["t2v", "v2t"])
def test_each_method_equals_its_formula_on_the_scored_pairs(method: str, direction: str) -> None:
    m, cand_t, cand_v = case(1)
    if direction == "v2t":  # the same problem transposed: a video's candidates are C_v
        m, cand_t, cand_v = m.T, cand_v.T, cand_t.T
    got = rescore_reranked(method, m, cand_t, cand_v, **PARAMS[method])
    valid = (cand_t | cand_v).tolist()
    want = ref(method, m.tolist(), cand_t.tolist(), valid, PARAMS[method])
    assert want and len(want) == int(cand_t.sum())
    for (t, v), value in want.items():
        assert got[t, v].item() == pytest.approx(value, rel=1e-9, abs=1e-9), (method, t, v)
    # Every non-candidate ranks below all of the query's candidates, and nothing is NaN.
    assert not bool(torch.isnan(got).any())
    floor = got[~cand_t]
    assert bool((floor < got[cand_t].min()).all())


def test_comparison_rows_fusions_equal_the_fusion_table_and_bank_methods_are_skipped() -> None:
    m, cand_t, cand_v = case(2)
    gt = [[t % NV] for t in range(NT)]
    out = compare_reranked(m, m, cand_t, cand_v, gt, resamples=200, tau=0.5, lam=0.7)
    fused = fuse_all(m, cand_t, cand_v, m, tau=0.5, lam=0.7)
    for direction in ("t2v", "v2t"):
        rows = out["protocols"]["batch"][direction]
        for name in ("none", "naive", "t2v2t"):
            want = retrieval_metrics(fused[name].t2v, fused[name].v2t, gt)[direction]
            assert rows[name]["metrics"] == want, (direction, name)
        for name, why in NOT_APPLICABLE.items():
            assert rows[name]["skipped"] == why and "metrics" not in rows[name]
        assert rows["none"]["label"] == "inductive" and rows["csls"]["label"] == "transductive"
        # Holm's correction runs across the applicable methods: never below the raw p.
        for name in ("dsl", "is", "csls", "sinkhorn", "naive", "t2v2t"):
            test = rows[name]["vs_none"]["R1"]
            assert test["p_holm"] >= test["p"] and 0 <= test["p"] <= 1
        assert "vs_none" not in rows["none"] or rows["none"]["vs_none"] is None
    assert out["params"]["t2v2t"] == {"tau": 0.5, "lam": 0.7}
    assert rows["dbnorm"]["label"] == "not applicable"
    with pytest.raises(ValueError, match="not one of"):
        rescore_reranked("dbnorm", m, cand_t, cand_v)


def test_tables_label_each_dataset_and_hold_both_sections() -> None:
    from t2v2t.retrieval.compare import ScoreInputs, compare
    from t2v2t.retrieval.html_report import posthoc_html
    from t2v2t.retrieval.report import posthoc_markdown

    m, cand_t, cand_v = case(3)
    gt = [[t % NV] for t in range(NT)]
    sims = torch.randn(NT, NV, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    bank = torch.randn(5, NV, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    results = {}
    for d, b in (("msrvtt", bank), ("anet", None)):  # a bank for one dataset only
        post = compare(ScoreInputs(sims, gt, bank=b), resamples=100)
        post["reranked"] = compare_reranked(m, m, cand_t, cand_v, gt, resamples=100)
        results[d] = {"posthoc": post}
    table = posthoc_markdown(results, ["msrvtt", "anet"])
    assert "| is | inductive (MSR-VTT), transductive (ActivityNet Captions) |" in table
    after = table.split("On the re-ranked candidate logits")[1]
    assert "| is | transductive |" in after and "| t2v2t_bank | not applicable | - | - |" in after
    page = posthoc_html(results)
    assert "<td>inductive (MSR-VTT), transductive (ActivityNet Captions)</td>" in page
    assert page.count("<h3>Every post-hoc method") == 2 and "Holm" in page
