"""Stage 2: VTM re-ranking of the stage-1 candidates, each (text, video) pair computed once.

The scorer is any callable ``pair_fn(text_idx [P], video_idx [P]) -> logits [P]`` (row i scores
text ``text_idx[i]`` with video ``video_idx[i]``); :class:`ModelPairScorer` wraps a model's
``vtm_logits`` over stored text and video embeddings.

- :func:`rerank_shared` (this project): the union ``C_t ∪ C_v`` of candidate pairs, sorted by video
  so a chunk moves each video's embeddings once, scored in bounded chunks. Under
  ``torch.distributed`` the pairs are split across ranks (by owned video when the caller says
  which videos a rank holds, else in equal contiguous blocks) and gathered, so every rank ends with
  the same matrix as one process.
- :func:`rerank_two_pass` (VindLU's way, the baseline): a t->v loop (each text with its k
  videos) then a v->t loop (each video with its k texts); a pair in both sets is computed twice.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from t2v2t.dist import all_gather_objects, group_rank_world
from t2v2t.progress import progress
from t2v2t.retrieval.preprocess import autocast_for

PairFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PAIR_BATCH = 128  # pairs per vtm_logits call: VindLU's k, and bounded activation memory


@dataclass
class RerankResult:
    """Pair logits as dense [num_texts, num_videos] matrices (NaN where not computed)."""

    m_t2v: torch.Tensor  # valid on cand_t2v
    m_v2t: torch.Tensor  # valid on cand_v2t; the same tensor as m_t2v for shared pairs
    cand_t2v: torch.Tensor
    cand_v2t: torch.Tensor
    pair_evaluations: int  # VTM pair evaluations, all ranks together
    seconds: float


def shared_pairs(
    cand_t2v: torch.Tensor, cand_v2t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(text_idx, video_idx)`` of every pair in C_t ∪ C_v, sorted by video then text."""
    union = (cand_t2v | cand_v2t).T  # [Nv, Nt]: nonzero() walks it video-major
    vt = torch.nonzero(union).cpu()
    return vt[:, 1].contiguous(), vt[:, 0].contiguous()


def score_pairs(
    pair_fn: PairFn,
    text_idx: torch.Tensor,
    video_idx: torch.Tensor,
    *,
    pair_batch: int = PAIR_BATCH,
) -> torch.Tensor:
    """Scores of the given pairs in chunks of ``pair_batch``; float32 on the CPU."""
    if pair_batch < 1:
        raise ValueError(f"pair_batch must be >= 1, got {pair_batch}")
    out = torch.empty(len(text_idx), dtype=torch.float32)
    starts = range(0, len(text_idx), pair_batch)
    for start in progress(starts, desc="eval: re-rank pairs", unit="chunk"):
        sl = slice(start, start + pair_batch)
        out[sl] = pair_fn(text_idx[sl], video_idx[sl]).detach().float().cpu()
    return out


