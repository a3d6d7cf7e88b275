"""Fine-tuning and evaluation of any `folder` or `vindlu` dataset, pre-training on chosen sources.

The commands resolve their shard folders and frame counts from the recipe table
(t2v2t/recipes.py); one tiny end-to-end run builds a `folder` corpus, fine-tunes on it and
evaluates it through the scripts the make targets call, from a working folder of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from preprocessing.synthetic import generate
from t2v2t.recipes import PAPER_EVAL, eval_datasets
from t2v2t.training.config import TASKS, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
ENV.pop("T2V2T_DEBUG", None)


def dry_make(*args: str) -> str:
    cmd = ["make", "-n", "-s", "-o", ".venv/.installed", "-o", ".venv/.ffmpeg", "-C", str(ROOT)]
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return " ".join(proc.stdout.split())


@pytest.mark.parametrize("dataset", ["folder", "vindlu"])
def test_finetune_and_eval_of_any_dataset_resolve_the_recipe_table(dataset: str) -> None:
    assert f"finetune-{dataset}" in TASKS and dataset in eval_datasets()
    cfg = load_config(f"finetune-{dataset}", "tiny")
    (name, src), = cfg.data.sources.items()  # fmt: skip
    assert (name, src.dir, src.num_frames, src.max_text_len) == (
        dataset, f"shards/{dataset}/train_12f", 12, 32
    )  # fmt: skip
    e = cfg.eval
    assert (e.dataset, e.split, e.shards, e.num_frames) == (
        dataset, "test", f"shards/{dataset}/test_12f", 12
    )  # fmt: skip
    assert cfg.train.eval_every_epoch and cfg.loss.mlm == 0
    assert cfg.optim.lr == 1e-4  # the tiny fine-tuning layer (presets/tiny-finetune.yaml)
    assert load_config(f"finetune-{dataset}").optim.lr == 1e-5  # MSR-VTT's recipe
    assert f"-m t2v2t.train --task finetune-{dataset} --preset tiny" in dry_make(
        "finetune", f"DATASET={dataset}", "PRESET=tiny"
    )
    line = dry_make("eval", f"DATASET={dataset}", "SHARDS=/data/shards")
    assert f"-m t2v2t.eval --dataset {dataset}" in line and "--shards /data/shards" in line
    # The paper's recipes are untouched, and the ablation keeps the paper's three datasets.
    ms = load_config("finetune-msrvtt")
    assert list(ms.data.sources) == ["msrvtt"] and ms.eval.shards == "shards/msrvtt/test_12f"
    assert PAPER_EVAL == ("msrvtt", "didemo", "anet")


def test_pretrain_on_webvid_alone() -> None:
    assert list(load_config("pretrain").data.sources) == ["webvid", "cc3m"]
    cfg = load_config("pretrain", "tiny", sources=["webvid"])
    assert list(cfg.data.sources) == ["webvid"]
    assert cfg.data.sources["webvid"].dir == "shards/webvid/train_4f"
    assert "--sources webvid" in dry_make("pretrain", "SOURCES=webvid")
    with pytest.raises(ConfigError, match=r"SOURCES=webvd: this recipe's sources are webvid, cc3m"):
        load_config("pretrain", sources=["webvd"])
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/train.py"), "--task", "pretrain", "--sources", "cc3"],
        capture_output=True, text=True, env=ENV, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.startswith("error: SOURCES=cc3"), proc.stderr


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_finetune_then_eval_a_folder_dataset_end_to_end(tmp_path: Path) -> None:
    """Shards, fine-tuning and evaluation at the recipe's default paths (relative to the
    working folder): shards/folder/{train,test}_12f, runs/finetune-folder/best.pt."""
    data = tmp_path / "mine"
    generate("folder", data, size=8, video_size=(48, 32), duration=1.0, workers=1)
    build = [sys.executable, str(ROOT / "scripts/build_shards.py"), "--dataset", "folder",
             "--data", str(data), "--workers", "0", "--short-side", "32", "--quiet"]  # fmt: skip
    _run(build, tmp_path)
    _run([*build, "--split", "test"], tmp_path)
    assert (tmp_path / "shards/folder/train_12f/manifest.json").is_file()
    tiny = [
        "data.batch_size=4",
        "data.num_workers=0",
        "data.sources.folder.num_frames=2",
        "model.image_size=32",
        "model.init=random",
        "train.threads=1",
        "train.max_steps=2",
        "optim.epochs=1",
        "eval.num_frames=2",
        "eval.k=4",
        "eval.batch_size=8",
        "data.captions_per_epoch=one",  # one epoch = the 2 steps: eval_epoch1.json exists
    ]
    train = [sys.executable, str(ROOT / "scripts/train.py"), "--task", "finetune-folder",
             "--preset", "tiny", "train.init_checkpoint=null", *tiny]  # fmt: skip
    _run(train, tmp_path)
    run = tmp_path / "runs/finetune-folder"
    assert (run / "best.pt").is_file()
    epoch = json.loads((run / "eval_epoch1.json").read_text())
    assert epoch["num_videos"] == 8
    evaluate = [sys.executable, str(ROOT / "scripts/evaluate.py"), "--dataset", "folder",
                "--preset", "tiny", "eval.num_frames=2", "eval.k=4", "eval.batch_size=8"]  # fmt: skip
    _run(evaluate, tmp_path)
    result = json.loads((run / "eval/folder_test.json").read_text())
    assert result["num_videos"] == 8 and set(result["results"]) == {"none", "naive", "t2v2t"}
    assert result["checkpoint_selected_by"] == "last"  # the test split chose nothing
    assert json.loads((run / "eval_epoch1.json").read_text())["role"] == "monitor"


def test_eval_of_a_folder_dataset_names_the_commands_that_make_its_inputs(tmp_path: Path) -> None:
    evaluate = [sys.executable, str(ROOT / "scripts/evaluate.py"), "--dataset", "folder"]
    proc = subprocess.run(evaluate, cwd=tmp_path, capture_output=True, text=True, env=ENV,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "shards/folder/test_12f does not exist" in proc.stderr
    assert "`make shards DATASET=folder SPLIT=test`" in proc.stderr  # a build makes train only
    shards = tmp_path / "shards/folder/test_12f"
    shards.mkdir(parents=True)
    (shards / "manifest.json").write_text("{}")
    proc = subprocess.run(evaluate, cwd=tmp_path, capture_output=True, text=True, env=ENV,
                          timeout=120)  # fmt: skip
    assert "runs/finetune-folder/best.pt does not exist" in proc.stderr
    assert "`make finetune DATASET=folder`" in proc.stderr
