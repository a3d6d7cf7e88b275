"""Retrieval metrics from a score matrix: R@1/5/10, their mean (the paper's "Avg"), MdR, MnR.

Ranking rule (deterministic, documented): candidates are sorted by score, highest first; among
equal scores the lower index ranks first (a stable sort of the negated scores). Ranks are 1-based.
A query with several ground-truth items counts its best-ranked one. Queries without any ground
truth (a video no text describes) are left out of the video->text figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Union

import numpy as np

if TYPE_CHECKING:  # only for the annotations: the metrics themselves run on numpy
    import torch

Scores = Union[np.ndarray, "torch.Tensor"]  # a [queries, items] score matrix

RECALL_AT = (1, 5, 10)
ROW_CHUNK = 1024  # rows ranked at a time: bounds the int64 rank buffer on large matrices


def _as_numpy(scores: Scores) -> np.ndarray:
    if hasattr(scores, "detach"):  # a torch tensor, on any device
        scores = scores.detach().float().cpu().numpy()
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-d matrix [queries, items], got shape {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN: every (query, item) needs a score to be ranked")
    return scores


def best_ranks(scores: Scores, targets: Sequence[Sequence[int]]) -> np.ndarray:
    """1-based rank of each query's best-ranked target item (ties: lower index first).

    ``scores``: [num_queries, num_items]; ``targets[q]``: the item indices that are correct for
    query q (at least one each).
    """
    scores = _as_numpy(scores)
    num_q, num_items = scores.shape
    if len(targets) != num_q:
        raise ValueError(f"{len(targets)} target lists for {num_q} score rows")
    out = np.empty(num_q, dtype=np.int64)
    positions = np.arange(num_items, dtype=np.int64)
    for start in range(0, num_q, ROW_CHUNK):
        block = scores[start : start + ROW_CHUNK]
        # Stable sort of -score: highest first, equal scores keep index order.
        order = np.argsort(-block, axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, positions[None, :].repeat(len(block), 0), axis=1)
        for row in range(len(block)):
            q = start + row
            tgt = np.asarray(targets[q], dtype=np.int64)
            if tgt.size == 0:
                raise ValueError(f"query {q} has no ground-truth item")
            if tgt.min() < 0 or tgt.max() >= num_items:
                raise ValueError(f"query {q}: ground-truth index out of range [0, {num_items})")
            out[q] = rank[row, tgt].min() + 1
    return out


def summarize(ranks: np.ndarray) -> dict[str, float]:
    """R@1/5/10 in percent, Avg = their mean, MdR (median rank), MnR (mean rank)."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("no queries to summarise")
    recalls = {f"R{k}": 100.0 * float(np.mean(ranks <= k)) for k in RECALL_AT}
    out = dict(recalls)
    out["Avg"] = float(np.mean(list(recalls.values())))
    out["MdR"] = float(np.median(ranks))
    out["MnR"] = float(np.mean(ranks))
    # Rounded for readable JSON; 1e-6 is far below any reported digit.
    return {key: round(val, 6) for key, val in out.items()}


def video_targets(gt: Sequence[Sequence[int]], num_videos: int) -> list[list[int]]:
    """Invert text->videos ground truth: for each video, the texts whose GT includes it."""
    out: list[list[int]] = [[] for _ in range(num_videos)]
    for t, vids in enumerate(gt):
        for v in vids:
            out[int(v)].append(t)
    return out


def direction_ranks(direction: str, scores: Scores, gt: Sequence[Sequence[int]]) -> np.ndarray:
    """Each query's best ground-truth rank: ``t2v`` scores are [texts, videos]; ``v2t`` scores
    are [videos, texts] and only videos that some text names are queries."""
    if direction == "t2v":
        return best_ranks(scores, gt)
    per_video = video_targets(gt, scores.shape[0])
    keep = [v for v, texts in enumerate(per_video) if texts]
    return best_ranks(scores[keep], [per_video[v] for v in keep])


def t2v_metrics(scores: Scores, gt: Sequence[Sequence[int]]) -> dict[str, float]:
    """Text->video metrics; ``scores`` [num_texts, num_videos], ``gt[t]`` = t's video indices."""
    return summarize(best_ranks(scores, gt))


def v2t_metrics(scores: Scores, gt: Sequence[Sequence[int]]) -> dict[str, float]:
    """Video->text metrics; ``scores`` [num_videos, num_texts], ``gt`` as for t2v (text->videos).

    A video's rank is that of its best-ranked text among those whose GT includes it; videos no
    text describes are skipped.
    """
    scores = _as_numpy(scores)
    per_video = video_targets(gt, scores.shape[0])
    keep = [v for v, texts in enumerate(per_video) if texts]
    return summarize(best_ranks(scores[keep], [per_video[v] for v in keep]))


def retrieval_metrics(
    t2v: Scores, v2t: Scores, gt: Sequence[Sequence[int]]
) -> dict[str, dict[str, float]]:
    """Both directions: ``{"t2v": {...}, "v2t": {...}}``."""
    return {"t2v": t2v_metrics(t2v, gt), "v2t": v2t_metrics(v2t, gt)}
