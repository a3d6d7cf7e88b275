"""The GPU benchmark's CPU dry run: every phase runs, the headline keys come out, bench/ untouched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = (
    "gpu_name",
    "train_samples_per_s_base",
    "train_loader_vs_ceiling",
    "gpu_jpeg_frames_per_s",
    "eval_msrvtt_size_seconds",
    "eval_time_ratio_two_pass_vs_shared",
)
PHASES = ("train-ceiling", "train-loader", "train-loader-gpu-decode", "jpeg", "finetune-ceiling",
          "eval", "train-ceiling-compiled")  # fmt: skip


def test_bench_gpu_quick_runs_every_phase(tmp_path) -> None:
    bench = ROOT / "bench" / "results.json"
    before = bench.read_bytes() if bench.is_file() else None
    out = tmp_path / "quick.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_gpu.py"), "--quick", "--out", str(out),
         "--work", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    data = json.loads(out.read_text())
    assert set(PHASES) <= set(data["phases"])
    for name in PHASES:
        assert "skipped" not in data["phases"][name], (name, data["phases"][name])
    figures = data["figures"]
    for key in KEYS[1:]:
        assert isinstance(figures[key], float) and figures[key] > 0, (key, figures[key])
    ev = data["phases"]["eval"]
    # Two passes compute every pair in both candidate sets: never fewer than shared pairs.
    assert ev["two_pass"]["pairs"] >= ev["shared"]["pairs"] > 0
    assert data["phases"]["jpeg"]["max_abs_diff_vs_cpu"] <= 2  # same geometry as the CPU path
    assert "| eval shared |" in res.stdout  # the table is printed
    after = bench.read_bytes() if bench.is_file() else None
    assert after == before, "the dry run must not write bench/results.json"
