"""Shards whose bytes changed (same size) are caught while they stream, in training and in eval.

The loader and the evaluator hash every shard as its bytes pass and compare with the manifest at
the shard's end: one ``ShardError`` line naming the shard, or with ``skip_bad_shards`` a counted
warning and the shard left out of the epoch's plan.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import zstandard
from test_evaluate import write_eval_shards
from train_shards import make_train_shards, tiny_overrides

from t2v2t.data.eval_loader import eval_texts, make_eval_loader
from t2v2t.data.loader import TrainSource, make_train_loader
from t2v2t.data.shard_checks import ShardWarning
from t2v2t.data.shards import HashingReader, ShardError, read_manifest, sha256_file
from t2v2t.training.metrics_log import read_metrics

ROOT = Path(__file__).resolve().parents[1]


def _flip_middle(path: Path, count: int = 16) -> None:
    """Invert ``count`` bytes in the middle of ``path``; its size stays."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + count] = bytes(b ^ 0xFF for b in data[mid : mid + count])
    path.write_bytes(bytes(data))


def _one_line_naming(err: BaseException, name: str) -> None:
    text = str(err)
    assert type(err) is ShardError, type(err)
    assert "\n" not in text, text
    assert name in text and "sha256 differs from the manifest" in text, text


@pytest.fixture
def corrupt(tmp_path: Path) -> tuple[Path, Path]:
    shards = make_train_shards(tmp_path / "shards", num_samples=32, per_shard=8)
    victim = shards / read_manifest(shards)["shards"][1]["name"]
    _flip_middle(victim)
    return shards, victim


def test_new_shards_carry_a_zstd_frame_checksum(tmp_path: Path) -> None:
    shards = make_train_shards(tmp_path / "shards", num_samples=8, per_shard=8)
    name = read_manifest(shards)["shards"][0]["name"]
    params = zstandard.get_frame_parameters((shards / name).read_bytes()[:18])
    assert params.has_checksum


def test_hashing_reader_verifies_a_partly_read_file(tmp_path: Path) -> None:
    shards = make_train_shards(tmp_path / "shards", num_samples=8, per_shard=8)
    info = read_manifest(shards)["shards"][0]
    path = shards / info["name"]
    reader = HashingReader(path, info["sha256"])
    reader.read(100)  # a reader that stopped early: the rest is hashed by verify()
    reader.verify()
    reader.close()
    _flip_middle(path)
    reader = HashingReader(path, info["sha256"])
    reader.read(100)
    with pytest.raises(ShardError) as err:
        reader.verify()
    reader.close()
    _one_line_naming(err.value, info["name"])


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_stops_on_a_changed_shard_with_one_line(corrupt, workers: int) -> None:
    shards, victim = corrupt
    assert victim.stat().st_size == read_manifest(shards)["shards"][1]["bytes"]
    loader = make_train_loader(
        [TrainSource(shards, 4, 2)], None, seed=0, epoch=0, image_size=32, num_workers=workers
    )
    with pytest.raises(ShardError) as err:
        for _ in loader:
            pass
    _one_line_naming(err.value, victim.name)  # from a worker too: the ShardError itself
    assert "data.skip_bad_shards" in str(err.value)


def test_skip_bad_shards_counts_the_shard_and_leaves_it_out(corrupt) -> None:
    shards, victim = corrupt
    lost = {f"toy_{i:04d}" for i in range(8, 16)}  # the second shard's samples
    for epoch in (0, 1):  # decided per epoch, before any batch: the plan has 24 samples
        with pytest.warns(ShardWarning, match="skipped 1 of 4 shards") as caught:
            loader = make_train_loader(
                [TrainSource(shards, 4, 2)],
                None,
                seed=0,
                epoch=epoch,
                image_size=32,
                num_workers=2,
                skip_bad_shards=True,
            )
        assert victim.name in str(caught[0].message)
        keys = [k for batch in loader for k in batch["keys"]]
        assert len(keys) == 24 and not lost & set(keys)
        assert set(keys) == {f"toy_{i:04d}" for i in range(32)} - lost


def test_evaluation_stops_on_a_changed_shard_with_one_line(tmp_path: Path) -> None:
    directory = write_eval_shards(tmp_path)
    victim = directory / read_manifest(directory)["shards"][1]["name"]
    _flip_middle(victim)
    with pytest.raises(ShardError) as err:
        eval_texts(directory)
    _one_line_naming(err.value, victim.name)
    with pytest.raises(ShardError) as err:
        for _ in make_eval_loader(directory, batch_size=4, num_frames=4, image_size=32):
            pass
    _one_line_naming(err.value, victim.name)

    from t2v2t.models import build_model, build_tokenizer
    from t2v2t.retrieval.evaluate import evaluate_retrieval
    from t2v2t.retrieval.settings import EvalConfig

    model = build_model("tiny", "random", overrides={"image_size": 32}).eval()
    settings = EvalConfig(dataset="msrvtt", split="test", shards=str(directory), k=4,
                          num_frames=4, batch_size=4, max_text_len=16)  # fmt: skip
    with pytest.raises(ShardError) as err:
        evaluate_retrieval(model, build_tokenizer("tiny"), settings, device="cpu")
    _one_line_naming(err.value, victim.name)


