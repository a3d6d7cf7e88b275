"""Fair hyperparameters for the post-hoc methods: a grid search on training data only.

:func:`tune` scores each method's grid on held-out *training* captions (queries) against their
training videos, with a bank of the other training captions, and keeps the best text->video Avg
(R@1/5/10 mean; ties keep the earlier grid point, the paper's default first).
``make tune-fusion`` writes the result as ``fusion_params.json``, which ``eval.fusion_params=``
reads (docs/evaluation.md, "Which fusion?"). The reported split is never used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import product
from typing import Any

import torch

from t2v2t.retrieval.metrics import best_ranks, summarize
from t2v2t.retrieval.posthoc import DEFAULTS, rescore, uses_bank

# Each grid starts with the method's default, so a tie keeps it.
GRIDS: dict[str, dict[str, list[float]]] = {
    "dsl": {"tau": [1.0, 0.25, 0.5, 2.0, 4.0]},
    "is": {"beta": [20.0, 0.5, 1.0, 2.0, 5.0, 10.0]},
    "qbnorm": {"beta": [20.0, 0.5, 1.0, 2.0, 5.0, 10.0], "k": [1, 2, 5]},
    "csls": {"k": [10, 1, 5, 20]},
    "sinkhorn": {"eps": [1.0, 0.5, 2.0, 4.0], "iters": [10, 1, 3]},
    "t2v2t": {"tau": [1.0, 0.5, 2.0], "lam": [1.0, 0.5, 2.0]},
    "t2v2t_bank": {"tau": [1.0, 0.5, 2.0], "lam": [1.0, 0.5, 2.0]},
}


def grid_points(grid: Mapping[str, Sequence[float]]) -> list[dict[str, float]]:
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in product(*grid.values())]


def tune(
    sims: torch.Tensor,
    gt: Sequence[Sequence[int]],
    bank: torch.Tensor | None,
    *,
    grids: Mapping[str, Mapping[str, Sequence[float]]] = GRIDS,
) -> dict[str, Any]:
    """``{"params": {method: best}, "scores": {method: {"Avg", "default_Avg", "grid"}}}``;
    methods that need a bank are skipped without one."""
    params: dict[str, dict[str, float]] = {}
    scores: dict[str, Any] = {}
    for method, grid in grids.items():
        if method == "t2v2t_bank" and bank is None:
            continue
        b = bank if uses_bank(method) else None
        best, best_avg, default_avg = None, -1.0, None
        for point in grid_points(grid):
            avg = summarize(best_ranks(rescore(method, sims, b, **point), gt))["Avg"]
            if point == {k: v for k, v in DEFAULTS[method].items() if k in point}:
                default_avg = avg
            if avg > best_avg:
                best, best_avg = point, avg
        params[method] = dict(best or {})
        scores[method] = {
            "Avg": best_avg,
            "default_Avg": default_avg,
            "grid": len(grid_points(grid)),
        }
    return {"params": params, "scores": scores}
