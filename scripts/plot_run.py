"""Draw a run's loss terms and learning rate: ``scripts/plot_run.py RUN_DIR`` -> RUN_DIR/curves.png.

Reads ``RUN_DIR/metrics.jsonl`` (one line per optimiser step). Loss terms that stay at zero for the
whole run (disabled by a zero weight, e.g. MLM when fine-tuning) are left out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

from t2v2t.errors import cli

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

from t2v2t.training.metrics_log import read_metrics  # noqa: E402

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


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the loss/lr figure for ``run_dir``; returns the PNG path."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        raise FileNotFoundError(f"{metrics} does not exist (has the run logged a step yet?)")
    rows = [r for r in read_metrics(metrics) if "loss" in r]
    if not rows:
        raise ValueError(f"{metrics} holds no training steps")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        epilog="example: python scripts/plot_run.py runs/pretrain", description=__doc__
    )
    parser.add_argument("run_dir")
    parser.add_argument("--out", default=None, help="PNG path (default RUN_DIR/curves.png)")
    args = parser.parse_args(argv)
    try:
        path = plot_run(args.run_dir, args.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
