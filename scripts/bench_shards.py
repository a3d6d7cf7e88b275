"""Shard-build benchmark: builder cost per video against an ffmpeg full decode, 1 -> 2 workers.

Renders WebVid-like clips (default 640x360, 10 s, 25 fps H.264) with the synthetic generator,
then in one run measures: ``ffmpeg -threads 1 -i v -f null -`` per video (the baseline), the
builder in-process (decode, resize, JPEG, write; the webvid recipe: 4 segments x 2 candidates),
and a local Dask cluster with 1 and then 2 worker processes (cluster start-up excluded).
Figures: ``shard_build_videos_per_s`` (one worker), ``shard_build_vs_ffmpeg`` (builder seconds /
ffmpeg seconds per video, decord; target <= 1.0), ``shard_build_vs_ffmpeg_pyav`` (the same with
the PyAV decoder, docs/data.md "Decoders"; goal <= 0.45), the ``_cpu`` variants of both (CPU
seconds, steadier on a loaded machine), ``shard_build_scaling_2w`` (target >= 1.7).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from preprocessing.adapters import load_records
from preprocessing.job import build_shards
from preprocessing.spec import ShardSpec
from preprocessing.synthetic import generate
from preprocessing.tools import find_tool
from t2v2t.errors import ArgumentParser, cli
from t2v2t.tools import benchlog


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def _ffmpeg_version() -> str:
    out = subprocess.run([find_tool("ffmpeg"), "-version"], capture_output=True, text=True)
    first = out.stdout.splitlines()[0] if out.stdout else "ffmpeg (version unknown)"
    return f"{first.split(' Copyright')[0]} ({find_tool('ffmpeg')})"


def _ffmpeg_seconds(paths: list[Path]) -> tuple[float, float]:
    """(wall, CPU) seconds of ``ffmpeg -threads 1 -i v -f null -`` over ``paths``."""
    t0, c0 = time.perf_counter(), _children_cpu()
    for p in paths:
        subprocess.run(
            [
                find_tool("ffmpeg"),
                "-nostdin",
                "-v",
                "error",
                "-threads",
                "1",
                "-i",
                str(p),
                "-f",
                "null",
                "-",
            ],
            check=True,
        )
    return time.perf_counter() - t0, _children_cpu() - c0


def _build(records, out: Path, spp: int, **kw) -> float:
    return _build_cpu(records, out, spp, **kw)[0]


def _build_cpu(records, out: Path, spp: int, decoder: str = "auto", **kw) -> tuple[float, float]:
    """(wall, CPU) seconds of one build with ``decoder`` (in-process: CPU is this process's)."""
    shutil.rmtree(out, ignore_errors=True)
    os.environ["T2V2T_DECODER"] = decoder
    t0, c0 = time.perf_counter(), time.process_time()
    spec = ShardSpec("webvid", "train", 4, "rand", 2, samples_per_shard=spp)
    m = build_shards(records, out, spec, progress=False, **kw)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    os.environ.pop("T2V2T_DECODER")
    assert m["num_failed"] == 0, "benchmark videos failed to build"
    assert m["created_with"]["decoder"] == decoder or decoder == "auto"
    return dt, dc


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(
        epilog="example: python scripts/bench_shards.py --quick", description=__doc__
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs")
    p.add_argument("--videos", type=int, default=96)  # enough work that Dask start-up is amortised
    p.add_argument("--size", default="640x360")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--bench-dir", default=None, help="where results go (default bench/)")
    args = p.parse_args(argv)
    if args.quick:
        args.videos, args.size, args.duration, args.fps = 4, "320x180", 2.0, 10.0
    width, height = map(int, args.size.split("x"))
    bench_dir = Path(args.bench_dir) if args.bench_dir else benchlog.BENCH_DIR
    if args.quick and args.bench_dir is None:
        bench_dir = Path(tempfile.mkdtemp(prefix="bench-quick-"))

    from dask.distributed import Client, LocalCluster

    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp:
        data = Path(tmp) / "webvid"
        generate(
            "webvid",
            data,
            size=args.videos,
            video_size=(width, height),
            duration=args.duration,
            fps=args.fps,
        )
        records = load_records("webvid", data, "train")
        paths = [r.media for r in records]
        _ffmpeg_seconds(paths[:2])  # warm the page cache for both sides
        ffmpeg_s, ffmpeg_cpu = _ffmpeg_seconds(paths)
        spp = max(1, len(records) // 16)
        own = {
            name: _build_cpu(records, Path(tmp) / f"inproc-{name}", spp, name, workers=0)
            for name in ("decord", "pyav")
        }
        builder_s = own["decord"][0]
        timings = {}
        for w in (1, 2):
            with (
                LocalCluster(
                    n_workers=w, threads_per_worker=1, processes=True, dashboard_address=":0"
                ) as cluster,
                Client(cluster),
            ):
                _build(records[:2], Path(tmp) / "warm", 1, scheduler=cluster.scheduler_address)
                timings[w] = _build(
                    records, Path(tmp) / f"w{w}", spp, scheduler=cluster.scheduler_address
                )
    n = len(records)
    figures = {
        "shard_build_videos_per_s": round(n / timings[1], 3),
        "shard_build_vs_ffmpeg": round(builder_s / ffmpeg_s, 3),
        "shard_build_vs_ffmpeg_pyav": round(own["pyav"][0] / ffmpeg_s, 3),
        "shard_build_vs_ffmpeg_cpu": round(own["decord"][1] / ffmpeg_cpu, 3),
        "shard_build_vs_ffmpeg_pyav_cpu": round(own["pyav"][1] / ffmpeg_cpu, 3),
        "shard_build_scaling_2w": round(timings[1] / timings[2], 3),
    }
    ffmpeg = _ffmpeg_version()
    summary = (
        f"{n} synthetic H.264 clips {width}x{height}, {args.duration:g} s at {args.fps:g} fps; "
        f"webvid recipe (4 segments x 2 candidates, short side 224, JPEG q90). Baseline {ffmpeg} "
        f"full decode {ffmpeg_s / n:.3f} s/video ({ffmpeg_cpu / n:.3f} CPU s), builder "
        f"in-process with decord {builder_s / n:.3f} s/video ({own['decord'][1] / n:.3f} CPU s; "
        f"ratio {figures['shard_build_vs_ffmpeg']}, CPU {figures['shard_build_vs_ffmpeg_cpu']}), "
        f"with PyAV {own['pyav'][0] / n:.3f} s/video ({own['pyav'][1] / n:.3f} CPU s; ratio "
        f"{figures['shard_build_vs_ffmpeg_pyav']}, CPU {figures['shard_build_vs_ffmpeg_pyav_cpu']}); "
        f"Dask 1 worker {timings[1]:.2f} s, "
        f"2 workers {timings[2]:.2f} s (x{figures['shard_build_scaling_2w']})."
        + (" QUICK RUN: sizes too small to mean anything." if args.quick else "")
    )
    details = {
        "summary": summary,
        "videos": n,
        "size": [width, height],
        "duration_s": args.duration,
        "fps": args.fps,
        "ffmpeg": ffmpeg,
        "ffmpeg_s": round(ffmpeg_s, 3),
        "ffmpeg_cpu_s": round(ffmpeg_cpu, 3),
        "builder_s": round(builder_s, 3),
        "builder_s_per_decoder": {k: [round(w, 3), round(c, 3)] for k, (w, c) in own.items()},
        "dask_s": {str(k): round(v, 3) for k, v in timings.items()},
    }
    benchlog.record("shards", figures, details, bench_dir=bench_dir)
    print(summary)
    print(f"[bench] shards: {figures} -> {bench_dir / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
