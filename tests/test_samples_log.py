"""train.log_samples=true: ``<run>/samples.jsonl`` records each rank's sample keys at every step,
kept across a resume with the steps after the checkpoint dropped (docs/training.md, "Samples
record")."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from train_shards import make_train_shards, tiny_overrides

from t2v2t.data.shards import iter_samples, read_manifest
from t2v2t.training.config import load_config
from t2v2t.training.loop import train
from t2v2t.training.samples_log import read_samples


def _all_keys(shards: Path) -> set[str]:
    return {
        s["__key__"]
        for info in read_manifest(shards)["shards"]
        for s in iter_samples(shards / info["name"])
    }


def test_samples_record_covers_each_epoch_once_across_a_resume(tmp_path: Path) -> None:
    # 24 videos, batch 8: 3 steps per epoch, 2 epochs; stopped after step 4 (mid-epoch 1).
    shards = make_train_shards(tmp_path / "shards", num_samples=24, per_shard=8)
    overrides = tiny_overrides(shards, "optim.epochs=2", "train.log_samples=true")
    run = tmp_path / "run"
    train(load_config("pretrain", "tiny", [*overrides, "train.max_steps=4"]), run)
    assert [r["step"] for r in read_samples(run)] == [1, 2, 3, 4]
    # A killed run may have logged a step after its last checkpoint: the resume drops it.
    with open(run / "samples.jsonl", "a") as f:
        f.write(json.dumps({"step": 5, "epoch": 1, "rank": 0, "keys": ["stale"]}) + "\n")
    train(load_config("pretrain", "tiny", overrides), run, resume_from=run / "last.pt")

    lines = read_samples(run)
    assert [r["step"] for r in lines] == list(range(1, 7))  # each step once, in order
    assert all(r["rank"] == 0 and len(r["keys"]) == 8 for r in lines)
    expected = _all_keys(shards)
    for epoch in (0, 1):
        seen = Counter(k for r in lines if r["epoch"] == epoch for k in r["keys"])
        assert set(seen) == expected and set(seen.values()) == {1}, epoch
    # The plans differ between epochs (the order is shuffled per epoch).
    assert [r["keys"] for r in lines[:3]] != [r["keys"] for r in lines[3:]]


def test_samples_record_is_off_by_default(tmp_path: Path) -> None:
    shards = make_train_shards(tmp_path / "shards", num_samples=8, per_shard=8)
    run = tmp_path / "run"
    train(load_config("pretrain", "tiny", tiny_overrides(shards, "train.max_steps=1")), run)
    assert (run / "last.pt").exists() and not (run / "samples.jsonl").exists()
