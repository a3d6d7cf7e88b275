"""Post-hoc score normalisations of a [texts, videos] score matrix, side by side.

:func:`rescore` turns any retriever's scores ``S`` into the scores one method ranks by (higher =
better; text->video: each row is ranked). ``U``, the normalising texts, are the bank's rows when a
bank is given, else the rows of ``S`` (the test queries themselves). docs/evaluation.md ("Which
fusion?") gives each formula, its reference and its default parameters.

Every method carries a label (:func:`label`): **inductive** when a query's scores depend on that
query and on training data only, **transductive** when they use the other test queries. An
inductive method is split into a *fit* on the bank and an *apply* to query rows, so the ``single``
protocol (one query at a time, as a search engine sees it) runs the same fitted state row by row
(:func:`single_protocol`); a transductive method has nothing to normalise with there.

Log-domain outputs: ``is``, ``qbnorm`` (its normalised rows), ``dbnorm`` and ``sinkhorn`` return the
log of the normalised score; ``exp`` of it is the probability-domain value the papers print, and
the ranking is the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from t2v2t.retrieval.fusion import FILL, candidate_masks, fuse, topk_mask

METHODS = (
    "none", "naive", "dsl", "is", "qbnorm", "csls", "sinkhorn", "dbnorm", "t2v2t", "t2v2t_bank",
)  # fmt: skip
INDUCTIVE, TRANSDUCTIVE = "inductive", "transductive"
# Defaults from each method's paper or reference code (docs/evaluation.md, "Which fusion?").
DEFAULTS: dict[str, dict[str, float]] = {
    "none": {},
    "naive": {"k": 128},  # this project's candidate count (docs/architecture.md)
    "dsl": {"tau": 1.0},  # InternVideo2's evaluation: softmax of the score matrix as it is
    "is": {"beta": 20.0},  # QB-Norm's inverse temperature
    "qbnorm": {"beta": 20.0, "k": 1},  # QB-Norm's reference code: beta 20, k 1
    "csls": {"k": 10},  # Conneau et al. 2018
    "sinkhorn": {"eps": 1.0, "iters": 10},  # Sinkhorn layers' usual tau 1, 10 iterations
    "dbnorm": {"beta": 20.0},  # the inverted softmax's beta on both banks
    "t2v2t": {"tau": 1.0, "lam": 1.0, "k": 128},  # the paper's
    "t2v2t_bank": {"tau": 1.0, "lam": 1.0, "k": 128},
}
INTEGER_PARAMS = ("k", "iters")
_BANK_OPTIONAL = ("is", "qbnorm", "csls")  # inductive with a bank, transductive without
_BANK_REQUIRED = ("dbnorm", "t2v2t_bank")
_WHOLE_MATRIX = ("naive", "dsl", "sinkhorn", "t2v2t")  # always transductive


def label(method: str, bank: bool) -> str:
    """``inductive`` or ``transductive`` for ``method`` run with (``bank``) or without a bank."""
    check_method(method)
    if method == "none" or method in _BANK_REQUIRED:
        return INDUCTIVE
    if method in _BANK_OPTIONAL and bank:
        return INDUCTIVE
    return TRANSDUCTIVE


def uses_bank(method: str) -> bool:
    return method in _BANK_OPTIONAL or method in _BANK_REQUIRED


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def resolve_params(method: str, params: Mapping[str, Any]) -> dict[str, float]:
    """The method's defaults with ``params`` over them; unknown names and bad values refused."""
    check_method(method)
    allowed = DEFAULTS[method]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        names = ", ".join(allowed) or "none"
        raise ValueError(f"{method}: unknown parameter(s) {unknown}; it takes {names}")
    out = {**allowed, **params}
    for name, value in out.items():
        if name in INTEGER_PARAMS:
            if int(value) != value or value < 1:
                raise ValueError(f"{method}: {name} must be an integer >= 1, got {value}")
            out[name] = int(value)
        elif name != "lam" and not value > 0:
            raise ValueError(f"{method}: {name} must be > 0, got {value}")
    return out


# -- fit (on the normalising rows U) and apply (to query rows) for the row-wise methods -------------
def _col_lse(u: torch.Tensor, beta: float) -> torch.Tensor:
    return torch.logsumexp(beta * u, dim=0)  # [Nv]: log sum_u exp(beta U[u, v])