def _gather_pairs(
    parts: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gathered = all_gather_objects(parts)
    if len(gathered) == 1:
        return parts
    return tuple(torch.cat([g[i] for g in gathered]) for i in range(3))  # type: ignore[return-value]


def rerank_shared(
    pair_fn: PairFn,
    cand_t2v: torch.Tensor,
    cand_v2t: torch.Tensor,
    *,
    pair_batch: int = PAIR_BATCH,
    owned_videos: torch.Tensor | None = None,
) -> RerankResult:
    """Score every pair of ``C_t ∪ C_v`` once (this rank's share), gather, fill the matrix.

    ``owned_videos``: bool [Nv], the videos whose embeddings this rank holds (distributed
    evaluation); the rank scores exactly the pairs of those videos. ``None``: pairs are split in
    equal contiguous blocks (``pair_fn`` must then score any pair).
    """
    start = time.perf_counter()
    nt, nv = cand_t2v.shape
    text_idx, video_idx = shared_pairs(cand_t2v, cand_v2t)
    rank, world = group_rank_world()
    if owned_videos is not None:
        keep = owned_videos.cpu()[video_idx]
        text_idx, video_idx = text_idx[keep], video_idx[keep]
    elif world > 1:
        bounds = torch.linspace(0, len(text_idx), world + 1).long()
        sl = slice(int(bounds[rank]), int(bounds[rank + 1]))
        text_idx, video_idx = text_idx[sl], video_idx[sl]
    logits = score_pairs(pair_fn, text_idx, video_idx, pair_batch=pair_batch)
    text_idx, video_idx, logits = _gather_pairs((text_idx, video_idx, logits))
    m = torch.full((nt, nv), float("nan"), dtype=torch.float32)
    m[text_idx, video_idx] = logits
    device = cand_t2v.device
    m = m.to(device)
    return RerankResult(
        m_t2v=m,
        m_v2t=m,
        cand_t2v=cand_t2v,
        cand_v2t=cand_v2t,
        pair_evaluations=len(logits),
        seconds=time.perf_counter() - start,
    )


def rerank_two_pass(
    pair_fn: PairFn, cand_t2v: torch.Tensor, cand_v2t: torch.Tensor
) -> RerankResult:
    """VindLU's two separate passes, one query per ``pair_fn`` call (single process only)."""
    if group_rank_world()[1] > 1:
        raise RuntimeError("the two-pass baseline runs in one process; launch without torchrun")
    start = time.perf_counter()
    nt, nv = cand_t2v.shape
    a, b = cand_t2v.cpu(), cand_v2t.cpu()
    m_t2v = torch.full((nt, nv), float("nan"), dtype=torch.float32)
    m_v2t = torch.full((nt, nv), float("nan"), dtype=torch.float32)
    count = 0
    for t in progress(
        range(nt), desc="eval: re-rank t2v", unit="text"
    ):  # text -> video: text t with each of its k candidate videos
        vids = torch.nonzero(a[t]).flatten()
        m_t2v[t, vids] = pair_fn(torch.full_like(vids, t), vids).detach().float().cpu()
        count += len(vids)
    for v in progress(
        range(nv), desc="eval: re-rank v2t", unit="video"
    ):  # video -> text: video v with each of its k candidate texts
        txts = torch.nonzero(b[:, v]).flatten()
        m_v2t[txts, v] = pair_fn(txts, torch.full_like(txts, v)).detach().float().cpu()
        count += len(txts)
    device = cand_t2v.device
    return RerankResult(
        m_t2v=m_t2v.to(device),
        m_v2t=m_v2t.to(device),
        cand_t2v=cand_t2v,
        cand_v2t=cand_v2t,
        pair_evaluations=count,
        seconds=time.perf_counter() - start,
    )


class ModelPairScorer:
    """``pair_fn`` over a model's ``vtm_logits`` and stored embeddings.

    ``text_embeds`` [Nt, L, D] and ``text_mask`` [Nt, L] cover every text; ``video_embeds``
    [n, T*(N+1), Dv] holds the videos this process encoded, ``video_rows`` [Nv] maps a global
    video index to its row there (-1: not held here). Embeddings may live on the CPU; each call
    moves only the chunk's texts and each distinct video once, and (``share_video_kv``, when the
    model's ``vtm_logits`` accepts ``video_index``) computes each distinct video's keys/values once.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        text_embeds: torch.Tensor,
        text_mask: torch.Tensor,
        video_embeds: torch.Tensor,
        video_rows: torch.Tensor | None = None,
        *,
        device: str | torch.device = "cpu",
        share_video_kv: bool = True,
        preprocess: str = "project",
    ) -> None:
        self.model = model
        # Models whose vtm_logits takes video_index project each distinct video's cross-attention
        # keys/values once per call; shared pairs are sorted by video, so a chunk holds few videos.
        # VindLU's baseline repeats the video embeddings per pair (share_video_kv=False).
        params = inspect.signature(model.vtm_logits).parameters
        self.share_video_kv = share_video_kv and "video_index" in params
        self.text_embeds, self.text_mask = text_embeds, text_mask
        self.video_embeds = video_embeds
        self.video_rows = (
            torch.arange(len(video_embeds)) if video_rows is None else video_rows.cpu().long()
        )
        self.device = torch.device(device)
        self.preprocess = preprocess  # CUDA autocast: bf16 (project) or fp16 (VindLU's eval)
        self.calls = 0
        self.pairs = 0

    def __call__(self, text_idx: torch.Tensor, video_idx: torch.Tensor) -> torch.Tensor:
        unique, inverse = torch.unique(video_idx.cpu(), return_inverse=True)
        rows = self.video_rows[unique]
        if bool((rows < 0).any()):
            missing = unique[rows < 0][:5].tolist()
            raise RuntimeError(f"videos {missing} are not held by this process; cannot score them")
        dev = self.device
        videos = self.video_embeds[rows.to(self.video_embeds.device)].to(dev, non_blocking=True)
        t_idx = text_idx.to(self.text_embeds.device)
        texts = self.text_embeds[t_idx].to(dev, non_blocking=True)
        mask = self.text_mask[t_idx.to(self.text_mask.device)].to(dev, non_blocking=True)
        with torch.inference_mode(), autocast_for(dev, self.preprocess):
            if self.share_video_kv:
                logits = self.model.vtm_logits(texts, mask, videos, video_index=inverse.to(dev))
            else:
                logits = self.model.vtm_logits(texts, mask, videos[inverse.to(dev)])
        self.calls += 1
        self.pairs += len(text_idx)
        return logits.float()
