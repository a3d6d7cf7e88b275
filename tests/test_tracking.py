"""Experiment tracking: TensorBoard and W&B (offline) get the numbers metrics.jsonl holds, and
the run's log holds the library messages (where the weights came from)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from train_shards import make_train_shards, tiny_overrides

from t2v2t.training.config import ConfigError, load_config
from t2v2t.training.loggers import scalar_tags
from t2v2t.training.metrics_log import read_metrics

ROOT = Path(__file__).resolve().parents[1]


def _tensorboard_scalars(folder: Path) -> dict[str, dict[int, float]]:
    """Every scalar of the event files under ``folder``, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def _assert_same(records: list[dict], scalars: dict[str, dict[int, float]]) -> int:
    n = 0
    for record in records:
        for tag, value in scalar_tags(record).items():
            got = scalars[tag][record["step"]]  # KeyError: missing from the event files
            assert got == pytest.approx(value, rel=1e-6, abs=1e-7), (tag, record["step"])
            n += 1
    return n


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("track")
    return {
        "train": make_train_shards(root / "shards", num_samples=24, per_shard=8),
        "ft": make_train_shards(root / "shards", dataset="msrvtt", num_samples=16, per_shard=8),
        "test": make_train_shards(
            root / "shards", dataset="msrvtt", split="test", num_samples=8, per_shard=8
        ),
        "root": root,
    }


def test_tensorboard_holds_what_metrics_jsonl_holds(toy: dict[str, Path]) -> None:
    from t2v2t.training.loop import train

    overrides = tiny_overrides(
        toy["train"], "train.max_steps=3", "train.loggers=[jsonl,tensorboard]"
    )
    cfg = load_config("pretrain", "tiny", overrides)
    run = toy["root"] / "pre"
    assert train(cfg, run).step == 3
    records = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3]
    scalars = _tensorboard_scalars(run / "tensorboard")
    assert {"train/loss", "train/vtc", "train/lr", "train/samples_per_s"} <= set(scalars)
    assert all(sorted(scalars[t]) == [1, 2, 3] for t in scalars)
    assert _assert_same(records, scalars) >= 3 * 7
    log = (run / "train.log").read_text()
    assert "t2v2t.models.build" in log and "weights from" in log  # where the weights came from

    # Fine-tuning with an evaluation per epoch: its metrics reach TensorBoard too.
    overrides = tiny_overrides(
        toy["ft"],
        f"train.init_checkpoint={run / 'last.pt'}",
        f"eval.shards={toy['test']}",
        "eval.num_frames=2",
        "eval.k=4",
        "eval.batch_size=8",
        "optim.epochs=1",
        "optim.warmup_epochs=0",
        "train.loggers=[jsonl,tensorboard]",
        source="msrvtt",
    )
    ft = toy["root"] / "ft"
    train(load_config("finetune-msrvtt", "tiny", overrides), ft)
    records = read_metrics(ft / "metrics.jsonl")
    (ev,) = [r for r in records if "eval_t2v_avg" in r]
    assert {"eval_t2v2t_t2v_R1", "eval_none_v2t_R10", "eval_naive_t2v_Avg"} <= set(ev)
    scalars = _tensorboard_scalars(ft / "tensorboard")
    assert scalars["eval/t2v2t_t2v_R1"][ev["step"]] == pytest.approx(ev["eval_t2v2t_t2v_R1"])
    _assert_same(records, scalars)


@pytest.mark.slow  # W&B's service process takes ~40 s to start and stop on 2 cores
def test_wandb_offline_writes_its_files_without_network(toy: dict[str, Path]) -> None:
    run = toy["root"] / "wb"
    dead = "http://127.0.0.1:9"  # any connection attempt fails at once
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
        "WANDB_BASE_URL": dead,
        "HTTP_PROXY": dead,
        "HTTPS_PROXY": dead,
        "WANDB_API_KEY": "",
    }
    overrides = tiny_overrides(toy["train"], "train.max_steps=3", "train.loggers=[jsonl,wandb]")
    cmd = [sys.executable, "scripts/train.py", "--task", "pretrain", "--preset", "tiny"]
    proc = subprocess.run(
        [*cmd, "--run-dir", str(run), *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = (run / "wandb_id.txt").read_text().strip()
    (offline,) = (run / "wandb").glob(f"offline-run-*-{run_id}")
    data = offline / f"run-{run_id}.wandb"
    assert data.stat().st_size > 0
    # The records are in the run file (W&B's own protobuf stream): the loss keys are there.
    blob = data.read_bytes()
    assert b"train/loss" in blob and b"train/samples_per_s" in blob
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2, 3]


def test_unknown_logger_is_a_config_error(toy: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="train.loggers: unknown"):
        load_config("pretrain", "tiny", tiny_overrides(toy["train"], "train.loggers=[mlflow]"))
