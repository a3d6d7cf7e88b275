"""Text tables in the paper's format: the R1 R5 R10 Avg row, and the ablation table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from t2v2t.retrieval.compare import comparison_table
from t2v2t.retrieval.fusion import FUSIONS
from t2v2t.retrieval.stats import METHOD, fmt_interval, fmt_p, fusion_statistics

COLUMNS = ("R1", "R5", "R10", "Avg")
FUSION_LABELS = {"none": "VindLU", "naive": "naïve T2V2T", "t2v2t": "T2V2T"}
DATASET_LABELS = {"msrvtt": "MSR-VTT", "didemo": "DiDeMo", "anet": "ActivityNet Captions"}


def paper_row(metrics: Mapping[str, float]) -> str:
    """``R1 R5 R10 Avg`` with one decimal, as the paper prints them."""
    return "  ".join(f"{metrics[c]:5.1f}" for c in COLUMNS)


def eval_summary(result: Mapping[str, Any], fusion: str) -> str:
    """The chosen fusion's text->video row, then all fusions in both directions."""
    head = (
        f"{result['dataset']} {result['split']}: {result['num_texts']} texts x "
        f"{result['num_videos']} videos, k={result['k']}, "
        + (
            f"{result['pair_evaluations']} VTM pairs"
            if result.get("rerank", True)
            else "stage-1 scores only (no re-ranking)"
        )
        + f", {result['seconds']:.1f}s"
    )
    cols = "  ".join(f"{c:>5}" for c in COLUMNS)
    lines = [
        head,
        "",
        f"text->video ({FUSION_LABELS.get(fusion, fusion)}, --fusion {fusion})",
        f"  {cols}",
        f"  {paper_row(result['results'][fusion]['t2v'])}",
        "",
        f"{'fusion':<14}{'dir':<5}{cols}  {'MdR':>6}  {'MnR':>7}",
    ]
    for name in FUSIONS:
        for direction in ("t2v", "v2t"):
            m = result["results"][name][direction]
            lines.append(
                f"{name:<14}{direction:<5}{paper_row(m)}  {m['MdR']:6.1f}  {m['MnR']:7.1f}"
            )
    if _stat(result, "t2v", "intervals"):
        method = result["statistics"]["method"]
        lines += [
            "",
            f"text->video, {100 * method['level']:.0f}% bootstrap intervals "
            f"({method['resamples']} resamples of the queries) and, against none, the difference "
            f"with its paired interval and {method['paired_test']} p:",
        ]
        for name in FUSIONS:
            ci = result["statistics"]["t2v"]["intervals"][name]
            row = "  ".join(f"{c} {fmt_interval(ci[c])}" for c in COLUMNS)
            lines.append(f"  {name:<7}{row}")
            if name != "none":
                test = result["statistics"]["t2v"]["paired"][name]
                lines.append(
                    f"  {'':<7}" + "  ".join(f"{c} {_diff_cell(test[c])}" for c in COLUMNS)
                )
    if "posthoc" in result:
        lines += ["", "post-hoc methods on the stage-1 scores (docs/evaluation.md#which-fusion)"]
        lines.append(comparison_table(result["posthoc"]))
        if "reranked" in result["posthoc"]:
            lines += ["", "post-hoc methods on the re-ranked candidate logits (stage 2)"]
            lines.append(comparison_table(result["posthoc"]["reranked"]))
    return "\n".join(lines)


def _stat(result: Mapping[str, Any], *path: str) -> Any:
    node: Any = result.get("statistics")
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _cell(value: float, ci: Sequence[float] | None) -> str:
    return f"{value:.1f} {fmt_interval(ci)}" if ci else f"{value:.1f}"


def _diff_cell(test: Mapping[str, Any] | None) -> str:
    if not test:
        return "-"
    return f"{test['diff']:+.1f} {fmt_interval(test['ci'])} p={fmt_p(test['p'])}"


