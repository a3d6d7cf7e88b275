"""Two-stage retrieval evaluation: metrics, T2V2T fusion, shared-pair VTM re-ranking.

Modules, one job each: ``metrics`` (recall / ranks from a score matrix), ``fusion`` (VindLU's
matrices and the three fusions), ``rerank`` (candidate sets and the VTM
pair scores, computed once per pair), ``evaluate`` (features -> stages -> fusions -> metrics),
``report`` (the paper's row and ablation tables), ``run`` (what the eval commands share).
"""

from importlib import import_module
from typing import Any

# Loaded on first use (PEP 562): ``retrieval.settings`` is read by the training config, and a bad
# config is reported before torch loads (README.md, "Commands").
_HOME = {
    "EvalResult": "evaluate",
    "evaluate_retrieval": "evaluate",
    "load_scores": "evaluate",
    "write_eval_outputs": "evaluate",
    "FUSIONS": "fusion",
    "fuse": "fusion",
    "fuse_all": "fusion",
    "retrieval_metrics": "metrics",
    "t2v_metrics": "metrics",
    "v2t_metrics": "metrics",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOME[name]}"), name)


__all__ = [
    "FUSIONS",
    "EvalResult",
    "evaluate_retrieval",
    "fuse",
    "fuse_all",
    "load_scores",
    "retrieval_metrics",
    "t2v_metrics",
    "v2t_metrics",
    "write_eval_outputs",
]
