"""The training loop on CPU: losses go down, the run directory holds what it promises."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from train_shards import make_train_shards, tiny_overrides

from t2v2t.models import build_model, load_weights
from t2v2t.models.vindlu import is_pretrained_text, is_temporal
from t2v2t.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from t2v2t.training.config import load_config
from t2v2t.training.loop import train
from t2v2t.training.metrics_log import MetricsLog, read_metrics
from t2v2t.training.optim import (
    CosineSchedule,
    build_optimizer,
    cosine_lr,
    lr_scale_for,
    no_weight_decay,
    param_groups,
)

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def test_cosine_schedule_with_fractional_warmup() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    sched = CosineSchedule(
        opt, lr=1e-4, min_lr=1e-6, warmup_epochs=0.5, epochs=5, steps_per_epoch=10
    )
    assert sched.warmup_steps == 5 and sched.total_steps == 50
    lrs = []
    for _ in range(50):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    assert lrs[0] == pytest.approx(2e-5) and lrs[4] == pytest.approx(1e-4)  # linear warm-up
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))  # then only down
    mid = cosine_lr(5 + 45 // 2, lr=1e-4, min_lr=1e-6, warmup_steps=5, total_steps=50)
    assert mid == pytest.approx((1e-4 + 1e-6) / 2, rel=0.05)
    assert lrs[-1] > 1e-6 and cosine_lr(
        50, lr=1e-4, min_lr=1e-6, warmup_steps=5, total_steps=50
    ) == (pytest.approx(1e-6))
    state = sched.state_dict()
    again = CosineSchedule(
        opt, lr=1e-4, min_lr=1e-6, warmup_epochs=0.5, epochs=5, steps_per_epoch=10
    )
    again.load_state_dict(state)
    assert again.get_lr() == sched.get_lr() and opt.param_groups[0]["lr"] == sched.get_lr()


def test_no_weight_decay_on_biases_norms_temperature_positions() -> None:
    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)
            self.norm = torch.nn.LayerNorm(4)
            self.temp = torch.nn.Parameter(torch.tensor(0.07))
            self.pos_embed = torch.nn.Parameter(torch.zeros(1, 5, 4))

    decay, no_decay = param_groups(Tiny(), 0.02)
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 4])]
    assert len(no_decay["params"]) == 5 and no_decay["weight_decay"] == 0.0
    # By name in the real model: the temporal attention's weights decay like any other weight;
    # the temperature and the temporal position embedding do not.
    matrix, vector = torch.zeros(4, 4), torch.zeros(4)
    assert not no_weight_decay("vision.temporal.0.qkv.weight", matrix)
    assert no_weight_decay("vision.temporal_pos", matrix)
    assert no_weight_decay("temp", torch.zeros(()))
    assert no_weight_decay("vision.temporal.0.scale", vector)


def test_lr_scale_groups_for_text_and_temporal_parameters() -> None:
    """Every parameter lands in the group of its own multiplier: pre-trained BERT weights,
    the temporal modules, the rest; the optimiser starts each group at lr x its scale."""
    model = build_model("tiny", init="pretrained", overrides={"image_size": 32})
    opt = build_optimizer(model, 1e-4, 0.02, (0.9, 0.999), text_lr_scale=0.5, temporal_lr_scale=30)
    scale_of = {id(p): g["lr_scale"] for g in opt.param_groups for p in g["params"]}
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(1e-4 * g["lr_scale"])
    names = dict(model.named_parameters())
    assert set(scale_of) == {id(p) for p in names.values()}
    for name, p in names.items():
        assert scale_of[id(p)] == lr_scale_for(name, 0.5, 30), name
    temporal = [n for n in names if is_temporal(n)]
    assert "vision.temporal_pos" in temporal and "vision.temporal.0.scale" in temporal
    assert all(scale_of[id(names[n])] == 30 for n in temporal)
    assert scale_of[id(names["text.layers.0.attention.self.query.weight"])] == 0.5
    assert not is_pretrained_text("fusion.layers.0.crossattention.key.weight")
    assert scale_of[id(names["vision_proj.weight"])] == 1.0


def test_checkpoint_atomic_and_rng_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    state = rng_state()
    expected = (torch.rand(3), np.random.rand(2), random.random())
    save_checkpoint(path, {"model": {}, "rng": [state], "step": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left
    loaded = load_checkpoint(path)  # weights_only=True
    set_rng_state(loaded["rng"][0])
    again = (torch.rand(3), np.random.rand(2), random.random())
    assert torch.equal(expected[0], again[0]) and (expected[1] == again[1]).all()
    assert expected[2] == again[2] and loaded["step"] == 3


def test_metrics_log_drops_steps_after_resume_point(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "m.jsonl")
    for step in range(1, 6):
        log.write({"step": step, "loss": 1.0 / step})
    log.close()
    with open(tmp_path / "m.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # torn line from a kill
    log = MetricsLog(tmp_path / "m.jsonl", keep_until_step=3)
    log.write({"step": 4, "loss": 9.0})
    log.close()
    assert [r["step"] for r in read_metrics(tmp_path / "m.jsonl")] == [1, 2, 3, 4]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """32 optimiser steps of the tiny preset (VTC+VTM+MLM) on 128 toy videos, in-process."""
    root = tmp_path_factory.mktemp("train")
    shards = make_train_shards(root / "shards", num_samples=128, per_shard=32)
    cfg = load_config("pretrain", "tiny", tiny_overrides(shards, "optim.epochs=2"))
    run = root / "run"
    result = train(cfg, run)
    assert result.step == 32
    return run


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def test_tiny_cpu_run_lowers_every_loss(tiny_run: Path) -> None:
    rows = [r for r in read_metrics(tiny_run / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in rows] == list(range(1, 33))
    for term in ("loss", "vtc", "vtm", "mlm"):
        values = [r[term] for r in rows]
        assert all(math.isfinite(v) for v in values)
        assert _mean(values[-5:]) < _mean(values[:5]), (term, values)
    assert rows[0]["samples_per_s"] > 0 and rows[-1]["epoch"] == 2.0
    assert max(r["lr"] for r in rows) == pytest.approx(1e-3, rel=1e-6)  # warm-up reached the peak


def test_run_dir_contents(tiny_run: Path) -> None:
    cfg_text = (tiny_run / "config.yaml").read_text()
    assert "preset: tiny" in cfg_text and "max_text_len: 16" in cfg_text
    ckpt = load_checkpoint(tiny_run / "last.pt")
    assert {
        "model",
        "preset",
        "config",
        "optimizer",
        "scheduler",
        "rng",
        "data_position",
        "step",
        "git_commit",
    } <= set(ckpt)
    assert ckpt["step"] == 32 and ckpt["data_position"] == {
        "epoch": 2,
        "samples": 0,
        "world_size": 1,
        "earlier": [],  # no part of the epoch on another process count
        "global_batch": {"webvid": 8},  # what a mid-epoch resume must keep
    }
    assert ckpt["config"]["optim"]["lr"] == 1e-3 and ckpt["scheduler"]["step_count"] == 32
    # The temporal position embedding has one row per training frame (VindLU's rule).
    frames = ckpt["model_config"]["num_frames"]
    model = build_model("tiny", "random", overrides={"image_size": 32, "num_frames": frames})
    load_weights(model, tiny_run / "last.pt")  # the model package reads our checkpoints


def test_plot_run(tiny_run: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plot_run.py"), str(tiny_run)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    png = tiny_run / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    bad = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plot_run.py"), str(tiny_run / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "metrics.jsonl does not exist" in bad.stderr
    assert json.loads((tiny_run / "metrics.jsonl").read_text().splitlines()[0])["step"] == 1


def test_finetune_msrvtt_hands_on_the_last_epoch_test_only_monitored(
    tiny_run: Path, tmp_path: Path
) -> None:
    """MSR-VTT (VindLU: stop_key None): best.pt is the last epoch whatever the test split says;
    the per-epoch test evaluation is labelled monitoring and chooses nothing."""
    train_dir = make_train_shards(
        tmp_path / "shards", dataset="msrvtt", num_samples=16, per_shard=8
    )
    test_dir = make_train_shards(
        tmp_path / "shards", dataset="msrvtt", split="test", num_samples=12, per_shard=12
    )
    overrides = tiny_overrides(
        train_dir,
        f"train.init_checkpoint={tiny_run / 'last.pt'}",
        f"eval.shards={test_dir}",
        "eval.num_frames=2",
        "eval.k=4",
        "eval.batch_size=8",
        "optim.epochs=2",
        "optim.lr=1e-4",
        source="msrvtt",
    )
    cfg = load_config("finetune-msrvtt", "tiny", overrides)
    assert cfg.loss.mlm == 0 and cfg.train.eval_every_epoch and cfg.train.select == "last"
    run = tmp_path / "ft"
    result = train(cfg, run)
    evals = [r for r in read_metrics(run / "metrics.jsonl") if "eval_t2v_avg" in r]
    assert [(r["epoch"], r["split"], r["role"]) for r in evals] == [
        (1, "test", "monitor"),
        (2, "test", "monitor"),
    ]
    for epoch in (1, 2):
        res = json.loads((run / f"eval_epoch{epoch}.json").read_text())
        assert set(res["results"]) == {"none", "naive", "t2v2t"} and res["num_videos"] == 12
        assert (res["role"], res["selected_by"]) == ("monitor", "last")
    assert not list(run.glob("select_epoch*.json"))  # nothing chose on any split
    assert load_checkpoint(run / "best.pt")["data_position"]["epoch"] == 2  # the last epoch
    assert result.best_metric is None
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["select"] == "last"
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert all(r["mlm"] == 0.0 for r in rows) and max(r["lr"] for r in rows) <= 1e-4


def test_finetune_didemo_chooses_on_val_without_reading_test(
    tiny_run: Path, tmp_path: Path
) -> None:
    """DiDeMo (VindLU: stop_key val/): best.pt is the epoch with the best val r_mean, the mean
    of text-to-video and video-to-text R@1/5/10; the test folder need not even exist."""
    root = tmp_path / "shards"
    train_dir = make_train_shards(root, dataset="didemo", num_samples=16, per_shard=8)
    make_train_shards(root, dataset="didemo", split="val", num_samples=10, per_shard=10)
    overrides = tiny_overrides(
        train_dir,
        f"train.init_checkpoint={tiny_run / 'last.pt'}",
        f"eval.shards={root / 'didemo' / 'test_4f'}",  # never built: val is beside its name
        "train.eval_every_epoch=false",
        "eval.num_frames=2",
        "eval.k=4",
        "eval.batch_size=8",
        "optim.epochs=2",
        "optim.lr=1e-4",
        source="didemo",
    )
    cfg = load_config("finetune-didemo", "tiny", overrides)
    assert cfg.train.select == "val:r_mean"
    run = tmp_path / "ft"
    result = train(cfg, run)
    values = []
    for epoch in (1, 2):
        res = json.loads((run / f"select_epoch{epoch}.json").read_text())
        assert (res["split"], res["role"], res["selected_by"]) == ("val", "select", "val:r_mean")
        t2v, v2t = res["results"]["t2v2t"]["t2v"], res["results"]["t2v2t"]["v2t"]
        # VindLU's r_mean: the six recalls' mean
        values.append(sum(d[k] for d in (t2v, v2t) for k in ("R1", "R5", "R10")) / 6)
    assert not list(run.glob("eval_epoch*.json"))
    best_epoch = 1 + max(range(2), key=lambda i: (values[i], -i))
    assert load_checkpoint(run / "best.pt")["data_position"]["epoch"] == best_epoch
    assert result.best_metric == pytest.approx(max(values))


def test_a_selection_split_without_shards_is_one_error(tmp_path: Path) -> None:
    train_dir = make_train_shards(tmp_path / "shards", dataset="didemo", num_samples=8)
    test_dir = make_train_shards(tmp_path / "shards", dataset="didemo", split="test", num_samples=8)
    run = tmp_path / "ft"
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--task", "finetune-didemo",
           "--preset", "tiny", "--run-dir", str(run),
           *tiny_overrides(train_dir, "train.init_checkpoint=null", "model.init=random",
                           f"eval.shards={test_dir}", source="didemo")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "train.select" in lines[0] and "SPLIT=val" in lines[0], proc.stderr
    assert not run.exists()  # nothing written
    bad = subprocess.run([*cmd, "train.select=val:r_max"], capture_output=True, text=True,
                         timeout=300, env=ENV)  # fmt: skip
    assert bad.returncode == 2 and "train.select: 'val:r_max'" in bad.stderr
    assert not run.exists()