def ablation_markdown(
    results: Mapping[str, Mapping[str, Any]],
    datasets: Sequence[str],
    missing: Mapping[str, str] | None = None,
    ranks: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> str:
    """The paper's ablation table: rows = fusions, columns = R1 R5 R10 Avg per dataset + Total Avg.

    ``results``: dataset -> its evaluation JSON; datasets absent from it show ``-`` and are listed
    under the table with the reason from ``missing``. Total Avg averages the datasets present.
    Each cell carries its 95% bootstrap interval (the JSON's ``statistics``), and a second table
    gives each fusion's difference from VindLU with its paired interval and p-value. ``ranks``
    (dataset -> fusion -> per-query text->video ranks, from the scores ``.npz``) adds the same for
    Total Avg, resampling each dataset's queries within itself.
    """
    present = [d for d in datasets if d in results]
    total = None
    if ranks is not None and present and all(d in ranks for d in present):
        total = fusion_statistics({f: [np.asarray(ranks[d][f]) for d in present] for f in FUSIONS})
    header = ["Method"]
    for d in datasets:
        header += [f"{DATASET_LABELS.get(d, d)} {c}" for c in COLUMNS]
    header.append("Total Avg")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    diff_lines = ["| " + " | ".join(["vs VindLU", *header[1:]]) + " |", "|" + "---|" * len(header)]
    for name in FUSIONS:
        cells = [FUSION_LABELS[name]]
        diffs = [FUSION_LABELS[name]]
        avgs = []
        for d in datasets:
            if d in results:
                m = results[d]["results"][name]["t2v"]
                for c in COLUMNS:
                    cells.append(_cell(m[c], _stat(results[d], "t2v", "intervals", name, c)))
                    diffs.append(_diff_cell(_stat(results[d], "t2v", "paired", name, c)))
                avgs.append(m["Avg"])
            else:
                cells += ["-"] * len(COLUMNS)
                diffs += ["-"] * len(COLUMNS)
        if avgs:
            ci = total["intervals"][name]["Avg"] if total else None
            cells.append(_cell(sum(avgs) / len(avgs), ci))
        else:
            cells.append("-")
        diffs.append(_diff_cell(total["paired"][name]["Avg"]) if total and name != "none" else "-")
        lines.append("| " + " | ".join(cells) + " |")
        if name != "none":
            diff_lines.append("| " + " | ".join(diffs) + " |")
    has_stats = any(_stat(results[d], "t2v", "paired") for d in present)
    if has_stats:
        lines += ["", *diff_lines]
    notes = []
    if has_stats:
        method = _stat(results[present[0]], "method") or METHOD
        notes.append(
            f"[lo, hi]: {100 * method['level']:.0f}% {method['interval']} "
            f"({method['resamples']} resamples, seed {method['seed']}); differences: "
            f"{method['difference_interval']}; p: {method['paired_test']}. An interval of a "
            "difference that holds 0 means these queries do not separate the two fusions."
        )
    if present:
        notes.append(
            "Text-to-video retrieval; "
            + "; ".join(
                f"{DATASET_LABELS.get(d, d)}: {results[d]['split']}, "
                f"{results[d]['num_texts']} texts x {results[d]['num_videos']} videos, "
                f"k={results[d]['k']}, checkpoint {results[d].get('checkpoint')}"
                for d in present
            )
            + "."
        )
    if present and len(present) < len(datasets):
        notes.append(f"Total Avg over {', '.join(present)} only.")
    for d, why in (missing or {}).items():
        notes.append(f"{DATASET_LABELS.get(d, d)}: not evaluated ({why}).")
    return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else [])) + "\n"


def _posthoc_cell(row: Mapping[str, Any] | None) -> str:
    if not row or "metrics" not in row:
        return "-"
    cell = _cell(row["metrics"]["R1"], row.get("interval", {}).get("R1"))
    test = (row.get("vs_none") or {}).get("R1")
    if test:
        cell += f" {test['diff']:+.1f} {fmt_interval(test['ci'])} p={fmt_p(test['p'])}"
        cell += f" Holm {fmt_p(test['p_holm'])}"
    return cell


def method_label(method: str, tables: Mapping[str, Mapping[str, Any]]) -> str:
    """The method's label, or each dataset's where they differ (a bank on one dataset only)."""
    labels = {d: t[method]["label"] for d, t in tables.items() if method in t}
    if len(set(labels.values())) <= 1:
        return next(iter(labels.values()), "-")
    return ", ".join(f"{v} ({DATASET_LABELS.get(d, d)})" for d, v in labels.items())


def _method_rows(
    results: Mapping[str, Mapping[str, Any]], present: Sequence[str], section: str
) -> tuple[list[str], list[list[str]]]:
    """Header and rows (method, label, then each dataset x protocol cell) of one post-hoc
    section: ``stage1`` (the ``posthoc`` protocols) or ``reranked`` (``posthoc.reranked``)."""

    def protocols(d: str) -> Mapping[str, Any]:
        post = results[d]["posthoc"]
        return post["protocols"] if section == "stage1" else post["reranked"]["protocols"]

    names = list(protocols(present[0]))
    header = ["Method", "Label"]
    header += [f"{DATASET_LABELS.get(d, d)} {p}" for d in present for p in names]
    rows = []
    for method in protocols(present[0])[names[0]]["t2v"]:
        cells = [method, method_label(method, {d: protocols(d)[names[0]]["t2v"] for d in present})]
        for d in present:
            for p in names:
                cells.append(_posthoc_cell(protocols(d)[p]["t2v"].get(method)))
        rows.append(cells)
    return header, rows


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def posthoc_markdown(
    results: Mapping[str, Mapping[str, Any]], datasets: Sequence[str]
) -> str | None:
    """Every post-hoc method x dataset: text->video R@1 on the stage-1 scores with its 95%
    interval and the paired difference vs none (sign-flip p, Holm-corrected across the methods),
    under both protocols, then the same over the re-ranked candidate logits where the results
    carry them; None when no result carries the ``posthoc`` section."""
    present = [d for d in datasets if "posthoc" in results.get(d, {})]
    if not present:
        return None
    lines = _markdown_table(*_method_rows(results, present, "stage1"))
    stress = [
        f"{DATASET_LABELS.get(d, d)}: "
        + ", ".join(
            f"{m} {row['change']:+.1f}"
            for m, row in results[d]["posthoc"]["stress"].items()
            if m != "times"
        )
        for d in present
    ]
    lines += [
        "",
        "- Text-to-video R@1 [95% interval] on the stage-1 scores, then the paired difference vs "
        "none [interval], sign-flip p and Holm-corrected p across the methods of the table; "
        "single: each query with the bank alone (transductive methods: -).",
        "- R@1 change of the original queries when each appears 10x: " + "; ".join(stress) + ".",
    ]
    reranked = [d for d in present if "reranked" in results[d]["posthoc"]]
    if reranked:
        lines += ["", "On the re-ranked candidate logits (stage 2):", ""]
        lines += _markdown_table(*_method_rows(results, reranked, "reranked"))
        lines += [
            "",
            "- The same over stage 2's VTM logits of the candidate pairs, batch protocol (every "
            "method but none is transductive there); none, naive and t2v2t are the fusion table's "
            "rows; dbnorm and t2v2t_bank (-) need VTM logits of bank captions, which stage 2 does "
            "not compute.",
        ]
    return "\n".join(lines) + "\n"
