"""VindLU's score matrices and the three fusions.

Inputs are dense [num_texts, num_videos] tensors:

- ``m_t2v[t, v]``: the VTM logit m(t, v), valid where ``cand_t2v[t, v]`` (v in C_t);
- ``m_v2t[t, v]``: the same logit as seen by the video->text pass, valid where ``cand_v2t[t, v]``
  (t in C_v). With shared pairs it is the same tensor as ``m_t2v`` (the default); VindLU's two
  passes compute it separately.

Entries outside the candidate masks are never read (they may hold NaN). With ``rerank=False`` the
stage-1 similarity matrix plays the role of m and the candidate sets are still its top-k.

Fusions (each gives a text->video matrix [Nt, Nv] and a video->text matrix [Nv, Nt]):

- ``none``:  T2V, V2T — VindLU.
- ``naive``: T2V + V2T^T, the two -100-filled matrices summed as they are (same matrix for both
  directions).
- ``t2v2t``: for v in C_t, ``log softmax_{v' in C_t}(m(t,v')/tau)[v]
  + lam * log softmax_{t' in C_v + {t}}(m(t',v)/tau)[t]``; videos outside C_t get a floor value
  below every candidate score of the matrix. The video->text direction is the mirror image
  (V2T2V): for t in C_v, ``log softmax_{t' in C_v}[t] + lam * log softmax_{v' in C_t + {v}}[v]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FILL = -100.0  # VindLU's value for pairs outside the candidate set
FUSIONS = ("none", "naive", "t2v2t")


@dataclass
class Fused:
    t2v: torch.Tensor  # [num_texts, num_videos], higher = better
    v2t: torch.Tensor  # [num_videos, num_texts]


def vindlu_matrices(
    m_t2v: torch.Tensor,
    cand_t2v: torch.Tensor,
    cand_v2t: torch.Tensor,
    m_v2t: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """VindLU's ``T2V`` [Nt, Nv] and ``V2T`` [Nv, Nt]: m on the candidates, -100 elsewhere."""
    m_v2t = m_t2v if m_v2t is None else m_v2t
    fill = torch.tensor(FILL, dtype=m_t2v.dtype, device=m_t2v.device)
    t2v = torch.where(cand_t2v, m_t2v, fill)
    v2t = torch.where(cand_v2t, m_v2t, fill).T.contiguous()
    return t2v, v2t


def _masked_logsumexp(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    neg_inf = torch.tensor(float("-inf"), dtype=x.dtype, device=x.device)
    return torch.logsumexp(torch.where(mask, x, neg_inf), dim=dim)


def with_floor(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``scores`` on ``mask``, one value strictly below all of them elsewhere."""
    # One floor for the whole matrix, strictly below every candidate score: non-candidates rank
    # after all candidates (and among themselves by index, the metrics' tie rule).
    if not bool(mask.any()):
        raise ValueError("no candidate pairs: k must be >= 1")
    floor = scores[mask].min() - 1.0
    return torch.where(mask, scores, floor)


def t2v2t_matrices(
    m_t2v: torch.Tensor,
    cand_t2v: torch.Tensor,
    cand_v2t: torch.Tensor,
    m_v2t: torch.Tensor | None,
    *,
    tau: float,
    lam: float,
) -> Fused:
    """The T2V2T fusion (and its video->text mirror) exactly as the module docstring defines it."""
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    a = m_t2v / tau  # valid on cand_t2v
    b = (m_t2v if m_v2t is None else m_v2t) / tau  # valid on cand_v2t
    row_lse = _masked_logsumexp(a, cand_t2v, dim=1)[:, None]  # over v' in C_t
    col_lse = _masked_logsumexp(b, cand_v2t, dim=0)[None, :]  # over t' in C_v
    # log softmax over C_v + {t}: when t is already in C_v the set is C_v itself; otherwise t's own
    # logit (from the t->v pass) joins the normaliser.
    back = torch.where(cand_v2t, b - col_lse, a - torch.logaddexp(col_lse, a))
    t2v = with_floor((a - row_lse) + lam * back, cand_t2v)
    # Mirror image for video->text retrieval.
    fwd = torch.where(cand_t2v, a - row_lse, b - torch.logaddexp(row_lse, b))
    v2t = with_floor((b - col_lse) + lam * fwd, cand_v2t)
    return Fused(t2v=t2v, v2t=v2t.T.contiguous())


def fuse(
    fusion: str,
    m_t2v: torch.Tensor,
    cand_t2v: torch.Tensor,
    cand_v2t: torch.Tensor,
    m_v2t: torch.Tensor | None = None,
    *,
    tau: float = 1.0,
    lam: float = 1.0,
) -> Fused:
    """One fusion (``none``, ``naive`` or ``t2v2t``) of the pair logits."""
    if m_t2v.shape != cand_t2v.shape or cand_t2v.shape != cand_v2t.shape:
        raise ValueError(
            f"shape mismatch: m {tuple(m_t2v.shape)}, C_t mask {tuple(cand_t2v.shape)}, "
            f"C_v mask {tuple(cand_v2t.shape)} (all must be [num_texts, num_videos])"
        )
    if fusion == "none":
        t2v, v2t = vindlu_matrices(m_t2v, cand_t2v, cand_v2t, m_v2t)
        return Fused(t2v=t2v, v2t=v2t)
    if fusion == "naive":
        t2v, v2t = vindlu_matrices(m_t2v, cand_t2v, cand_v2t, m_v2t)
        summed = t2v + v2t.T
        return Fused(t2v=summed, v2t=summed.T.contiguous())
    if fusion == "t2v2t":
        return t2v2t_matrices(m_t2v, cand_t2v, cand_v2t, m_v2t, tau=tau, lam=lam)
    raise ValueError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")


def fuse_all(
    *pair_logits: torch.Tensor | None, tau: float = 1.0, lam: float = 1.0
) -> dict[str, Fused]:
    """All three fusions of the same pair logits, keyed by name.

    ``pair_logits`` are :func:`fuse`'s ``m_t2v, cand_t2v, cand_v2t[, m_v2t]``.
    """
    return {f: fuse(f, *pair_logits, tau=tau, lam=lam) for f in FUSIONS}


def topk_mask(scores: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Boolean mask of the top-k entries along ``dim`` (ties: lower index first, as the metrics)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, scores.shape[dim])
    # A stable descending sort: deterministic on every device, unlike topk's tie order.
    order = torch.sort(scores, dim=dim, descending=True, stable=True).indices.narrow(dim, 0, k)
    mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    return mask.scatter_(dim, order, True)


def candidate_masks(sims: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cand_t2v, cand_v2t)`` from stage-1 sims [Nt, Nv]: v in C_t, and t in C_v."""
    return topk_mask(sims, k, dim=1), topk_mask(sims, k, dim=0)
