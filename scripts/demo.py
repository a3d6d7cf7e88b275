"""`make demo`: synthetic corpora -> shards -> tiny pre-training -> fine-tuning -> evaluation
with all three fusions -> ``runs/demo/report.md`` and ``runs/demo/metrics.json``.

``--size quick`` is the small version the test suite runs end to end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from t2v2t.demo import SIZES, Demo
from t2v2t.errors import cli


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        epilog="example: python scripts/demo.py --run runs/demo  (make demo)", description=__doc__
    )
    p.add_argument("--run", "--run-dir", dest="run", default="runs/demo", help="output folder")
    p.add_argument("--size", choices=sorted(SIZES), default="full")
    p.add_argument("--workers", type=int, default=2, help="Dask workers for the shard builds")
    p.add_argument("--fresh", action="store_true", help="delete the run folder first")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run = Path(args.run)
    if args.fresh and run.exists():
        shutil.rmtree(run)
    start = time.perf_counter()
    try:
        metrics = Demo(run, SIZES[args.size], workers=args.workers).run_all()
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    r = metrics["msrvtt"]["results"]
    best = max(r, key=lambda f: r[f]["t2v"]["R1"])
    print(f"[demo] done in {time.perf_counter() - start:.0f} s: {run / 'report.md'}")
    print(f"[demo] MSR-VTT-style test text->video R@1: {r[best]['t2v']['R1']:.1f} ({best}); "
          f"temporal twins preferred: {metrics['temporal']['t2v2t']['rate']:.2f} (chance 0.5)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
