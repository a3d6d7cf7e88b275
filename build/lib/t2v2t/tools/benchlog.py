"""Benchmark bookkeeping: merge figures into ``bench/results.json`` and redraw ``bench/README.md``.

Each benchmark script calls :func:`record` with its flat headline keys (docs/results.md,
"Benchmarks"; e.g. ``loader_frames_per_s``) and a details dict; earlier values of the same keys move
to ``previous`` so the next run can be compared with the last.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"

# Shown in bench/README.md until `make bench-gpu` has recorded its figures on a GPU.
GPU_PENDING = """## gpu (not yet measured: no GPU was lent)

`make bench-gpu` (`scripts/bench_gpu.py`) measures, on one CUDA GPU in ~8 minutes: the paper's
pre-training step (base preset, batch 64, 4 frames, 224 px, bf16 autocast, SDPA, VTC+VTM+MLM)
on in-memory batches (the ceiling) and fed by the real loader from shards with N workers, CPU
decode and `data.decode_device=cuda`; the fine-tuning step (12 frames, batch 32); `torch.compile`
on the encoders; JPEG decode frames/s on the GPU beside the CPU path; an MSR-VTT-size evaluation
(1,000 x 1,000, 12 frames, k = 128) with shared pairs vs VindLU's two passes. Keys: `gpu_name`,
`train_samples_per_s_base` (target >= 168 on an H100-class GPU), `train_loader_vs_ceiling`
(target >= 0.95), `gpu_jpeg_frames_per_s`, `eval_msrvtt_size_seconds`,
`eval_time_ratio_two_pass_vs_shared`; the GPU demo adds `gpu_demo_minutes`,
`gpu_demo_twin_preference`, `gpu_demo_r1`. Run `make bench-gpu` on a GPU machine, or
`scripts/device_check.sh prepare` here, then `bench` and `demo` on the GPU box.
`make bench-gpu ARGS=--quick` is the CPU dry run (tiny sizes, figures to
`runs/bench_gpu_quick.json`, never here). None of these figures has been measured yet: the tasks
that built this were not lent a GPU."""

# One-off experiments whose figures docs/results.md quotes; written under every `make bench` table.
EXPERIMENTS = """## experiments (one-off, not part of `make bench`)

**Direction probe, NVIDIA H200, 2026-11-27** (raw curves: `experiments/direction_probe_h200.json`).
Can the tiny preset's video encoder (4-layer ViT, 112 px, zero-initialised temporal modules, mean
pooling) learn the direction of motion of the demo's MSR-VTT-style clips when it is supervised on
direction directly? A fresh encoder and a linear head on its clip feature, both trained; batch 64,
AdamW (encoder lr 5e-4, head 1e-3, weight decay 0.02), bf16 autocast; the 4 middle frames of the
full CPU demo's `msrvtt/train_12f` and `test_12f` shards; 4 direction classes (chance 0.25).

| attribute | temporal lr x | steps | held-out accuracy | seconds |
|---|---|---|---|---|
| colour | 1 | 400 | 1.00 from step 50 on | 12 |
| direction | 1 | 4,000 | 0.36 at 500, 0.50 at 1,500, 0.81 at 3,000, 0.79 at 4,000 | 72 |
| direction | 30 | 4,000 | 0.23 at 4,000 (at most 0.31) | 76 |
| direction | 30 | 12,000 | 0.43 at 12,000 | 201 |

How it was made: by a one-off script that read the clips from a file exported by hand; the script
has since been removed, as nothing in the repository wrote its input. The same experiment with
the repository's own tools on a machine with CUDA (not re-run since: the task that removed the
script had no GPU). The random draws differ, so expect the shape of the curves, not the same
figures step for step; and the tiny encoder has changed since (VindLU's temporal attention after
each block, docs/results.md, "Known gap: frame order"), so a re-run measures today's encoder:

```bash
python scripts/demo.py --size full --recipe cpu --stages shards   # corpora + shards, runs/demo
python scripts/probe_attribute.py --shards runs/demo/shards/msrvtt \\
    --attributes runs/demo/data/msrvtt/synthetic_attributes.json --attribute direction \\
    --train-encoder --frames 4 --batch-size 64 --steps 4000 --eval-every 500 \\
    --weight-decay 0.02 --temporal-lr-scale 1 --device cuda --out runs/probe_direction.json
```"""


def machine() -> str:
    """A one-line description of the machine a figure was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"{cpu}, {os.cpu_count()} cores{gpu}, {platform.system()} {platform.release()}"


def load(bench_dir: Path = BENCH_DIR) -> dict[str, Any]:
    path = bench_dir / "results.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def record(
    bench: str, figures: dict[str, float], details: dict[str, Any], bench_dir: Path = BENCH_DIR
) -> dict[str, Any]:
    """Merge one benchmark's figures into results.json and rewrite README.md; returns the results."""
    bench_dir.mkdir(parents=True, exist_ok=True)
    results = load(bench_dir)
    previous = results.setdefault("previous", {})
    for key, value in figures.items():
        if key in results:
            previous[key] = results[key]
        results[key] = value
    results.setdefault("details", {})[bench] = {
        **details,
        "machine": details.get("machine", machine()),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "keys": sorted(figures),
    }
    (bench_dir / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    write_readme(results, bench_dir)
    return results


def write_readme(results: dict[str, Any], bench_dir: Path = BENCH_DIR) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`scripts/bench.py`); figures in `results.json`. Each benchmark",
        "measures the system and its baseline in the same run, on the same machine, as ratios.",
        "",
        "| benchmark | figure | value | previous | machine | date |",
        "|---|---|---|---|---|---|",
    ]
    prev = results.get("previous", {})
    for bench, det in sorted(results.get("details", {}).items()):
        for key in det.get("keys", []):
            val = results.get(key)
            shown = f"{val:.3g}" if isinstance(val, float) else str(val)
            old = prev.get(key, "")
            old = f"{old:.3g}" if isinstance(old, float) else str(old)
            lines.append(
                f"| {bench} | `{key}` | {shown} | {old} | {det['machine']} | {det['date']} |"
            )
    for bench, det in sorted(results.get("details", {}).items()):
        if det.get("summary"):
            lines += ["", f"## {bench}", "", det["summary"]]
    if "gpu" not in results.get("details", {}):
        lines += ["", GPU_PENDING]
    lines += ["", EXPERIMENTS]
    (bench_dir / "README.md").write_text("\n".join(lines) + "\n")
