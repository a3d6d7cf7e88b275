"""Text tables in the paper's format: the R1 R5 R10 Avg row, and the ablation table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from t2v2t.retrieval.fusion import FUSIONS

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
    return "\n".join(lines)


def ablation_markdown(
    results: Mapping[str, Mapping[str, Any]],
    datasets: Sequence[str],
    missing: Mapping[str, str] | None = None,
) -> str:
    """The paper's ablation table: rows = fusions, columns = R1 R5 R10 Avg per dataset + Total Avg.

    ``results``: dataset -> its evaluation JSON; datasets absent from it show ``-`` and are listed
    under the table with the reason from ``missing``. Total Avg averages the datasets present.
    """
    present = [d for d in datasets if d in results]
    header = ["Method"]
    for d in datasets:
        header += [f"{DATASET_LABELS.get(d, d)} {c}" for c in COLUMNS]
    header.append("Total Avg")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in FUSIONS:
        cells = [FUSION_LABELS[name]]
        avgs = []
        for d in datasets:
            if d in results:
                m = results[d]["results"][name]["t2v"]
                cells += [f"{m[c]:.1f}" for c in COLUMNS]
                avgs.append(m["Avg"])
            else:
                cells += ["-"] * len(COLUMNS)
        cells.append(f"{sum(avgs) / len(avgs):.1f}" if avgs else "-")
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
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
