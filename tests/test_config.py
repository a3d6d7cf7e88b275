"""Typed configs: recipes match the paper, overrides are type-checked, bad input exits 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from t2v2t.training.config import (
    TASKS,
    ConfigError,
    config_from_dict,
    dump_yaml,
    load_config,
)
from t2v2t.training.preflight import check_files

ROOT = Path(__file__).resolve().parents[1]


def test_recipes_follow_the_paper() -> None:
    pre = load_config("pretrain")
    assert (pre.optim.lr, pre.optim.min_lr, pre.optim.epochs, pre.optim.warmup_epochs) == (
        1e-4,
        1e-6,
        10,
        1.0,
    )
    assert pre.optim.betas == [0.9, 0.999] and pre.optim.weight_decay == 0.02
    assert pre.data.batch_size == 64 and pre.model.preset == "base"
    assert {k: (s.dir, s.num_frames) for k, s in pre.data.sources.items()} == {
        "webvid": ("shards/webvid/train_4f", 4),
        "cc3m": ("shards/cc3m/train_1f", 1),
    }
    assert (pre.loss.vtc, pre.loss.vtm, pre.loss.mlm) == (1.0, 1.0, 1.0)
    expected = {"msrvtt": (5, "test_12f"), "didemo": (10, "test_12f"), "anet": (10, "val_32f")}
    for ds, (epochs, eval_dir) in expected.items():
        ft = load_config(f"finetune-{ds}")
        assert (ft.optim.lr, ft.optim.min_lr, ft.optim.warmup_epochs) == (1e-5, 1e-6, 0.5)
        assert ft.optim.epochs == epochs and ft.data.batch_size == 32
        assert ft.data.sources[ds].num_frames == 12 and ft.loss.mlm == 0.0
        assert ft.train.init_checkpoint == "runs/pretrain/last.pt"
        assert ft.train.eval_every_epoch and ft.eval.shards == f"shards/{ds}/{eval_dir}"
    assert load_config("finetune-anet").data.sources["anet"].max_text_len == 64


@pytest.mark.parametrize("task", TASKS)
def test_tiny_preset_layers_over_every_task(task: str) -> None:
    cfg = load_config(task, "tiny")
    assert cfg.model.preset == "tiny" and cfg.data.batch_size < 64 and cfg.task == task
    # The resolved config survives a round trip through its YAML/dict form (checkpoints, resume).
    assert config_from_dict(cfg.to_dict()) == cfg
    assert "preset: tiny" in dump_yaml(cfg)


def test_overrides_are_typed() -> None:
    cfg = load_config(
        "pretrain",
        "tiny",
        [
            "optim.lr=3e-5",  # YAML would read this as a string; it is a float field
            "optim.betas=[0.8, 0.99]",
            "train.grad_checkpointing=true",
            "train.max_steps=7",
            "data.sources.webvid.batch_size=3",
            "data.sources.cc3m=null",  # drops a source
            "model.image_size=64",
        ],
    )
    assert cfg.optim.lr == 3e-5 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.betas == [0.8, 0.99]
    assert cfg.train.grad_checkpointing is True and cfg.train.max_steps == 7
    assert cfg.source_batch_size("webvid") == 3 and list(cfg.data.sources) == ["webvid"]
    assert cfg.model.image_size == 64


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "did you mean 'optim.lr'"),
        ("trian.max_steps=1", "did you mean 'train'"),
        ("optim.lr.x=1", "optim.lr is not a section"),
        ("optim.lr=fast", "optim.lr: expected a number"),
        ("train.max_steps=1.5", "train.max_steps: expected an integer"),
        ("train.grad_checkpointing=maybe", "expected true/false"),
        ("optim.betas=0.9", "optim.betas: expected a list"),
        ("optim.min_lr=1", "min_lr <= lr"),
        ("train.precision=fp8", "train.precision: 'fp8' is not one of auto, bf16, fp32, fp16"),
        ("noequals", "is not key=value"),
        ("loss.reverse=1.5", "loss.reverse: a share of the batch"),
        ("optim.temporal_lr_scale=0", "temporal_lr_scale must be > 0"),
        ("loss.vtc_gather=sum", "loss.vtc_gather: 'sum' is not one of local, global"),
        ("data.captions_per_epoch=some", "data.captions_per_epoch: 'some' is not one of all, one"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_config("pretrain", "tiny", [override])


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "pretrain.yaml").write_text("optim:\n  lr: [1\n")
    with pytest.raises(ConfigError, match=r"pretrain\.yaml:\d"):
        load_config("pretrain", config_dir=tmp_path)
    (tmp_path / "pretrain.yaml").write_text("optim:\n  lr: 1e-4\n  bogus: 2\n")
    with pytest.raises(ConfigError, match="optim.bogus"):
        load_config("pretrain", config_dir=tmp_path)


def test_check_files(tmp_path: Path) -> None:
    shards = tmp_path / "toy" / "train_4f"
    shards.mkdir(parents=True)
    over = [f"data.sources.webvid.dir={shards}", "data.sources.cc3m=null"]
    cfg = load_config("pretrain", "tiny", over)
    with pytest.raises(ConfigError, match="no manifest.json"):
        check_files(cfg)
    (shards / "manifest.json").write_text("{}")
    check_files(cfg)
    cfg = load_config("pretrain", "tiny", [*over, f"train.init_checkpoint={tmp_path}/x.pt"])
    with pytest.raises(ConfigError, match="x.pt does not exist"):
        check_files(cfg)
    # The config check_files read holds every layer's values, later layers winning:
    # pretrain.yaml < presets/tiny.yaml < presets/tiny-pretrain.yaml < the overrides.
    assert (cfg.task, cfg.model.preset) == ("pretrain", "tiny")
    assert (cfg.optim.weight_decay, cfg.optim.epochs, cfg.data.seed) == (0.02, 10, 42)
    assert (cfg.data.batch_size, cfg.data.num_workers, cfg.train.ckpt_every_steps) == (8, 1, 200)
    assert (cfg.optim.lr, cfg.optim.min_lr, cfg.optim.grad_clip, cfg.loss.mlm) == (
        5e-4,
        1e-5,
        1.0,
        0.1,
    )
    assert list(cfg.data.sources) == ["webvid"]  # data.sources.cc3m=null dropped a source
    webvid = cfg.data.sources["webvid"]
    assert (webvid.dir, webvid.num_frames, webvid.max_text_len) == (str(shards), 4, 32)
    assert cfg.train.init_checkpoint == f"{tmp_path}/x.pt"


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_bad_configs_exit_2_with_one_line(tmp_path: Path) -> None:
    shards = tmp_path / "shards" / "msrvtt" / "train_12f"
    shards.mkdir(parents=True)
    (shards / "manifest.json").write_text("{}")
    ok_dir = f"data.sources.msrvtt.dir={shards}"
    ok_eval = f"eval.shards={shards}"
    cases = {
        "unknown key": (["--task", "pretrain", "optim.lrr=1"], "unknown config key 'optim.lrr'"),
        "wrong type": (["--task", "pretrain", "train.max_steps=ten"], "expected an integer"),
        "missing shards": (
            ["--task", "pretrain", "--preset", "tiny"],
            "shards/webvid/train_4f does not exist; build it with `make shards DATASET=webvid`",
        ),
        "missing checkpoint": (
            [
                "--task",
                "finetune-msrvtt",
                "--preset",
                "tiny",
                "--ckpt",
                "nope/last.pt",
                ok_dir,
                ok_eval,
            ],
            "checkpoint nope/last.pt does not exist",
        ),
        "missing default checkpoint": (
            ["--task", "finetune-msrvtt", "--preset", "tiny", ok_dir, ok_eval],
            "runs/pretrain/last.pt does not exist; run `make pretrain` first",
        ),
        "resume without checkpoint": (
            [
                "--task",
                "pretrain",
                "--resume",
                "--run",
                str(tmp_path / "r"),
                ok_dir.replace("msrvtt", "webvid", 1),
                "data.sources.cc3m=null",
            ],
            "cannot resume",
        ),
    }
    for name, (args, message) in cases.items():
        proc = _cli(*args, cwd=tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (name, proc.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, proc.stderr)
        assert message in lines[0], (name, lines[0])
        assert "Traceback" not in proc.stderr


def test_init_of_the_makefile_is_read_by_the_train_command(tmp_path: Path) -> None:
    """``make pretrain INIT=random``: the command turns INIT into ``model.init``, checked there."""
    env = {**os.environ, "INIT": "imagenet"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "--task", "pretrain"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "error: INIT='imagenet' is not one of random, pretrained"
    env["INIT"] = "random"  # accepted: the run gets as far as its (missing) shard folder
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "--task", "pretrain"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "shards/webvid/train_4f does not exist" in proc.stderr


def test_resume_target_from_flag_env_and_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import t2v2t.train as cli

    monkeypatch.delenv("RESUME", raising=False)
    args = cli.parse_args(["--task", "pretrain", "--resume", "optim.lr=1e-5"])
    assert args.overrides == ["optim.lr=1e-5"]  # --resume takes no value: overrides stay
    assert cli.resume_target(args) == (None, None)  # -> <run>/last.pt
    monkeypatch.setenv("RESUME", "1")  # what `make pretrain RESUME=1` exports
    assert cli.resume_target(args) == (None, None)
    monkeypatch.setenv("RESUME", "runs/old")
    assert cli.resume_target(args) == (Path("runs/old"), Path("runs/old/last.pt"))
    args = cli.parse_args(["--task", "pretrain", "--resume-from", "x/best.pt"])
    assert cli.resume_target(args) == (Path("x"), Path("x/best.pt"))
    args = cli.parse_args(["--task", "pretrain", "--run-dir", "r"])
    assert args.run == "r" and cli.resume_target(args) == (None, None)
