"""Figures of retrieval results, drawn onto a matplotlib ``Axes`` the caller owns.

One drawing of the recall@K curves serves both the HTML report (``html_report.py``) and the
demo report (``t2v2t/tools/plots.py``). Nothing here imports matplotlib: the caller picks the
backend and the figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from t2v2t.retrieval.fusion import FUSIONS
from t2v2t.retrieval.report import FUSION_LABELS
from t2v2t.retrieval.stats import bootstrap_interval

MAX_K = 50


def draw_recall_at_k(
    ax: Any, ranks: Mapping[str, np.ndarray], num_videos: int, *, resamples: int = 500
) -> None:
    """Text->video R@K for K = 1..min(50, num_videos) of each fusion (``ranks``: fusion -> the
    1-based rank of each query's best ground truth), with 95% bootstrap bands, against chance."""
    max_k = max(1, min(MAX_K, num_videos))
    ks = np.arange(1, max_k + 1)
    for name in FUSIONS:
        hits = (ranks[name][:, None] <= ks[None, :]).astype(float) * 100.0
        ax.plot(ks, hits.mean(axis=0), label=FUSION_LABELS[name])
        band = bootstrap_interval(hits, resamples=resamples)
        ax.fill_between(ks, band[:, 0], band[:, 1], alpha=0.15)
    ax.plot(ks, 100.0 * ks / num_videos, "k:", label="chance")
    ax.set_xscale("log")
    ticks = [k for k in (1, 2, 5, 10, 20, 50) if k <= max_k]
    ax.set_xticks(ticks, [str(k) for k in ticks])
    ax.set_xticks([], minor=True)
    ax.set_xlabel("K")
    ax.set_ylabel("R@K (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
