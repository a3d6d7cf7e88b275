"""The demo's and the training runs' figures as PNG files (matplotlib's file-only Agg backend).

``plot_run``: a run's loss terms and learning rate from its ``metrics.jsonl`` (the CLI is
``scripts/plot_run.py``). ``plot_recall``: text->video recall@K of each evaluated dataset side by
side, drawn by the same function as the HTML report's (``t2v2t.retrieval.plots``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib
import numpy as np

from t2v2t.retrieval.plots import draw_recall_at_k
from t2v2t.retrieval.report import DATASET_LABELS
from t2v2t.training.metrics_log import read_metrics

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

TERMS = ("loss", "vtc", "vtm", "mlm")


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average: raw per-step losses are noisy at small batch sizes."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def _training_rows(metrics: Path) -> list[dict]:
    if not metrics.is_file():
        raise FileNotFoundError(f"{metrics} does not exist (has the run logged a step yet?)")
    rows = [r for r in read_metrics(metrics) if "loss" in r]
    if not rows:
        raise ValueError(f"{metrics} holds no training steps")
    return rows


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the loss/lr figure of ``run_dir`` (default ``RUN_DIR/curves.png``); returns its path.

    Loss terms that stay at zero for the whole run (disabled by a zero weight, e.g. MLM when
    fine-tuning) are left out; per-epoch evaluations, when logged, share the loss panel."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    rows = _training_rows(metrics)
    steps = [r["step"] for r in rows]
    window = max(1, len(rows) // 50)
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for term in TERMS:
        values = [float(r.get(term, 0.0)) for r in rows]
        if any(values):
            ax_loss.plot(steps, smooth(values, window), label=term, lw=1.2)
    ax_loss.set_ylabel(f"loss (moving average of {window})" if window > 1 else "loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    ax_lr.plot(steps, [r["lr"] for r in rows], color="tab:purple")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.grid(alpha=0.3)
    evals = [r for r in read_metrics(metrics) if "eval_t2v_avg" in r]
    if evals:
        ax_eval = ax_loss.twinx()
        ax_eval.plot([r["step"] for r in evals], [r["eval_t2v_avg"] for r in evals], "ko--", ms=4)
        ax_eval.set_ylabel("eval T2V Avg")
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    out = Path(out) if out else run_dir / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_recall(
    out: Path, ranks: Mapping[str, Mapping[str, np.ndarray]], num_videos: Mapping[str, int]
) -> Path:
    """One text->video recall@K panel per dataset (``ranks``: dataset -> fusion -> the best
    ground truth's rank per query) into the PNG ``out``; returns ``out``."""
    fig, axes = plt.subplots(1, len(ranks), figsize=(5 * len(ranks), 3.6))
    for ax, (dataset, by_fusion) in zip(np.atleast_1d(axes), ranks.items(), strict=True):
        draw_recall_at_k(ax, by_fusion, num_videos[dataset])
        ax.set_title(f"{DATASET_LABELS.get(dataset, dataset)} text→video")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
