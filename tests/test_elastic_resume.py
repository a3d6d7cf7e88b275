"""Elastic resume with real processes: ``torchrun --nproc_per_node 2`` (gloo on CPU) stopped
mid-epoch after a checkpoint, resumed on 1 process and on 4, and ``samples.jsonl`` shows the epoch
covered: every sample not read before the checkpoint read once (plus at most ``M - 1`` padding
repeats), none read before it read again, the next epoch every sample once on ``M`` ranks
(docs/reliability.md, "Elastic resume")."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from train_shards import make_train_shards, tiny_overrides

from t2v2t.data.shards import iter_samples, read_manifest
from t2v2t.errors import cli
from t2v2t.train import main as train_main
from t2v2t.training.checkpoint import check_global_batch, load_checkpoint
from t2v2t.training.config import ConfigError, load_config
from t2v2t.training.loop import train
from t2v2t.training.metrics_log import read_metrics
from t2v2t.training.samples_log import read_samples

TORCHRUN = Path(sys.executable).with_name("torchrun")
GLOBAL = 12  # the global batch: 2 x 6 -> 1 x 12 or 4 x 3
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _cmd(run: Path, world: int, overrides: list[str], *extra: str) -> list[str]:
    launch = [str(TORCHRUN), "--nproc_per_node", str(world), "--standalone", "-m"]
    return [
        *(launch if world > 1 else [sys.executable, "-m"]),
        "t2v2t.train",
        "--task",
        "pretrain",
        "--preset",
        "tiny",
        "--run-dir",
        str(run),
        *overrides,
        f"data.batch_size={GLOBAL // world}",
        *extra,
    ]


def _keys(shards: Path) -> set[str]:
    return {
        s["__key__"]
        for info in read_manifest(shards)["shards"]
        for s in iter_samples(shards / info["name"])
    }


def _overrides(shards: Path, *extra: str) -> list[str]:
    # No VTM/MLM: they draw random negatives and masks per rank; the data is what is tested.
    return tiny_overrides(
        shards, "optim.epochs=2", "train.log_samples=true", "loss.vtm=0", "loss.mlm=0", *extra
    )


def _check_epochs(run: Path, keys: set[str], stopped: int, world: int, steps_per_epoch: int):  # noqa: ANN202
    """``samples.jsonl`` after the resume: epoch 0 is 2 ranks up to step ``stopped``, ``world``
    ranks after; epoch 1 ``world`` ranks."""
    lines = read_samples(run)
    assert sorted({r["step"] for r in lines}) == list(range(1, 2 * steps_per_epoch + 1))
    for r in lines:  # who read each step: 2 ranks before the stop, `world` after
        ranks = {x["rank"] for x in lines if x["step"] == r["step"]}
        assert ranks == set(range(2 if r["step"] <= stopped else world)), r["step"]
        assert len(r["keys"]) <= GLOBAL // (2 if r["step"] <= stopped else world)
    before = Counter(k for r in lines if r["step"] <= stopped for k in r["keys"])
    after = Counter(k for r in lines if r["epoch"] == 0 and r["step"] > stopped for k in r["keys"])
    assert set(before.values()) == {1}  # what two ranks read before the checkpoint: each once
    assert not set(before) & set(after)  # nothing read before the checkpoint is read again
    assert set(before) | set(after) == keys  # and every other sample is read
    assert sum(after.values()) - len(after) <= world - 1  # padding repeats
    nxt = Counter(k for r in lines if r["epoch"] == 1 for k in r["keys"])
    assert set(nxt) == keys and sum(nxt.values()) - len(keys) <= world - 1  # the M-rank plan


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it, all at once (a lost node)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += parents.get(p, [])
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """2 processes x 6, 30 samples (3 steps an epoch), stopped by train.max_steps after step 1."""
    tmp = tmp_path_factory.mktemp("elastic")
    shards = make_train_shards(tmp / "shards", num_samples=30, per_shard=8)
    run = tmp / "run2"
    proc = subprocess.run(
        _cmd(run, 2, _overrides(shards), "train.max_steps=1"),
        cwd=tmp,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return shards, run


def test_two_processes_resume_on_one(stopped_run: tuple[Path, Path], tmp_path: Path) -> None:
    shards, stopped = stopped_run
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    position = load_checkpoint(run / "last.pt")["data_position"]
    assert (position["world_size"], position["samples"], position["epoch"]) == (2, 6, 0)
    # One process: the trainer in this one (the torchrun job above wrote the checkpoint).
    cfg = load_config("pretrain", "tiny", [*_overrides(shards), f"data.batch_size={GLOBAL}"])
    train(cfg, run, resume_from=run / "last.pt")
    _check_epochs(run, _keys(shards), stopped=1, world=1, steps_per_epoch=3)
    assert load_checkpoint(run / "last.pt")["step"] == 6


def test_a_resumed_epoch_stopped_again_resumes_exactly(
    stopped_run: tuple[Path, Path], tmp_path: Path
) -> None:
    # 2 ranks for step 1, then 1 process stopped after step 2 (its position counts from its own
    # part, the 2-rank part kept in `earlier`), then 1 process again to the end.
    shards, stopped = stopped_run
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    base = [*_overrides(shards), f"data.batch_size={GLOBAL}"]
    cfg = load_config("pretrain", "tiny", [*base, "train.max_steps=2"])
    train(cfg, run, resume_from=run / "last.pt")
    position = load_checkpoint(run / "last.pt")["data_position"]
    assert (position["earlier"], position["samples"], position["world_size"]) == ([[2, 6]], 12, 1)
    train(load_config("pretrain", "tiny", base), run, resume_from=run / "last.pt")
    _check_epochs(run, _keys(shards), stopped=1, world=1, steps_per_epoch=3)


def test_a_batch_that_changes_the_global_batch_is_one_error(
    stopped_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    shards, stopped = stopped_run
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    args = ["--task", "pretrain", "--preset", "tiny", "--run", str(run), "--resume"]
    # 1 process x 6 would halve the checkpoint's global batch of 12.
    status = cli(lambda: train_main([*args, *_overrides(shards), "data.batch_size=6"]))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and err[0].startswith("error: ") and "data.batch_size=12" in err[0], err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing written


def test_the_error_names_the_batch_or_the_counts_that_keep_the_global_batch(tmp_path: Path) -> None:
    # No process needed: the check reads the checkpoint's position and the new config.
    shards = make_train_shards(tmp_path / "shards", num_samples=8, per_shard=8)
    ckpt = {"data_position": {"epoch": 0, "samples": 6, "world_size": 2, "global_batch": {}}}
    ckpt["data_position"]["global_batch"]["webvid"] = GLOBAL
    for world, batch in [(1, 12), (3, 4), (4, 3), (6, 2), (12, 1)]:  # the ones that keep it
        cfg = load_config("pretrain", "tiny", _overrides(shards, f"data.batch_size={batch}"))
        check_global_batch(cfg, ckpt, world, "last.pt")
        wrong = load_config("pretrain", "tiny", _overrides(shards, f"data.batch_size={batch + 1}"))
        with pytest.raises(ConfigError, match=f"set data.batch_size={batch} to keep it"):
            check_global_batch(wrong, ckpt, world, "last.pt")
    cfg = load_config("pretrain", "tiny", _overrides(shards, "data.batch_size=2"))
    with pytest.raises(ConfigError, match="does not split over 5 processes.*1, 2, 3, 4, 6, 12"):
        check_global_batch(cfg, ckpt, 5, "last.pt")
    # A source with its own batch is named by its own key.
    own = load_config("pretrain", "tiny", _overrides(shards, "data.sources.webvid.batch_size=5"))
    with pytest.raises(ConfigError, match=r"set data\.sources\.webvid\.batch_size=6"):
        check_global_batch(own, ckpt, 2, "last.pt")
    # An epoch-end checkpoint plans its next epoch afresh: any batch.
    ckpt["data_position"]["samples"] = 0
    check_global_batch(wrong, ckpt, 1, "last.pt")


@pytest.mark.slow
@pytest.mark.parametrize("world", [1, 4])
def test_sigkill_mid_epoch_then_resume_on_another_count(tmp_path: Path, world: int) -> None:
    # 60 samples: 5 steps an epoch on 2 x 6; a checkpoint every step, the job killed as a whole
    # (torchrun and its workers, as a preemption does) once step 2 was logged.
    # torchrun starts its workers in their own process groups: each is killed by its pid.
    shards = make_train_shards(tmp_path / "shards", num_samples=60, per_shard=8)
    overrides = _overrides(shards, "train.ckpt_every_steps=1")
    run = tmp_path / "run"
    proc = subprocess.Popen(
        _cmd(run, 2, overrides),
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not any(r["step"] >= 2 for r in read_samples(run)):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no step 2 within 300 s"
            time.sleep(0.05)
        _kill_tree(proc.pid)
    finally:
        _kill_tree(proc.pid)
        proc.wait()
    position = load_checkpoint(run / "last.pt")["data_position"]
    stopped = position["samples"] // 6
    assert position["epoch"] == 0 and 1 <= stopped < 5, position  # a mid-epoch checkpoint
    resumed = subprocess.run(
        _cmd(run, world, overrides, "--resume"),
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _check_epochs(run, _keys(shards), stopped=stopped, world=world, steps_per_epoch=5)


def _read(folder: Path, world: int, rank: int, batch: int, **kw) -> list[dict]:  # noqa: ANN003
    from t2v2t.data.loader import TrainSource, make_train_loader

    loader = make_train_loader(
        [TrainSource(folder, batch, 2)], None, seed=11, epoch=1, rank=rank, world_size=world,
        image_size=16, captions_per_epoch="all", shuffle_buffer=4, **kw,
    )  # fmt: skip
    return list(loader)


@pytest.mark.parametrize("world", [1, 2, 4])  # 2: the rest replanned on 2 (as after 2 -> M -> 2)
def test_loader_rest_of_a_per_caption_epoch_reads_the_same_samples(
    tmp_path: Path, world: int
) -> None:
    # 40 (video, caption) items over 2 ranks x 4: 5 steps; 2 taken, the rest on `world` ranks.
    from test_caption_epochs import _msrvtt_shards

    folder, pairs = _msrvtt_shards(tmp_path)
    whole = [_read(folder, 2, r, 4) for r in range(2)]
    looks = {k: f for b in whole[0] + whole[1] for k, f in zip(b["keys"], b["frames"], strict=True)}
    first = [b for r in range(2) for b in whole[r][:2]]
    before = Counter(p for b in first for p in zip(b["keys"], b["texts"], strict=True))
    rest = [_read(folder, world, m, 8 // world, earlier=[(2, 8)]) for m in range(world)]
    assert {len(r) for r in rest} == {3}  # the epoch's last 3 steps, on every rank
    after = Counter(p for r in rest for b in r for p in zip(b["keys"], b["texts"], strict=True))
    assert set(before.values()) == {1} and not set(before) & set(after)
    assert set(before) | set(after) == set(pairs)  # every (video, caption): its pass's caption
    assert sum(after.values()) - len(after) <= world - 1
    for b in (b for r in rest for b in r):  # a sample looks the same whoever reads it
        for key, frames in zip(b["keys"], b["frames"], strict=True):
            assert torch.equal(frames, looks[key]), key


@pytest.mark.slow  # 45 s under load (a torchrun job, then a resumed run)
def test_drop_last_two_processes_resume_on_one(tmp_path: Path) -> None:
    # 23 samples, global batch 12, data.drop_last=true. On 2 x 6 VindLU's epoch is
    # floor(ceil(23 / 2) / 6) = 2 steps (rank 0's padding repeat visited, nothing dropped); on
    # 1 x 12 it is floor(23 / 12) = 1 step, 11 dropped. Stopped after step 1 on 2, resumed on 1:
    # epoch 0 ends with the 2 ranks' second batches (step 2), epoch 1 is 1 step (step 3), and
    # the cosine's total is those 3 steps.
    shards = make_train_shards(tmp_path / "shards", num_samples=23, per_shard=8)
    overrides = _overrides(shards, "data.drop_last=true")
    run = tmp_path / "run"
    proc = subprocess.run(
        _cmd(run, 2, overrides, "train.max_steps=1"),
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = load_config("pretrain", "tiny", [*overrides, f"data.batch_size={GLOBAL}"])
    train(cfg, run, resume_from=run / "last.pt")
    lines, keys = read_samples(run), _keys(shards)
    assert sorted((r["step"], r["epoch"], r["rank"]) for r in lines) == [
        (1, 0, 0), (1, 0, 1), (2, 0, 0), (3, 1, 0)
    ]  # fmt: skip
    assert all(len(r["keys"]) == GLOBAL // (2 if r["step"] == 1 else 1) for r in lines)
    before = Counter(k for r in lines if r["step"] == 1 for k in r["keys"])
    after = Counter(k for r in lines if r["step"] == 2 for k in r["keys"])
    assert set(before.values()) == {1} and not set(before) & set(after)
    assert set(before) | set(after) == keys  # the 2-rank epoch: every sample
    assert sorted(after.values()) == [1] * 10 + [2]  # its one padding repeat, in rank 0's tail
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["step"] == 3 and ckpt["data_position"]["epoch"] == 2
    assert ckpt["scheduler"]["total_steps"] == 3  # steps taken + the rest planned for 1 process
    epochs = [r["epoch"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert epochs == [0.5, 1.0, 2.0]  # the resumed epoch is the 2-rank one's second half
