"""Draw a run's loss terms and learning rate: ``scripts/plot_run.py RUN_DIR`` -> RUN_DIR/curves.png.

Reads ``RUN_DIR/metrics.jsonl`` (one line per optimiser step); the drawing is
``t2v2t.tools.plots.plot_run``. Loss terms that stay at zero for the whole run (disabled by a zero
weight, e.g. MLM when fine-tuning) are left out.
"""

from __future__ import annotations

import sys

from t2v2t.errors import ArgumentParser, cli
from t2v2t.tools.plots import plot_run


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
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
