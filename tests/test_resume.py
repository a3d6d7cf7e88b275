"""SIGKILL a run after a checkpoint, resume it, and the logged losses equal an uninterrupted run.

With and without DataLoader workers: starting a worker iterator must not draw from torch's
global RNG (which the checkpoint restores), or the resumed run drifts from the first step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_shards import make_train_shards, tiny_overrides

from t2v2t.training.checkpoint import load_checkpoint
from t2v2t.training.config import load_config
from t2v2t.training.loop import train
from t2v2t.training.metrics_log import read_metrics

ROOT = Path(__file__).resolve().parents[1]
TERMS = ("loss", "vtc", "vtm", "mlm", "lr")


def _cmd(run: Path, overrides: list[str], *extra: str) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "scripts" / "train.py"),
        "--task",
        "pretrain",
        "--preset",
        "tiny",
        "--run",
        str(run),
        *extra,
        *overrides,
    ]


def _steps(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [r for r in read_metrics(path) if "loss" in r] if path.exists() else []


# 2 workers in make test (the harder case: worker RNGs and prefetch); 0 in make test-slow.
@pytest.mark.parametrize("workers", [pytest.param(0, marks=pytest.mark.slow), 2])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path: Path, workers: int) -> None:
    # 32 videos, batch 8: 4 steps per epoch, 2 epochs; checkpoints every 3 steps and at epoch
    # ends (3 = mid-epoch: the resume must skip the 24 samples already seen in that epoch).
    shards = make_train_shards(tmp_path / "shards", num_samples=32, per_shard=8)
    overrides = tiny_overrides(
        shards, "optim.epochs=2", "train.ckpt_every_steps=3", f"data.num_workers={workers}"
    )

    reference = tmp_path / "reference"
    # Uninterrupted, in-process; checkpoints only at epoch ends (saving never touches the RNGs).
    train(load_config("pretrain", "tiny", [*overrides, "train.ckpt_every_steps=0"]), reference)
    ref = _steps(reference)
    assert [r["step"] for r in ref] == list(range(1, 9))

    run = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        _cmd(run, overrides),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        # Step 4 is logged only after the step-3 checkpoint was renamed into place.
        while not any(r["step"] >= 4 for r in _steps(run)):
            assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no step 4 within 240 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = load_checkpoint(run / "last.pt")["step"]
    assert saved in (3, 4, 6), saved  # a real, complete checkpoint from before the kill

    resumed = subprocess.run(
        _cmd(run, overrides, "--resume"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got = _steps(run)
    assert [r["step"] for r in got] == list(range(1, 9))  # each step once, nothing lost
    for a, b in zip(got, ref, strict=True):
        for term in TERMS:
            # Same CPU code path, one thread, deterministic kernels: bit-identical.
            assert a[term] == b[term], (a["step"], term, a[term], b[term])
    final, expected = load_checkpoint(run / "last.pt"), load_checkpoint(reference / "last.pt")
    assert final["step"] == expected["step"] == 8
    assert final["model"].keys() == expected["model"].keys()
    for name, tensor in expected["model"].items():
        assert torch.equal(final["model"][name], tensor), name
