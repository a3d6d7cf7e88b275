"""End to end: the demo pipeline at a small size, every stage through the users' commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_demo_runs_every_stage_and_learns(tmp_path: Path) -> None:
    run = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "scripts/demo.py", "--size", "quick", "--run", str(run)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # Every stage left its files.
    for split in ("train_4f",):
        assert (run / "shards" / "webvid" / split / "manifest.json").is_file()
    for split in ("msrvtt/train_12f", "msrvtt/test_12f", "anet/val_32f"):
        manifest = json.loads((run / "shards" / split / "manifest.json").read_text())
        assert manifest["num_samples"] > 0 and manifest["num_failed"] == 0
    for stage in ("pretrain", "finetune-msrvtt"):
        assert (run / stage / "last.pt").is_file()
        assert (run / stage / "metrics.jsonl").stat().st_size > 0
    assert (run / "finetune-msrvtt" / "best.pt").is_file()
    for name in ("msrvtt_test", "anet_val"):
        assert (run / "eval" / f"{name}.json").is_file()
        assert (run / "eval" / f"{name}_scores.npz").is_file()
    for png in ("recall_at_k.png", "curves_pretrain.png", "curves_finetune-msrvtt.png"):
        assert (run / png).stat().st_size > 1000
    report = (run / "report.md").read_text()
    assert "## Ablation" in report and "Temporal check" in report and "scripts/train.py" in report
    for name in ("msrvtt_test", "anet_val"):
        assert f"(eval/{name}.html)" in report and (run / "eval" / f"{name}.html").is_file()

    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["timings"]) >= {"shards", "pretrain", "finetune", "eval-msrvtt", "eval-anet"}
    res = metrics["msrvtt"]
    chance = 100.0 / res["num_videos"]
    best_r1 = max(res["results"][f]["t2v"]["R1"] for f in ("none", "naive", "t2v2t"))
    # A wide margin over chance: at least 3x (chance is 1/num_videos).
    assert best_r1 >= 3 * chance, (best_r1, chance, res["results"])

    # The attribute probe on the demo's own checkpoint and corpus: with the encoder trained,
    # colour (readable frame by frame) is learnt within 100 steps (measured: 1.00 vs 0.25).
    probe = [sys.executable, "scripts/probe_attribute.py", "--ckpt",
             str(run / "finetune-msrvtt" / "best.pt"), "--shards", str(run / "shards" / "msrvtt")]  # fmt: skip
    out = tmp_path / "probe.json"
    attrs = run / "data" / "msrvtt" / "synthetic_attributes.json"
    proc = subprocess.run(
        [*probe, "--attributes", str(attrs), "--attribute", "colour", "--train-encoder",
         "--steps", "100", "--eval-every", "50", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert len(result["classes"]) >= 4 and [r["step"] for r in result["rows"]] == [50, 100]
    assert result["rows"][-1]["test_acc"] >= 3 * result["chance"] - 1e-9, result
    assert "| 100 |" in proc.stdout  # the table
    # Another corpus's attribute file does not describe these clips: a clear error naming it.
    wrong = run / "data" / "anet" / "synthetic_attributes.json"
    proc = subprocess.run(
        [*probe, "--attributes", str(wrong), "--attribute", "colour", "--steps", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 2 and "error:" in proc.stderr and str(wrong) in proc.stderr