def test_eval_of_a_rank_slice_still_verifies_its_last_shard(tmp_path: Path) -> None:
    # Rank 0 of 2 reads samples 0-3 of shard 0 (5 samples): the rest of the file is hashed.
    directory = write_eval_shards(tmp_path)
    victim = directory / read_manifest(directory)["shards"][0]["name"]
    size = victim.stat().st_size
    data = bytearray(victim.read_bytes())
    data[size - 40 : size - 24] = bytes(b ^ 0xFF for b in data[size - 40 : size - 24])
    victim.write_bytes(bytes(data))
    loader = make_eval_loader(
        directory, batch_size=4, num_frames=4, image_size=32, rank=0, world_size=2
    )
    with pytest.raises(ShardError) as err:
        for _ in loader:
            pass
    _one_line_naming(err.value, victim.name)


def _train(run: Path, overrides: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--task", "pretrain",
           "--preset", "tiny", "--run", str(run), *overrides]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_training_stops_in_one_line_or_skips_with_a_count(corrupt, tmp_path: Path) -> None:
    shards, victim = corrupt
    overrides = tiny_overrides(shards, "optim.epochs=1", "data.num_workers=2")
    stopped = _train(tmp_path / "stopped", overrides)
    assert stopped.returncode == 2, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr
    # The progress bar redraws with "\r": the error line follows its last redraw.
    lines = stopped.stderr.replace("\r", "\n").splitlines()
    errors = [line[line.index("error:") :] for line in lines if "error:" in line]
    assert len(errors) == 1 and victim.name in errors[0] and "sha256" in errors[0], errors

    run = tmp_path / "skipped"
    went_on = _train(run, [*overrides, "data.skip_bad_shards=true"])
    assert went_on.returncode == 0, went_on.stderr[-3000:]
    assert "skipped 1 of 4 shards" in went_on.stderr and victim.name in went_on.stderr
    steps = [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert len(steps) == 3  # 24 of 32 samples, batch 8


def test_a_clean_copy_passes_and_the_digest_is_the_manifests(tmp_path: Path) -> None:
    shards = make_train_shards(tmp_path / "shards", num_samples=16, per_shard=8)
    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    for info in read_manifest(copy)["shards"]:
        assert sha256_file(copy / info["name"]) == info["sha256"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ShardWarning on good shards
        loader = make_train_loader(
            [TrainSource(copy, 4, 2)], None, seed=0, epoch=0, image_size=32, num_workers=2
        )
        assert sum(len(b["keys"]) for b in loader) == 16


def _same_size_other_shard(path: Path) -> None:
    """Rewrite ``path`` as a valid shard (tar + zstd with its frame checksum) of the same size
    whose bytes differ: only the sha256 against the manifest can tell it from the built one."""
    from t2v2t.data.shards import ZSTD_LEVEL

    raw = bytes(zstandard.ZstdDecompressor().stream_reader(path.read_bytes()).read())
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0, write_checksum=True)
    start = raw.index(b'"captions"')  # a caption's letters: every JPEG still decodes
    for at in range(start + 14, start + 60):
        for letter in b"qxzjkvw":
            if not chr(raw[at]).isalpha() or raw[at] == letter:
                continue
            out = io.BytesIO()
            with cctx.stream_writer(out, closefd=False) as z:  # as the builder writes (no size)
                z.write(raw[:at] + bytes([letter]) + raw[at + 1 :])
            data = out.getvalue()
            if len(data) == path.stat().st_size:
                path.write_bytes(data)
                return
    raise AssertionError("no same-size variant found")


@pytest.mark.parametrize("workers", [2, 3])
def test_every_shard_is_hashed_by_exactly_one_worker_that_streams_it(
    tmp_path: Path, workers: int
) -> None:
    from t2v2t.data.batches import shards_hashed_by

    shards = make_train_shards(tmp_path / "shards", num_samples=30, per_shard=4)
    loader = make_train_loader([TrainSource(shards, 3, 2)], None, seed=1, epoch=0,
                               image_size=32, shuffle_buffer=8)  # fmt: skip
    ds = loader.dataset
    for skip in (0, 3):  # a resumed epoch: the steps left
        steps = ds.steps[skip:]
        got = [shards_hashed_by(w, workers, steps, ds.sources)[0] for w in range(workers)]
        plan, starts = ds.sources[0].plan, ds.sources[0].plan.shard_starts()
        needs = [set() for _ in range(workers)]
        for i, (_, b) in enumerate(steps):
            for p in plan.batch(b):
                needs[i % workers].add(int(np.searchsorted(starts, p, side="right") - 1))
        streamed = set().union(*needs)
        assert sorted(s for g in got for s in g) == sorted(streamed)  # each once, none left out
        for w in range(workers):
            assert got[w] <= needs[w]  # a worker hashes only shards it streams anyway
        assert sum(bool(g) for g in got) > 1  # the hashing is shared out


@pytest.mark.parametrize("workers", [0, 2, 3])
def test_a_valid_shard_of_the_right_size_that_is_not_the_manifests_stops_the_epoch(
    tmp_path: Path, workers: int
) -> None:
    """zstd's frame checksum passes on such a shard; the one worker that hashes it catches it."""
    shards = make_train_shards(tmp_path / "shards", num_samples=32, per_shard=8)
    victim = shards / read_manifest(shards)["shards"][2]["name"]
    _same_size_other_shard(victim)
    for epoch in (0, 1):
        loader = make_train_loader([TrainSource(shards, 4, 2)], None, seed=0, epoch=epoch,
                                   image_size=32, num_workers=workers)  # fmt: skip
        with pytest.raises(ShardError) as err:
            for _ in loader:
                pass
        _one_line_naming(err.value, victim.name)
