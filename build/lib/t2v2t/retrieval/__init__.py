"""Two-stage retrieval evaluation: metrics, T2V2T fusion, shared-pair VTM re-ranking.

Modules, one job each: ``metrics`` (recall / ranks from a score matrix), ``fusion`` (VindLU's
matrices and the three fusions), ``rerank`` (candidate sets and the VTM
pair scores, computed once per pair), ``evaluate`` (features -> stages -> fusions -> metrics),
``report`` (the paper's row and ablation tables), ``run`` (what the eval commands share).
"""

from t2v2t.retrieval.evaluate import (
    EvalResult,
    evaluate_retrieval,
    load_scores,
    write_eval_outputs,
)
from t2v2t.retrieval.fusion import FUSIONS, fuse, fuse_all
from t2v2t.retrieval.metrics import retrieval_metrics, t2v_metrics, v2t_metrics

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
