"""The demo's GPU recipe: chosen on CUDA only, its training arguments, and its CPU dry run."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from t2v2t.tools.demo import GPU_SIZES, SIZES, Demo, DemoSize, pick_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_auto_picks_the_gpu_recipe_only_with_cuda() -> None:
    assert pick_recipe("auto", cuda=False) == "cpu"
    assert pick_recipe("auto", cuda=True) == "gpu"
    assert pick_recipe("cpu", cuda=True) == "cpu"
    with pytest.raises(ValueError, match="--recipe"):
        pick_recipe("tpu", cuda=False)


def test_the_cpu_recipe_trains_as_before() -> None:
    # Its training is unchanged; its MSR-VTT-style test set grew to 300 videos, 30% of them
    # near duplicates, to leave the ceiling (docs/results.md).
    assert dataclasses.replace(SIZES["full"], msrvtt_test=100, msrvtt_near=0.0) == DemoSize(
        webvid=600, msrvtt=800, msrvtt_test=100, anet=400, pretrain_steps=300,
        finetune_steps=200, batch_size=16, image_size=112, eval_k=32, finetune_frames=4,
    )  # fmt: skip
    assert (SIZES["full"].msrvtt_test, SIZES["full"].msrvtt_near) == (300, 0.3)
    assert GPU_SIZES["full"].msrvtt_near == 0.0  # the GPU recipe's targets were set on 100


def test_the_demo_passes_its_test_set_to_the_shard_builds(tmp_path) -> None:
    demo = Demo(tmp_path, SIZES["full"], log=lambda _m: None)
    calls: list[list[str]] = []
    demo.sh = lambda stage, script, *args: calls.append(list(args))  # type: ignore[method-assign]
    demo.build_shards()
    msrvtt = next(c for c in calls if c[1] == "msrvtt")
    assert msrvtt[msrvtt.index("--synthetic-test-size") + 1] == "300"
    assert msrvtt[msrvtt.index("--synthetic-near-duplicates") + 1] == "0.3"
    assert not any("--synthetic-near-duplicates" in c for c in calls if c[1] != "msrvtt")


def _args(size: DemoSize, tmp_path: Path) -> dict[str, list[str]]:
    demo = Demo(tmp_path, size, log=lambda _m: None)
    calls: dict[str, list[str]] = {}
    demo.sh = lambda stage, script, *args: calls.__setitem__(stage, list(args))  # type: ignore[method-assign]
    demo.pretrain()
    demo.finetune()
    return calls


def test_gpu_recipe_adds_reversed_negatives_and_a_schedule_spanning_its_steps(tmp_path) -> None:
    for name, size in GPU_SIZES.items():
        calls = _args(size, tmp_path)
        for stage in ("pretrain", "finetune"):
            assert "loss.reverse=0.25" in calls[stage], (name, stage)
        assert f"optim.epochs={size.pretrain_epochs}" in calls["pretrain"]
        # The cosine schedule must not end before max_steps: epochs x steps/epoch >= steps.
        per_epoch = math.ceil(size.webvid / size.batch_size)
        assert size.pretrain_epochs * per_epoch >= size.pretrain_steps, name
    cpu = _args(SIZES["full"], tmp_path)
    assert not any(a.startswith(("loss.reverse", "optim.epochs")) for a in cpu["pretrain"])
    assert GPU_SIZES["full"].batch_size * GPU_SIZES["full"].pretrain_steps >= 20 * (
        SIZES["full"].batch_size * SIZES["full"].pretrain_steps
    )  # ~25x the CPU demo's pre-training samples


def test_training_stages_without_shards_are_a_clear_error(tmp_path, capsys) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    import demo as demo_script

    rc = demo_script.main(["--recipe", "gpu", "--size", "quick", "--run", str(tmp_path / "d"),
                           "--stages", "pretrain,finetune"])  # fmt: skip
    assert rc == 1
    assert "run the shards stage first" in capsys.readouterr().err


@pytest.mark.slow
def test_gpu_recipe_dry_run_on_cpu(tmp_path) -> None:
    run = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "scripts/demo.py", "--recipe", "gpu", "--size", "quick", "--run",
         str(run)], cwd=ROOT, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    gpu = metrics["gpu_demo"]
    assert gpu["recipe"] == "gpu" and 0 <= gpu["gpu_demo_twin_preference"] <= 1
    assert 0 <= gpu["gpu_demo_r1"] <= 100 and gpu["gpu_demo_minutes"] > 0
    assert "GPU (the GPU recipe)" in (run / "report.md").read_text()
