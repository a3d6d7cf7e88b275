"""Fusions on hand-made matrices against naive loops, and the sanity simulation
(docs/architecture.md, "Retrieval and fusion")."""

from __future__ import annotations

import math

import pytest
import torch

from t2v2t.retrieval.fusion import FILL, candidate_masks, fuse, fuse_all, topk_mask
from t2v2t.retrieval.metrics import best_ranks, t2v_metrics


def loop_candidates(sims, k):
    nt, nv = len(sims), len(sims[0])
    c_t = [sorted(range(nv), key=lambda v: (-sims[t][v], v))[:k] for t in range(nt)]
    c_v = [sorted(range(nt), key=lambda t: (-sims[t][v], t))[:k] for v in range(nv)]
    return c_t, c_v


def log_softmax_at(values: dict, key) -> float:
    lse = math.log(sum(math.exp(x) for x in values.values()))
    return values[key] - lse


def loop_t2v2t(m1, m2, c_t, c_v, tau, lam):
    """The formula (docs/architecture.md, "Retrieval and fusion"), one pair at a time; m1 from the
    t->v pass, m2 from the v->t pass."""
    out = {}
    for t in range(len(c_t)):
        for v in c_t[t]:
            fwd = {vv: m1[t][vv] / tau for vv in c_t[t]}
            back = {tt: m2[tt][v] / tau for tt in c_v[v]}
            if t not in back:
                back[t] = m1[t][v] / tau
            out[t, v] = log_softmax_at(fwd, v) + lam * log_softmax_at(back, t)
    return out


def hand_case():
    # 3 texts x 4 videos; k = 2. Entries outside both candidate sets are NaN: never read.
    sims = torch.tensor(
        [[0.9, 0.1, 0.5, 0.2], [0.3, 0.8, 0.7, 0.0], [0.2, 0.6, 0.4, 0.95]], dtype=torch.float64
    )
    m = torch.tensor(
        [[2.0, -1.0, 0.5, 1.0], [0.3, 1.5, 2.5, -0.2], [-0.5, 0.7, 1.1, 3.0]], dtype=torch.float64
    )
    return sims, m


def test_candidates_hand_and_ties():
    sims, _ = hand_case()
    a, b = candidate_masks(sims, 2)
    c_t, c_v = loop_candidates(sims.tolist(), 2)
    assert [torch.nonzero(a[t]).flatten().tolist() for t in range(3)] == [sorted(c) for c in c_t]
    assert [torch.nonzero(b[:, v]).flatten().tolist() for v in range(4)] == [sorted(c) for c in c_v]
    # Ties: the lower index wins, on every run.
    assert topk_mask(torch.zeros(1, 5), 2, dim=1).tolist() == [[True, True, False, False, False]]
    assert topk_mask(torch.zeros(2, 3), 9, dim=1).all()  # k above the size keeps everything


def test_none_and_naive_on_hand_matrices():
    sims, m = hand_case()
    a, b = candidate_masks(sims, 2)
    m_nan = torch.where(a | b, m, torch.nan)
    fused = fuse_all(m_nan, a, b)
    t2v = [[m[t, v].item() if a[t, v] else FILL for v in range(4)] for t in range(3)]
    v2t = [[m[t, v].item() if b[t, v] else FILL for t in range(3)] for v in range(4)]
    assert fused["none"].t2v.tolist() == t2v
    assert fused["none"].v2t.tolist() == v2t
    summed = [[t2v[t][v] + v2t[v][t] for v in range(4)] for t in range(3)]
    assert fused["naive"].t2v.tolist() == summed
    assert fused["naive"].v2t.T.tolist() == summed
    # `none` ranks exactly by T2V: text 1's candidates are videos 1 and 2, video 2 has the larger m.
    assert best_ranks(fused["none"].t2v, [[2], [2], [3]]).tolist() == [2, 1, 1]


@pytest.mark.parametrize("tau,lam", [(1.0, 1.0), (0.5, 2.0), (2.0, 0.0)])
def test_t2v2t_equals_formula(tau, lam):
    torch.manual_seed(0)
    nt, nv, k = 7, 9, 3
    sims = torch.randn(nt, nv, dtype=torch.float64)
    m1 = torch.randn(nt, nv, dtype=torch.float64) * 2
    m2 = m1 + 0.01 * torch.randn(nt, nv, dtype=torch.float64)  # a separate v->t pass
    a, b = candidate_masks(sims, k)
    c_t, c_v = loop_candidates(sims.tolist(), k)
    want = loop_t2v2t(m1.tolist(), m2.tolist(), c_t, c_v, tau, lam)
    got = fuse(
        "t2v2t",
        torch.where(a, m1, torch.nan),
        a,
        b,
        torch.where(b, m2, torch.nan),
        tau=tau,
        lam=lam,
    )
    for (t, v), val in want.items():
        assert got.t2v[t, v].item() == pytest.approx(val, abs=1e-9)
    # Videos outside C_t rank below all of C_t.
    for t in range(nt):
        outside = [got.t2v[t, v].item() for v in range(nv) if v not in c_t[t]]
        assert max(outside) < min(want[t, v] for v in c_t[t])
    # The mirror image (video -> text) is the same formula with the roles swapped.
    mirror = loop_t2v2t(m2.T.tolist(), m1.T.tolist(), c_v, c_t, tau, lam)
    for (v, t), val in mirror.items():
        assert got.v2t[v, t].item() == pytest.approx(val, abs=1e-9)


def test_fuse_rejects_bad_input():
    sims, m = hand_case()
    a, b = candidate_masks(sims, 2)
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse("sum", m, a, b)
    with pytest.raises(ValueError, match="shape mismatch"):
        fuse("none", m[:2], a, b)
    with pytest.raises(ValueError, match="tau"):
        fuse("t2v2t", m, a, b, tau=0.0)


def test_sanity_simulation_t2v2t_not_worse():
    """The simulation of docs/architecture.md ("Retrieval and fusion"): 1,000 texts/videos,
    k=128, logit 3 for the true pair + N(0,1) noise."""
    gen = torch.Generator().manual_seed(0)
    n = 1000
    m = 3.0 * torch.eye(n) + torch.randn(n, n, generator=gen)
    a, b = candidate_masks(m, 128)
    gt = [[i] for i in range(n)]
    r1 = {f: t2v_metrics(x.t2v, gt)["R1"] for f, x in fuse_all(m, a, b).items()}
    assert r1["t2v2t"] >= r1["none"]
    assert abs(r1["naive"] - r1["none"]) <= 1.0  # naive ~ none
    assert 20.0 < r1["none"] < 60.0  # the simulation is the one described, not a degenerate case


def test_sanity_simulation_hubs_t2v2t_helps_more():
    """Videos that score high for every text (hubs): the v->t normalisation discounts them."""
    gen = torch.Generator().manual_seed(1)
    n = 1000
    m = 3.0 * torch.eye(n) + torch.randn(n, n, generator=gen)
    hubs = torch.zeros(n)
    hubs[torch.randperm(n, generator=gen)[:50]] = 2.0
    gt = [[i] for i in range(n)]
    gain = {}
    for name, logits in (("plain", m), ("hubs", m + hubs[None, :])):
        a, b = candidate_masks(logits, 128)
        fused = fuse_all(logits, a, b)
        r1 = {f: t2v_metrics(x.t2v, gt)["R1"] for f, x in fused.items()}
        gain[name] = r1["t2v2t"] - r1["none"]
    assert gain["hubs"] > gain["plain"] >= 0
