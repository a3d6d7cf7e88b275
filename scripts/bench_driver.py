"""Shard-driver benchmark: the driver's memory and start-up while planning 100k and 1M WebVid rows.

Writes a WebVid CSV (``videoid,contentUrl,duration,page_dir,name``) of each size whose videos do
not exist, so every row becomes a recorded failure and the run measures the driver, not the
decoder. Each size is built in its own process (a local Dask cluster of ``--workers`` worker
processes, ``--rows-per-shard`` rows per sliced task); that process reports its own peak RSS
(``getrusage(RUSAGE_SELF)``: the driver and the in-process scheduler, not the workers).
Figures: ``driver_peak_mb_1m`` (target <= 300), ``driver_mem_ratio_1m_vs_100k`` (target <= 1.5),
``driver_first_submit_s_1m`` (seconds from the call to the first submitted task).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from t2v2t.errors import ArgumentParser, cli
from t2v2t.tools import benchlog


def write_csv(path: Path, rows: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("videoid,contentUrl,duration,page_dir,name\n")
        for i in range(rows):
            f.write(
                f"{1000000 + i},https://example.invalid/{i}.mp4,PT00H00M{i % 60:02d}S,"
                f'{i % 997:04d}_{i % 7},"a person, walking a dog number {i}"\n'
            )


def child(csv: str, out: str, workers: int, rows_per_shard: int) -> None:
    from preprocessing.adapters import webvid_slice
    from preprocessing.job import build_shards
    from preprocessing.slices import CsvSource
    from preprocessing.spec import ShardSpec

    stats: dict = {}
    t0 = time.perf_counter()
    m = build_shards(
        CsvSource(webvid_slice, str(Path(csv).parent), csv),
        out,
        ShardSpec("webvid", "train", 4, "rand", 2, samples_per_shard=rows_per_shard),
        workers=workers,
        progress=False,
        stats=stats,
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(
        json.dumps(
            {
                "peak_mb": round(peak_mb, 1),
                "first_submit_s": round(stats["first_submit_s"], 3),
                "tasks": stats["tasks"],
                "failed": m["num_failed"],
                "samples": m["num_samples"],
                "wall_s": round(time.perf_counter() - t0, 2),
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        epilog="example: python scripts/bench_driver.py --workers 2", description=__doc__
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows-per-shard", type=int, default=1000)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--bench-dir", default=str(benchlog.BENCH_DIR))
    parser.add_argument("--child", nargs=2, metavar=("CSV", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], args.workers, args.rows_per_shard)
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    runs: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_driver_") as tmp:
        for n in sizes:
            data = Path(tmp) / f"d{n}"
            data.mkdir()
            csv = data / "results_10M_train.csv"
            write_csv(csv, n)
            cmd = [sys.executable, __file__, "--child", str(csv), str(Path(tmp) / f"o{n}")]
            cmd += ["--workers", str(args.workers), "--rows-per-shard", str(args.rows_per_shard)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                print(res.stderr, file=sys.stderr)
                return 1
            runs[n] = json.loads(res.stdout.strip().splitlines()[-1])
            assert runs[n]["failed"] == n and runs[n]["samples"] == 0, runs[n]
            print(f"[bench] driver {n} rows: {runs[n]}", flush=True)
            csv.unlink()
    small, big = runs[min(sizes)], runs[max(sizes)]
    figures = {
        "driver_peak_mb_1m": big["peak_mb"],
        "driver_mem_ratio_1m_vs_100k": round(big["peak_mb"] / small["peak_mb"], 3),
        "driver_first_submit_s_1m": big["first_submit_s"],
        "driver_first_submit_s_100k": small["first_submit_s"],
    }
    summary = (
        f"WebVid CSVs of {', '.join(str(n) for n in sizes)} rows, no videos (every row a recorded "
        f"failure); sliced tasks of {args.rows_per_shard} rows, a window of 4 tasks per worker, "
        f"{args.workers} local Dask workers. Driver peak RSS (scheduler included, workers "
        f"excluded): {small['peak_mb']} MB at {min(sizes)} rows, {big['peak_mb']} MB at "
        f"{max(sizes)} rows (x{figures['driver_mem_ratio_1m_vs_100k']}); first task submitted "
        f"after {small['first_submit_s']} s / {big['first_submit_s']} s; whole runs "
        f"{small['wall_s']} s / {big['wall_s']} s."
    )
    details = {"summary": summary, "runs": {str(k): v for k, v in runs.items()}}
    benchlog.record("driver", figures, details, bench_dir=Path(args.bench_dir))
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
