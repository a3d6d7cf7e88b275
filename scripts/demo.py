"""`make demo`: synthetic corpora -> shards -> tiny pre-training -> fine-tuning -> evaluation
with all three fusions -> ``runs/demo/report.md`` and ``runs/demo/metrics.json``.

``--size quick`` is the small version the test suite runs end to end. ``--recipe``: ``auto``
(default) runs the GPU recipe when CUDA is present (more steps, larger batches, 12-frame
fine-tuning, time-reversed negatives; docs/results.md) and the CPU recipe otherwise;
``--recipe gpu --size quick`` is the GPU recipe's dry run on a CPU. ``--stages`` runs a subset
(e.g. ``shards`` on a machine with ffmpeg, then ``pretrain,finetune,evaluate`` on the GPU).
A full GPU-recipe run on CUDA records ``gpu_demo_minutes``, ``gpu_demo_twin_preference`` and
``gpu_demo_r1`` into ``bench/results.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from t2v2t.errors import ArgumentParser, cli
from t2v2t.tools.benchlog import record
from t2v2t.tools.demo import RECIPES, STAGES, Demo, pick_recipe


def gpu_figures(metrics: dict, minutes: float) -> dict[str, float]:
    """The GPU recipe's headline: minutes, the best fusion's R@1 and its twin preference."""
    r = metrics["msrvtt"]["results"]
    best = max(r, key=lambda f: r[f]["t2v"]["R1"])
    return {
        "gpu_demo_minutes": round(minutes, 2),
        "gpu_demo_r1": round(float(r[best]["t2v"]["R1"]), 1),
        "gpu_demo_twin_preference": round(float(metrics["temporal"][best]["rate"]), 3),
        "gpu_demo_fusion": best,
    }


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(
        epilog="example: python scripts/demo.py --run runs/demo  (make demo)", description=__doc__
    )
    p.add_argument("--run", "--run-dir", dest="run", default="runs/demo", help="output folder")
    p.add_argument("--size", choices=["full", "quick"], default="full")
    p.add_argument("--recipe", choices=["auto", *RECIPES], default="auto")
    p.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset, in order")
    p.add_argument("--workers", type=int, default=2, help="Dask workers for the shard builds")
    p.add_argument("--fresh", action="store_true", help="delete the run folder first")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # inherited by every stage's subprocess
    cuda = torch.cuda.is_available()
    recipe = pick_recipe(args.recipe, cuda)
    run = Path(args.run)
    if args.fresh and run.exists():
        shutil.rmtree(run)
    stages = tuple(x for x in args.stages.split(",") if x)
    start = time.perf_counter()
    demo = Demo(run, RECIPES[recipe][args.size], workers=args.workers, recipe=recipe)
    try:
        metrics = demo.run_all(stages)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    minutes = (time.perf_counter() - start) / 60
    if "evaluate" not in stages:
        print(f"[demo] stages {','.join(stages)} done in {minutes:.1f} min ({recipe} recipe)")
        return 0
    r = metrics["msrvtt"]["results"]
    best = max(r, key=lambda f: r[f]["t2v"]["R1"])
    print(f"[demo] done in {time.perf_counter() - start:.0f} s: {run / 'report.md'}")
    print(f"[demo] MSR-VTT-style test text->video R@1: {r[best]['t2v']['R1']:.1f} ({best}); "
          f"temporal twins preferred: {metrics['temporal']['t2v2t']['rate']:.2f} (chance 0.5)")  # fmt: skip
    if recipe == "gpu":
        # Minutes of the stages run in this process (shards built elsewhere are not counted).
        figures = gpu_figures(metrics, sum(demo.timings.values()) / 60)
        metrics["gpu_demo"] = figures | {"recipe": recipe, "size": args.size, "cuda": cuda,
                                         "stages": list(stages)}  # fmt: skip
        (run / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        print(f"[demo] GPU recipe: {figures}")
        if cuda and args.size == "full":
            name = torch.cuda.get_device_name(0)
            summary = (f"`make demo` GPU recipe on {name}: {figures['gpu_demo_minutes']} min "
                       f"(stages {', '.join(stages)}), MSR-VTT-style test R@1 "
                       f"{figures['gpu_demo_r1']} ({figures['gpu_demo_fusion']}), direction twins "
                       f"preferred {figures['gpu_demo_twin_preference']} (chance 0.5). Targets: "
                       ">= 0.8 twins, R@1 >= 60, <= 10 min.")  # fmt: skip
            nums = {k: v for k, v in figures.items() if k != "gpu_demo_fusion"}
            record("demo_gpu", nums, {"summary": summary, "gpu_name": name,
                                      "fusion": figures["gpu_demo_fusion"],
                                      "timings": demo.timings})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
