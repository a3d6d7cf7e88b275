"""`make shards DATASET=...`: annotation files + videos -> shards/<dataset>/<split>_<N>f/.

When ``--data`` lacks the dataset's annotation files, the synthetic corpus is generated there
first (DESIGN.md section 9). Builds every split of the paper's recipe, or the one asked.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from preprocessing.adapters import load_records
from preprocessing.job import build_shards
from preprocessing.recipes import NATIVE_MARKERS, recipe
from preprocessing.synthetic import DEFAULTS, generate, is_complete
from t2v2t.shards import shard_dir


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dataset", required=True, choices=sorted(NATIVE_MARKERS))
    p.add_argument("--data", default=None, help="data root (default data/<dataset>)")
    p.add_argument("--out", default="shards", help="shard root (default shards)")
    p.add_argument("--split", default=None, help="one split (default: the recipe's splits)")
    p.add_argument("--frames", type=int, default=None, help="frames per video (recipe default)")
    p.add_argument("--workers", type=int, default=2, help="local Dask worker processes (0: none)")
    p.add_argument("--scheduler", default=None, help="an existing Dask cluster, tcp://host:port")
    p.add_argument("--short-side", type=int, default=224)
    p.add_argument("--jpeg-quality", type=int, default=90)
    p.add_argument("--samples-per-shard", type=int, default=64)
    p.add_argument(
        "--synthetic-size",
        type=int,
        default=None,
        help="training videos of a generated synthetic corpus (dataset default)",
    )
    p.add_argument("--seed", type=int, default=0, help="frame sampling (and synthetic) seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = Path(args.data or f"data/{args.dataset}")
    marker = NATIVE_MARKERS[args.dataset]
    if not (data / marker).exists() or not is_complete(data):
        if args.dataset not in DEFAULTS:
            print(
                f"[shards] {data / marker} not found and {args.dataset} has no synthetic corpus",
                file=sys.stderr,
            )
            return 2
        why = (
            f"{data} was left incomplete"
            if (data / marker).exists()
            else f"no {marker} under {data}"
        )
        t0 = time.perf_counter()
        attrs = generate(args.dataset, data, size=args.synthetic_size, seed=args.seed)
        print(
            f"[shards] {why}: generated the synthetic {args.dataset} corpus there "
            f"({len(attrs)} items, {time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
    for r in recipe(args.dataset, args.split, args.frames):
        records = load_records(args.dataset, data, r.split)
        out = shard_dir(args.out, args.dataset, r.split, r.num_frames)
        t0 = time.perf_counter()
        m = build_shards(
            records,
            out,
            dataset=args.dataset,
            split=r.split,
            num_frames=r.num_frames,
            mode=r.mode,
            candidates=r.candidates,
            seed=args.seed,
            short_side=args.short_side,
            jpeg_quality=args.jpeg_quality,
            samples_per_shard=args.samples_per_shard,
            workers=args.workers,
            scheduler=args.scheduler,
            progress=not args.quiet,
        )
        print(
            f"[shards] {out}: {m['num_samples']} samples in {len(m['shards'])} shards, "
            f"{m['num_failed']} failed (see failures.jsonl), {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
