"""Post-hoc normalisations (docs/evaluation.md, "Which fusion?"): each against its formula written
out here one entry at a time, and the protocols: inductive methods do not move when the other
queries change, transductive ones do."""

from __future__ import annotations

import math

import pytest
import torch

from t2v2t.retrieval.metrics import best_ranks
from t2v2t.retrieval.posthoc import (
    DEFAULTS,
    INDUCTIVE,
    METHODS,
    TRANSDUCTIVE,
    label,
    rescore,
    single_protocol,
    stress_rescore,
)

NT, NV, NB, NBV = 7, 6, 9, 5


def case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    sims = torch.randn(NT, NV, generator=g, dtype=torch.float64)
    bank = torch.randn(NB, NV, generator=g, dtype=torch.float64)
    video_bank = torch.randn(NBV, NT, generator=g, dtype=torch.float64)
    return sims, bank, video_bank


def lse(values) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(x - m) for x in values))


def mean_top(values, k) -> float:
    top = sorted(values, reverse=True)[:k]
    return sum(top) / len(top)


def col(m, v):
    return [row[v] for row in m]


def argmax_first(row) -> int:
    return max(range(len(row)), key=lambda j: (row[j], -j))


# -- each method, one entry at a time -------------------------------------------------------------
def ref_dsl(s, tau):
    return [
        [s[t][v] * math.exp(s[t][v] / tau - lse([x / tau for x in col(s, v)])) for v in range(NV)]
        for t in range(len(s))
    ]


def ref_is(s, u, beta):
    return [
        [beta * s[t][v] - lse([beta * x for x in col(u, v)]) for v in range(NV)]
        for t in range(len(s))
    ]


def ref_qbnorm(s, u, beta, k):
    active = set()
    for row in u:  # each bank query's k best videos
        active |= set(sorted(range(NV), key=lambda v: (-row[v], v))[:k])
    inv = ref_is(s, u, beta)
    return [inv[t] if argmax_first(s[t]) in active else list(s[t]) for t in range(len(s))]


def ref_csls(s, u, k):
    return [
        [2 * s[t][v] - mean_top(s[t], k) - mean_top(col(u, v), k) for v in range(NV)]
        for t in range(len(s))
    ]


def ref_sinkhorn(s, eps, iters):
    p = [[math.exp(x / eps) for x in row] for row in s]
    for _ in range(iters):
        p = [[x / sum(row) for x in row] for row in p]
        sums = [sum(col(p, v)) for v in range(NV)]
        p = [[row[v] / sums[v] for v in range(NV)] for row in p]
    return [[math.log(x) for x in row] for row in p]


def ref_dbnorm(s, b, vb, beta):
    # exp(is over the caption bank) * exp(is over the video bank), as its log.
    out = []
    for t in range(len(s)):
        row = []
        for v in range(NV):
            p_cap = math.exp(beta * s[t][v] - lse([beta * x for x in col(b, v)]))
            p_vid = math.exp(beta * s[t][v] - lse([beta * x for x in col(vb, t)]))
            row.append(math.log(p_cap * p_vid))
        out.append(row)
    return out


def ref_t2v2t_bank(s, b, tau, lam, k):
    """Candidates C_t = t's k best videos; the backward softmax runs over v's k best bank captions
    plus the query; returns {(t, v): score} on the candidates."""
    out = {}
    for t in range(len(s)):
        c_t = sorted(range(NV), key=lambda v: (-s[t][v], v))[:k]
        for v in c_t:
            fwd = s[t][v] / tau - lse([s[t][w] / tau for w in c_t])
            c_v = sorted(col(b, v), reverse=True)[:k]
            back = s[t][v] / tau - lse([x / tau for x in c_v] + [s[t][v] / tau])
            out[t, v] = fwd + lam * back
    return out


def close(got: torch.Tensor, want, tol: float = 1e-5) -> None:
    assert torch.allclose(got, torch.tensor(want, dtype=got.dtype), atol=tol, rtol=0)