def _top_mean(x: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    return x.topk(min(k, x.shape[dim]), dim=dim).values.mean(dim=dim)


def _fit(method: str, u: torch.Tensor, p: Mapping[str, float]) -> dict[str, torch.Tensor]:
    if method in ("is", "dbnorm"):
        return {"lse": _col_lse(u, p["beta"])}
    if method == "qbnorm":
        # Activation set: the videos some bank query retrieves in its top k (QB-Norm's rule).
        top = torch.sort(u, dim=1, descending=True, stable=True).indices[:, : p["k"]]
        active = torch.zeros(u.shape[1], dtype=torch.bool, device=u.device)
        active[top.reshape(-1)] = True
        return {"lse": _col_lse(u, p["beta"]), "active": active}
    if method == "csls":
        return {"r_t": _top_mean(u, p["k"], dim=0)}  # r_T(v): mean of v's k best texts in U
    if method == "t2v2t_bank":
        # log sum over C^B_v (v's k best bank captions) of exp(B[u, v] / tau).
        vals = u.topk(min(p["k"], u.shape[0]), dim=0).values / p["tau"]
        return {"lse": torch.logsumexp(vals, dim=0)}
    return {}


def _apply(
    method: str,
    s: torch.Tensor,
    state: Mapping[str, torch.Tensor],
    p: Mapping[str, float],
    vb: torch.Tensor | None,
) -> torch.Tensor:
    """Scores of query rows ``s`` [n, Nv]; ``vb`` [bank videos, n] their video-bank columns."""
    if method == "none":
        return s.clone()
    if method == "is":
        return p["beta"] * s - state["lse"]
    if method == "qbnorm":
        own_top = torch.sort(s, dim=1, descending=True, stable=True).indices[:, 0]
        normalised = state["active"][own_top]  # queries whose own top-1 is in the set
        return torch.where(normalised[:, None], p["beta"] * s - state["lse"], s)
    if method == "csls":
        return 2 * s - _top_mean(s, p["k"], dim=1)[:, None] - state["r_t"]
    if method == "dbnorm":
        # Product of the two inverted softmaxes, in the log domain.
        assert vb is not None
        return 2 * p["beta"] * s - state["lse"] - _col_lse(vb, p["beta"])[:, None]
    if method == "t2v2t_bank":
        return _t2v2t_bank_rows(s, state["lse"], p)
    raise AssertionError(method)


def _t2v2t_bank_rows(s: torch.Tensor, lse_bank: torch.Tensor, p: Mapping[str, float]):
    """T2V2T whose video->text softmax runs over C^B_v (the bank's captions) plus the query."""
    a = s / p["tau"]
    cand = topk_mask(s, p["k"], dim=1)  # C_t among the test videos: the query's own row
    neg_inf = torch.tensor(float("-inf"), dtype=a.dtype, device=a.device)
    row_lse = torch.logsumexp(torch.where(cand, a, neg_inf), dim=1, keepdim=True)
    back = a - torch.logaddexp(lse_bank[None, :], a)
    out = (a - row_lse) + p["lam"] * back
    # Below every candidate of its own row: the row's ranking needs nothing from other rows.
    floor = torch.where(cand, out, torch.inf).amin(dim=1, keepdim=True) - 1.0
    return torch.where(cand, out, floor)


# -- the whole-matrix (transductive) methods --------------------------------------------------------
def _whole(method: str, s: torch.Tensor, p: Mapping[str, float]) -> torch.Tensor:
    if method == "dsl":
        return s * torch.softmax(s / p["tau"], dim=0)  # softmax over the test texts
    if method == "sinkhorn":
        log_p = s / p["eps"]
        for _ in range(p["iters"]):  # rows, then columns, scaled to sum 1
            log_p = log_p - torch.logsumexp(log_p, dim=1, keepdim=True)
            log_p = log_p - torch.logsumexp(log_p, dim=0, keepdim=True)
        return log_p
    cand_t, cand_v = candidate_masks(s, p["k"])
    if method == "naive":
        fill = torch.tensor(FILL, dtype=s.dtype, device=s.device)
        return torch.where(cand_t, s, fill) + torch.where(cand_v, s, fill)
    return fuse("t2v2t", s, cand_t, cand_v, tau=p["tau"], lam=p["lam"]).t2v


def _as_matrix(name: str, x: Any, cols: int | None = None) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.ndim != 2 or not t.is_floating_point():
        raise ValueError(f"{name} must be a 2-d float matrix, got {tuple(t.shape)} {t.dtype}")
    if cols is not None and t.shape[1] != cols:
        raise ValueError(f"{name} has shape {tuple(t.shape)}: it needs {cols} columns")
    if bool(torch.isnan(t).any()):
        raise ValueError(f"{name} {tuple(t.shape)} holds NaN")
    return t


def _checked(method, sims, bank, video_bank):
    check_method(method)
    s = _as_matrix("sims", sims)
    b = None if bank is None else _as_matrix("bank", bank, s.shape[1]).to(s)
    vb = None if video_bank is None else _as_matrix("video_bank", video_bank, s.shape[0]).to(s)
    if method in _BANK_REQUIRED and b is None:
        raise ValueError(f"{method} needs a bank of training captions (bank=)")
    if method == "dbnorm" and vb is None:
        raise ValueError("dbnorm needs a bank of training videos (video_bank=)")
    return s, b, vb


@dataclass
class Fitted:
    """An inductive method fitted on its bank: ``apply(rows, video_bank_cols)`` scores queries."""

    method: str
    params: dict[str, float]
    state: dict[str, torch.Tensor]

    def apply(self, rows: torch.Tensor, vb: torch.Tensor | None = None) -> torch.Tensor:
        return _apply(self.method, rows, self.state, self.params, vb)


def fit(method: str, bank: torch.Tensor | None, **params: float) -> Fitted:
    """``method`` fitted on ``bank`` alone (no test query seen); for the ``single`` protocol."""
    p = resolve_params(method, params)
    if label(method, bank is not None) != INDUCTIVE:
        raise ValueError(f"{method} is transductive without a bank: it cannot be fitted on one")
    state = {} if bank is None else _fit(method, _as_matrix("bank", bank), p)
    return Fitted(method, p, state)


def rescore(
    method: str,
    sims: torch.Tensor,
    bank: torch.Tensor | None = None,
    video_bank: torch.Tensor | None = None,
    **params: float,
) -> torch.Tensor:
    """``method``'s scores [texts, videos] for the stage-1 (or any) score matrix ``sims``.

    ``bank`` [bank texts, videos]: training captions' scores against the same videos (used by
    is, qbnorm, csls, dbnorm, t2v2t_bank; ignored by the others). ``video_bank`` [bank videos,
    texts]: training videos' scores against the test texts (dbnorm). Parameters: ``tau``, ``lam``,
    ``beta``, ``k``, ``eps``, ``iters`` as the method takes them (:data:`DEFAULTS`).
    """
    s, b, vb = _checked(method, sims, bank, video_bank)
    p = resolve_params(method, params)
    if method in _WHOLE_MATRIX:
        return _whole(method, s, p)
    u = b if (b is not None and uses_bank(method)) else s
    return _apply(method, s, _fit(method, u, p), p, vb)


def single_protocol(
    method: str,
    sims: torch.Tensor,
    bank: torch.Tensor | None = None,
    video_bank: torch.Tensor | None = None,
    **params: float,
) -> torch.Tensor | None:
    """Each query scored on its own with the bank alone; ``None`` for a transductive method
    (with no other queries it has nothing to normalise with)."""
    s, b, vb = _checked(method, sims, bank, video_bank)
    if label(method, b is not None) != INDUCTIVE:
        return None
    fitted = fit(method, b if uses_bank(method) else None, **params)
    rows = [
        fitted.apply(s[i : i + 1], None if vb is None else vb[:, i : i + 1])
        for i in range(s.shape[0])
    ]
    return torch.cat(rows) if rows else s.clone()


def duplicated(sims: torch.Tensor, times: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """The stress test's matrix: every query repeated ``times`` times; and the rows of the
    originals in it."""
    rows = torch.arange(sims.shape[0]) * times
    return sims.repeat_interleave(times, dim=0), rows


def stress_rescore(
    method: str,
    sims: torch.Tensor,
    bank: torch.Tensor | None = None,
    video_bank: torch.Tensor | None = None,
    times: int = 10,
    **params: float,
) -> torch.Tensor:
    """``method``'s scores of the original queries when each test query appears ``times`` times."""
    dup, rows = duplicated(torch.as_tensor(sims), times)
    vb = None if video_bank is None else torch.as_tensor(video_bank).repeat_interleave(times, 1)
    return rescore(method, dup, bank, vb, **params)[rows]
