"""Two-stage retrieval evaluation: metrics, T2V2T fusion, shared-pair VTM re-ranking.

Modules, one job each: ``metrics`` (recall / ranks from a score matrix), ``fusion`` (VindLU's
matrices and the three fusions of DESIGN.md section 7), ``rerank`` (candidate sets and the VTM
pair scores, computed once per pair), ``evaluate`` (features -> stages -> fusions -> metrics),
``report`` (the paper's row and ablation tables).
"""