@pytest.mark.parametrize("use_bank", [True, False])
def test_bank_methods_equal_their_formulas(use_bank: bool) -> None:
    s, b, _ = case(1)
    u = b.tolist() if use_bank else s.tolist()
    bank = b if use_bank else None
    sl = s.tolist()
    close(rescore("is", s, bank), ref_is(sl, u, 20.0))
    close(rescore("is", s, bank, beta=3.0), ref_is(sl, u, 3.0))
    close(rescore("csls", s, bank, k=3), ref_csls(sl, u, 3))
    close(rescore("csls", s, bank), ref_csls(sl, u, 10))  # k above the sizes: every entry
    for k in (1, 2):
        close(rescore("qbnorm", s, bank, beta=2.0, k=k), ref_qbnorm(sl, u, 2.0, k))


def test_qbnorm_leaves_queries_outside_the_activation_set_alone() -> None:
    s, b, _ = case(2)
    b = b.clone()
    b[:, 0] = 10.0  # every bank caption's top-1 is video 0: the activation set is {0}
    s = s.clone()
    s[0, 0], s[1, 3] = 9.0, 9.0  # text 0's own top-1 is video 0, text 1's is video 3
    got = rescore("qbnorm", s, b)
    assert torch.equal(got[1], s[1])
    close(got[0], ref_is(s.tolist(), b.tolist(), 20.0)[0])


def test_whole_matrix_methods_equal_their_formulas() -> None:
    s, b, vb = case(3)
    sl = s.tolist()
    close(rescore("dsl", s), ref_dsl(sl, 1.0))
    close(rescore("dsl", s, tau=0.3), ref_dsl(sl, 0.3))
    close(rescore("sinkhorn", s), ref_sinkhorn(sl, 1.0, 10))
    close(rescore("sinkhorn", s, eps=0.5, iters=3), ref_sinkhorn(sl, 0.5, 3))
    close(rescore("dbnorm", s, b, vb, beta=2.0), ref_dbnorm(sl, b.tolist(), vb.tolist(), 2.0))
    assert torch.equal(rescore("none", s), s)


@pytest.mark.parametrize("tau,lam,k", [(1.0, 1.0, 3), (0.5, 2.0, 2), (2.0, 0.0, 6)])
def test_t2v2t_bank_equals_its_formula(tau: float, lam: float, k: int) -> None:
    s, b, _ = case(4)
    want = ref_t2v2t_bank(s.tolist(), b.tolist(), tau, lam, k)
    got = rescore("t2v2t_bank", s, b, tau=tau, lam=lam, k=k)
    for (t, v), val in want.items():
        assert got[t, v].item() == pytest.approx(val, abs=1e-9)
    for t in range(NT):  # videos outside C_t rank below all of C_t
        inside = [got[t, v] for v in range(NV) if (t, v) in want]
        outside = [got[t, v] for v in range(NV) if (t, v) not in want]
        assert not outside or max(outside) < min(inside)


def test_naive_and_t2v2t_on_the_full_matrix() -> None:
    s, _, _ = case(5)
    # k = every video and text: naive is 2 S (ranking of none), t2v2t the paper's formula.
    close(rescore("naive", s, k=NT), (2 * s).tolist())
    a = s
    fwd = a - torch.logsumexp(a, dim=1, keepdim=True)
    back = a - torch.logsumexp(a, dim=0, keepdim=True)
    close(rescore("t2v2t", s, k=NT), (fwd + back).tolist())


