"""Every post-hoc method on one retriever's saved scores: metrics, intervals, tests, protocols.

:func:`load_inputs` reads a scores ``.npz`` written by any code (``sims`` [texts, videos], ``gt``
as one video index per text or a bool [texts, videos] matrix; optional ``bank`` [bank texts,
videos] and ``video_bank`` [bank videos, texts], there or in a second file) and refuses what
cannot be scored in one line naming the array and its shape. :func:`compare` runs every method of
:mod:`t2v2t.retrieval.posthoc` in both directions under the ``batch`` and ``single`` protocols,
plus the 10x duplication stress; :func:`comparison_table` prints it (docs/evaluation.md,
"Which fusion?").
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2v2t.errors import UsageError
from t2v2t.retrieval.metrics import best_ranks, direction_ranks, summarize
from t2v2t.retrieval.posthoc import (
    METHODS,
    label,
    rescore,
    resolve_params,
    single_protocol,
    stress_rescore,
    uses_bank,
)
from t2v2t.retrieval.stats import RESAMPLES, add_holm, fmt_interval, fmt_p, fusion_statistics

PROTOCOLS = ("batch", "single")
DIRECTIONS = ("t2v", "v2t")
STRESS_TIMES = 10


@dataclass
class ScoreInputs:
    sims: torch.Tensor  # [texts, videos]
    gt: list[list[int]]  # text -> its ground-truth videos
    bank: torch.Tensor | None = None  # [bank texts, videos]
    video_bank: torch.Tensor | None = None  # [bank videos, texts]


def _read_npz(path: str | Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError) as e:  # missing, not a zip, or object arrays
        raise UsageError(f"{path}: cannot read it as a .npz of arrays ({e})") from None


def _float_matrix(name: str, a: np.ndarray, path: str | Path) -> torch.Tensor:
    if a.ndim != 2 or a.dtype.kind not in "fiu" or 0 in a.shape:
        raise UsageError(
            f"{path}: `{name}` has shape {a.shape} dtype {a.dtype}; it must be a non-empty "
            "2-d float matrix"
        )
    bad = ~np.isfinite(a)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise UsageError(
            f"{path}: `{name}` {a.shape} holds {int(bad.sum())} NaN/inf value(s), the first at "
            f"{list(where)}; every entry needs a finite score"
        )
    return torch.from_numpy(a.astype(np.float64))


def _ground_truth(gt: np.ndarray, shape: tuple[int, int], path: str | Path) -> list[list[int]]:
    nt, nv = shape
    if gt.dtype == bool and gt.shape == (nt, nv):
        empty = np.flatnonzero(~gt.any(axis=1))
        if empty.size:
            raise UsageError(
                f"{path}: `gt` {gt.shape}: text {int(empty[0])} has no true video "
                f"({empty.size} such rows); every text needs at least one"
            )
        return [np.flatnonzero(row).tolist() for row in gt]
    if gt.dtype.kind in "iu" and gt.shape == (nt,):
        if gt.min() < 0 or gt.max() >= nv:
            raise UsageError(
                f"{path}: `gt` {gt.shape} holds video index {int(gt.max()) if gt.max() >= nv else int(gt.min())} "
                f"outside [0, {nv}) of `sims` {shape}"
            )
        return [[int(v)] for v in gt]
    raise UsageError(
        f"{path}: `gt` has shape {gt.shape} dtype {gt.dtype} but `sims` has shape {shape}: give "
        f"one int video index per text ({nt},) or a bool matrix ({nt}, {nv})"
    )


def _bank(arrays, name, path, width, other):
    if name not in arrays:
        return None
    t = _float_matrix(name, arrays[name], path)
    if t.shape[1] != width:
        raise UsageError(
            f"{path}: `{name}` has shape {tuple(t.shape)} but `sims` has shape {other}: "
            f"`{name}` needs {width} columns (one per {'video' if name == 'bank' else 'text'})"
        )
    return t


def load_inputs(scores: str | Path, bank: str | Path | None = None) -> ScoreInputs:
    """``scores`` (and ``bank``) npz files -> checked inputs; :class:`UsageError` otherwise."""
    arrays = _read_npz(scores)
    for name in ("sims", "gt"):
        if name not in arrays:
            have = ", ".join(f"{k} {arrays[k].shape}" for k in arrays) or "nothing"
            raise UsageError(f"{scores}: no array `{name}` (it holds {have})")
    sims = _float_matrix("sims", arrays["sims"], scores)
    shape = tuple(sims.shape)
    gt = _ground_truth(arrays["gt"], shape, scores)
    banks = dict(arrays)
    where = {k: scores for k in arrays}
    if bank is not None:
        extra = _read_npz(bank)
        if "bank" not in extra and "video_bank" not in extra:
            raise UsageError(f"{bank}: no array `bank` or `video_bank` (it holds {list(extra)})")
        banks.update(extra)
        where.update({k: bank for k in extra})
    b = _bank(banks, "bank", where.get("bank"), shape[1], shape)
    vb = _bank(banks, "video_bank", where.get("video_bank"), shape[0], shape)
    return ScoreInputs(sims=sims, gt=gt, bank=b, video_bank=vb)


def read_params(path: str | None) -> dict[str, dict[str, float]]:
    """``{method: {param: value}}`` from a fusion_params.json (its ``params``, or the file)."""
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: cannot read fusion parameters ({e})") from None
    data = data.get("params", data) if isinstance(data, dict) else data
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected {{method: {{param: value}}}}")
    for method, values in data.items():
        try:
            resolve_params(method, values)
        except (ValueError, TypeError) as e:
            raise UsageError(f"{path}: {e}") from None
    return data


# -- the comparison --------------------------------------------------------------------------------
def _problem(inputs: ScoreInputs, direction: str):
    """(queries' scores, their bank, the gallery side's bank) for one direction: video->text is
    the same problem transposed, with the roles of the two banks swapped."""
    if direction == "t2v":
        return inputs.sims, inputs.bank, inputs.video_bank
    return inputs.sims.T, inputs.video_bank, inputs.bank


def _skip_reason(method: str, bank, other) -> str | None:
    if method in ("dbnorm", "t2v2t_bank") and bank is None:
        return "needs a bank for this direction"
    if method == "dbnorm" and other is None:
        return "needs both banks (bank and video_bank)"
    return None


def _run(method, protocol, s, bank, other, params):
    if protocol == "batch":
        return rescore(method, s, bank, other, **params)
    return single_protocol(method, s, bank, other, **params)


def compare(
    inputs: ScoreInputs,
    params: Mapping[str, Mapping[str, float]] | None = None,
    *,
    methods: Sequence[str] = METHODS,
    resamples: int = RESAMPLES,
) -> dict[str, Any]:
    """The comparison JSON: per protocol and direction each method's label, metrics and (vs
    ``none``) paired test with Holm-corrected p; the duplication stress of text->video R@1."""
    params = {m: dict((params or {}).get(m, {})) for m in methods}
    out: dict[str, Any] = {
        "num_texts": int(inputs.sims.shape[0]),
        "num_videos": int(inputs.sims.shape[1]),
        "bank_texts": None if inputs.bank is None else int(inputs.bank.shape[0]),
        "bank_videos": None if inputs.video_bank is None else int(inputs.video_bank.shape[0]),
        "params": {m: resolve_params(m, params[m]) for m in methods},
        "protocols": {},
    }
    for protocol in PROTOCOLS:
        out["protocols"][protocol] = {
            d: _compare_direction(inputs, d, protocol, methods, params, resamples)
            for d in DIRECTIONS
        }
    out["stress"] = stress_table(inputs, methods, params)
    return out


def _compare_direction(inputs, direction, protocol, methods, params, resamples):
    s, bank, other = _problem(inputs, direction)
    rows: dict[str, Any] = {}
    ranks: dict[str, np.ndarray] = {}
    for m in methods:
        row: dict[str, Any] = {"label": label(m, bank is not None and uses_bank(m))}
        why = _skip_reason(m, bank, other)
        scores = None if why else _run(m, protocol, s, bank, other, params[m])
        if scores is None:
            row["skipped"] = why or "transductive: a single query has no other queries"
        else:
            ranks[m] = direction_ranks(direction, scores, inputs.gt)
            row["metrics"] = summarize(ranks[m])
        rows[m] = row
    stats = fusion_statistics(ranks, resamples=resamples) if "none" in ranks else None
    if stats:
        add_holm(stats["paired"])
        for m, row in rows.items():
            if m in ranks:
                row["interval"] = stats["intervals"][m]
                row["vs_none"] = stats["paired"].get(m)
    return rows


def stress_table(inputs: ScoreInputs, methods, params) -> dict[str, Any]:
    """Text->video R@1 of the original queries when every query appears 10 times."""
    out: dict[str, Any] = {"times": STRESS_TIMES}
    for m in methods:
        if _skip_reason(m, inputs.bank, inputs.video_bank):
            continue
        args = (m, inputs.sims, inputs.bank, inputs.video_bank)
        r1 = summarize(best_ranks(rescore(*args, **params[m]), inputs.gt))["R1"]
        dup = stress_rescore(*args, times=STRESS_TIMES, **params[m])
        r1_dup = summarize(best_ranks(dup, inputs.gt))["R1"]
        out[m] = {"R1": r1, "R1_duplicated": r1_dup, "change": round(r1_dup - r1, 6)}
    return out


# -- the printed table -----------------------------------------------------------------------------
COLUMNS = ("R1", "R5", "R10", "Avg")


def _diff(test: Mapping[str, Any] | None) -> str:
    if not test:
        return ""
    r1 = test["R1"]
    return (
        f"{r1['diff']:+5.1f} {fmt_interval(r1['ci'])} p={fmt_p(r1['p'])} holm={fmt_p(r1['p_holm'])}"
    )


def comparison_table(result: Mapping[str, Any]) -> str:
    """Each protocol x direction: one line per method (label, R@K with the R@1 interval, MdR,
    MnR, the R@1 difference vs none), then the duplication stress."""
    head = f"{'method':<11} {'label':<12}" + "".join(f"{c:>6}" for c in COLUMNS)
    head += f" {'R1 95% CI':>13} {'MdR':>6} {'MnR':>7}  R1 vs none [CI] (p, Holm)"
    lines = []
    for protocol, by_dir in result["protocols"].items():
        for direction, rows in by_dir.items():
            lines += ["", f"{direction} - {protocol} protocol", head]
            for m, row in rows.items():
                if "metrics" not in row:
                    lines.append(f"{m:<11} {row['label']:<12} -  ({row['skipped']})")
                    continue
                x = row["metrics"]
                ci = fmt_interval(row["interval"]["R1"]) if "interval" in row else ""
                lines.append(
                    f"{m:<11} {row['label']:<12}"
                    + "".join(f"{x[c]:6.1f}" for c in COLUMNS)
                    + f" {ci:>13} {x['MdR']:6.1f} {x['MnR']:7.1f}  {_diff(row.get('vs_none'))}"
                )
    stress = result.get("stress")  # absent from the re-ranked logits' table
    if stress:
        lines += ["", f"t2v R@1 of the original queries when each appears {stress['times']}x"]
    for m, row in (stress or {}).items():
        if m != "times":
            lines.append(f"{m:<11} {row['R1']:6.1f} -> {row['R1_duplicated']:6.1f}")
    return "\n".join(lines).lstrip("\n")
