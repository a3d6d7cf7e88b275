"""The post-hoc methods over stage 2's re-ranked candidate logits (docs/evaluation.md, "Which
fusion?", "On the re-ranked logits").

Stage 2 scores only the candidate pairs ``P = C_t ∪ C_v`` with the VTM head, so its matrix
``R`` is defined on ``P`` alone. Each method that needs nothing beyond ``R`` runs there: every
normalisation over texts runs over the texts a video has a logit with (``{t' : (t', v) in P}``),
every one over videos over the text's candidates ``C_t``, and a text ranks its candidates ``C_t``
by the result; the other videos come after them (one floor below every candidate, as the
fusions do). ``naive`` and ``t2v2t`` are the fusions themselves (:mod:`t2v2t.retrieval.fusion`).
The bank methods need the bank captions' (and videos') VTM logits against the test set, which
stage 2 does not compute: they are listed as not applicable, with that reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from t2v2t.retrieval.compare import DIRECTIONS
from t2v2t.retrieval.fusion import fuse, with_floor
from t2v2t.retrieval.metrics import direction_ranks, summarize
from t2v2t.retrieval.posthoc import METHODS, TRANSDUCTIVE, resolve_params
from t2v2t.retrieval.stats import RESAMPLES, add_holm, fusion_statistics

ON_CANDIDATES = ("none", "dsl", "is", "qbnorm", "csls", "sinkhorn")
FUSED = ("naive", "t2v2t")  # the fusions: already on the re-ranked logits
NOT_APPLICABLE = {
    "dbnorm": "needs VTM logits of bank captions and bank videos against the test set "
    "(stage 2 scores test pairs only)",
    "t2v2t_bank": "needs VTM logits of each video's best bank captions (stage 2 scores test "
    "pairs only)",
}


def _masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, x, torch.tensor(float("-inf"), dtype=x.dtype, device=x.device))


def _top_mean(x: torch.Tensor, mask: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Mean of the ``k`` best valid entries along ``dim`` (fewer when fewer are valid)."""
    top = _masked(x, mask).topk(min(k, x.shape[dim]), dim=dim).values
    ok = torch.isfinite(top)
    return torch.where(ok, top, 0.0).sum(dim) / ok.sum(dim).clamp(min=1)


def _normalised(method: str, r: torch.Tensor, valid: torch.Tensor, cand: torch.Tensor, p):
    if method == "none":
        return r
    if method == "dsl":
        return r * torch.softmax(_masked(r / p["tau"], valid), dim=0)
    if method in ("is", "qbnorm"):
        # qbnorm's activation set is the test rows' top-k videos here: it holds every query's own
        # top 1, so every query is normalised and qbnorm equals is.
        return p["beta"] * r - torch.logsumexp(_masked(p["beta"] * r, valid), dim=0)
    if method == "csls":
        r_v = _top_mean(r, cand, p["k"], dim=1)[:, None]  # the text's k best candidates
        r_t = _top_mean(r, valid, p["k"], dim=0)[None, :]  # the video's k best scored texts
        return 2 * r - r_v - r_t
    if method == "sinkhorn":
        log_p = _masked(r / p["eps"], valid)
        for _ in range(p["iters"]):  # rows, then columns, scaled to sum 1 over P
            log_p = log_p - torch.logsumexp(log_p, dim=1, keepdim=True)
            log_p = log_p - torch.logsumexp(log_p, dim=0, keepdim=True)
        return log_p
    raise ValueError(f"{method} does not run on the re-ranked logits")


def rescore_reranked(
    method: str,
    m: torch.Tensor,
    cand: torch.Tensor,
    other: torch.Tensor,
    **params: float,
) -> torch.Tensor:
    """``method``'s ranking scores [queries, gallery] from the re-ranked logits ``m`` (valid on
    ``cand | other``; anything, NaN included, elsewhere). ``cand``: each query's candidates
    (text->video: C_t); ``other``: the gallery side's (C_v as a [texts, videos] mask). For
    video->text pass the transposes. One of :data:`ON_CANDIDATES`."""
    if method not in ON_CANDIDATES:
        raise ValueError(f"{method}: not one of {', '.join(ON_CANDIDATES)} on re-ranked logits")
    p = resolve_params(method, params)
    valid = cand | other
    r = torch.where(valid, m, torch.zeros((), dtype=m.dtype, device=m.device))
    out = _normalised(method, r, valid, cand, p)
    return with_floor(torch.where(cand, out, torch.zeros_like(out)), cand)


def direction_scores(
    method: str,
    direction: str,
    m_t2v: torch.Tensor,
    m_v2t: torch.Tensor,
    cand_t2v: torch.Tensor,
    cand_v2t: torch.Tensor,
    params: Mapping[str, float],
) -> torch.Tensor:
    """One method's scores for one direction ([texts, videos] or [videos, texts])."""
    if method in FUSED:
        fused = fuse(method, m_t2v, cand_t2v, cand_v2t, m_v2t, **dict(params))  # type: ignore[arg-type]
        return fused.t2v if direction == "t2v" else fused.v2t
    # One matrix: each pair's logit from the pass that scored it (the same with shared pairs).
    m = torch.where(cand_t2v, m_t2v, m_v2t)
    if direction == "t2v":
        return rescore_reranked(method, m, cand_t2v, cand_v2t, **params)
    return rescore_reranked(method, m.T, cand_v2t.T, cand_t2v.T, **params)


def compare_reranked(
    m_t2v: torch.Tensor,
    m_v2t: torch.Tensor,
    cand_t2v: torch.Tensor,
    cand_v2t: torch.Tensor,
    gt: Sequence[Sequence[int]],
    params: Mapping[str, Mapping[str, float]] | None = None,
    *,
    tau: float = 1.0,
    lam: float = 1.0,
    resamples: int = RESAMPLES,
) -> dict[str, Any]:
    """Every method on the re-ranked logits, both directions, in the rows format of
    :func:`t2v2t.retrieval.compare.compare` (label, metrics, interval, vs_none with Holm p; the
    bank methods ``skipped`` with the reason). All are transductive but ``none``; the single
    protocol would leave ``none`` alone, so only ``batch`` is given. ``naive`` and ``t2v2t`` are
    the evaluation's own fusions (its ``tau``, ``lam`` and candidates), so their rows equal the
    fusion table's."""
    out: dict[str, Any] = {"protocols": {"batch": {}}, "params": {}}
    for m in METHODS:
        if m in FUSED:
            out["params"][m] = {"tau": float(tau), "lam": float(lam)} if m == "t2v2t" else {}
        elif m in ON_CANDIDATES:
            out["params"][m] = resolve_params(m, (params or {}).get(m, {}))
    for direction in DIRECTIONS:
        rows: dict[str, Any] = {}
        ranks: dict[str, np.ndarray] = {}
        for m in METHODS:
            row: dict[str, Any] = {"label": "inductive" if m == "none" else TRANSDUCTIVE}
            if m in NOT_APPLICABLE:
                row = {"label": "not applicable", "skipped": NOT_APPLICABLE[m]}
            else:
                s = direction_scores(
                    m, direction, m_t2v, m_v2t, cand_t2v, cand_v2t, out["params"][m]
                )
                ranks[m] = direction_ranks(direction, s, gt)
                row["metrics"] = summarize(ranks[m])
            rows[m] = row
        stats = fusion_statistics(ranks, resamples=resamples)
        add_holm(stats["paired"])
        for m in ranks:
            rows[m]["interval"] = stats["intervals"][m]
            rows[m]["vs_none"] = stats["paired"].get(m)
        out["protocols"]["batch"][direction] = rows
    return out