def test_labels_and_parameters() -> None:
    assert label("none", False) == INDUCTIVE
    assert [label(m, True) for m in ("is", "qbnorm", "csls", "dbnorm", "t2v2t_bank")] == [
        INDUCTIVE
    ] * 5
    assert [label(m, False) for m in ("is", "qbnorm", "csls")] == [TRANSDUCTIVE] * 3
    for m in ("naive", "dsl", "sinkhorn", "t2v2t"):
        assert label(m, True) == TRANSDUCTIVE
    assert set(DEFAULTS) == set(METHODS)
    s, b, _ = case(6)
    with pytest.raises(ValueError, match="unknown parameter"):
        rescore("is", s, b, tau=1.0)
    with pytest.raises(ValueError, match="k must be an integer"):
        rescore("csls", s, b, k=0)
    with pytest.raises(ValueError, match="needs a bank"):
        rescore("t2v2t_bank", s)
    with pytest.raises(ValueError, match="video_bank"):
        rescore("dbnorm", s, b)
    with pytest.raises(ValueError, match=r"bank has shape \(9, 5\)"):
        rescore("is", s, b[:, :5])
    with pytest.raises(ValueError, match="unknown method"):
        rescore("softmax", s)


# -- protocols ------------------------------------------------------------------------------------
GT = [[t % NV] for t in range(NT)]


def inductive_runs():
    return [("none", {}), ("is", {}), ("qbnorm", {"k": 2}), ("csls", {"k": 3}),
            ("dbnorm", {"beta": 2.0}), ("t2v2t_bank", {"k": 3})]  # fmt: skip


@pytest.mark.parametrize("method,params", inductive_runs())
def test_inductive_methods_ignore_the_other_queries(method: str, params: dict) -> None:
    s, b, vb = case(7)
    batch = rescore(method, s, b, vb, **params)
    single = single_protocol(method, s, b, vb, **params)
    assert single is not None
    assert best_ranks(batch, GT).tolist() == best_ranks(single, GT).tolist()
    assert torch.allclose(batch, single)
    stressed = stress_rescore(method, s, b, vb, **params)
    assert torch.allclose(batch, stressed)


@pytest.mark.parametrize(
    "method,params",
    [("dsl", {}), ("is", {"beta": 2.0}), ("csls", {"k": 2}), ("sinkhorn", {}),
     ("t2v2t", {"k": 3}), ("naive", {"k": 3}), ("qbnorm", {"beta": 2.0})],
)  # fmt: skip
def test_transductive_methods_move_with_the_other_queries(method: str, params: dict) -> None:
    g = torch.Generator().manual_seed(8)
    s = torch.randn(40, 30, generator=g, dtype=torch.float64)
    s[:, :3] += 1.5  # hubs: three videos score high for every text
    gt = [[t % 30] for t in range(40)]
    assert single_protocol(method, s, **params) is None  # nothing to normalise with
    batch = rescore(method, s, **params)
    alone = torch.cat([rescore(method, s[i : i + 1], **params) for i in range(40)])
    stressed = stress_rescore(method, s, **params)
    moved = (best_ranks(batch, gt) != best_ranks(alone, gt)).sum() + (
        best_ranks(batch, gt) != best_ranks(stressed, gt)
    ).sum()
    assert not torch.allclose(batch, stressed)
    assert moved > 0


def test_tune_keeps_the_grid_point_with_the_best_avg() -> None:
    from t2v2t.retrieval.metrics import summarize
    from t2v2t.retrieval.tune import tune

    g = torch.Generator().manual_seed(9)
    s = 3.0 * torch.eye(30, dtype=torch.float64) + torch.randn(30, 30, generator=g).double()
    s[:, :4] += 1.0
    bank = torch.randn(50, 30, generator=g).double() + torch.cat([torch.ones(4), torch.zeros(26)])
    gt = [[i] for i in range(30)]
    grids = {"is": {"beta": [20.0, 0.5, 2.0]}, "csls": {"k": [10, 1, 3]}}
    got = tune(s, gt, bank, grids=grids)
    for method, grid in grids.items():
        name, values = next(iter(grid.items()))
        avgs = [
            summarize(best_ranks(rescore(method, s, bank, **{name: x}), gt))["Avg"] for x in values
        ]
        assert got["params"][method] == {name: values[avgs.index(max(avgs))]}
        assert got["scores"][method]["Avg"] == max(avgs)
        assert got["scores"][method]["default_Avg"] == avgs[0]
