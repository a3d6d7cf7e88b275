"""Per-caption epochs (``data.captions_per_epoch: all``): every (video, caption) once per epoch.

VindLU's training set has one entry per (video, caption) with a per-video match id
(``ImgTxtRetTrainDataset``: the length is the number of caption entries); the rules below are
written out from that, independently of the plan's code.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from t2v2t.data.captions import caption_in_pass
from t2v2t.data.plan import train_plan, train_plans

COUNTS = [5, 7, 3, 6]  # samples per shard


def _caption_counts(seed: int = 0) -> list[np.ndarray]:
    g = np.random.default_rng(seed)
    return [g.integers(1, 6, size=n) for n in COUNTS]


def _items(plan, start=0, stop=None):  # noqa: ANN001
    """(shard, sample, pass) of each entry of the plan's order."""
    out = []
    for p in plan.order[start:stop]:
        i, k = plan.locate(int(p))
        out.append((plan.shards[i], k, plan.passes[i] if plan.passes else 0))
    return out


@pytest.mark.parametrize("world", [1, 2, 3])
def test_every_video_caption_pair_once_per_epoch(world):
    caps = _caption_counts()
    expected = Counter(
        (s, k, j) for s, c in enumerate(caps) for k in range(len(c)) for j in range(c[k])
    )
    total = sum(expected.values())
    batch = 4
    plans = train_plans(
        COUNTS, world_size=world, seed=3, epoch=1, batch_size=batch, shuffle_buffer=8,
        tag="t", captions=caps,
    )  # fmt: skip
    real = Counter(it for p in plans for it in _items(p, 0, p.num_real))
    assert real == expected  # before padding: each (video, caption) exactly once
    every = Counter(it for p in plans for it in _items(p))
    assert sum(every.values()) - total <= world - 1  # DistributedSampler's padding
    assert set(every) == set(expected)
    for p in plans:
        # VindLU: len(loader) = ceil(entries / (world x batch)) (without drop_last)
        assert p.num_batches == math.ceil(total / (world * batch))
        # A sample's pass j is within its caption count: the caption exists.
        for s, k, j in _items(p):
            assert j < caps[s][k]


def test_one_caption_each_is_the_one_caption_plan():
    ones = [np.ones(n, dtype=np.int64) for n in COUNTS]
    kw = dict(seed=5, epoch=2, world_size=2, batch_size=3, shuffle_buffer=4, tag="x")
    for rank in range(2):
        a = train_plan(COUNTS, rank=rank, **kw)
        b = train_plan(COUNTS, rank=rank, captions=ones, **kw)
        assert a.shards == b.shards and a.counts == b.counts
        np.testing.assert_array_equal(a.order, b.order)


def test_the_plan_depends_on_seed_and_epoch_only():
    caps = _caption_counts(1)
    kw = dict(seed=1, world_size=2, rank=1, batch_size=3, shuffle_buffer=4, tag="x", captions=caps)
    a, b = train_plan(COUNTS, epoch=0, **kw), train_plan(COUNTS, epoch=0, **kw)
    np.testing.assert_array_equal(a.order, b.order)
    assert a.passes == b.passes
    c = train_plan(COUNTS, epoch=1, **kw)
    assert not np.array_equal(a.order, c.order)


def test_caption_in_pass_visits_each_caption_once():
    caps = [f"caption {i}" for i in range(7)]
    seen = [caption_in_pass(caps, 4, 0, "video12", j) for j in range(7)]
    assert sorted(seen) == sorted(caps)
    again = [caption_in_pass(caps, 4, 1, "video12", j) for j in range(7)]
    assert again != seen  # a new order each epoch
    assert caption_in_pass(["only"], 4, 0, "k", 0) == "only"
    with pytest.raises(ValueError, match="rebuild"):
        caption_in_pass(caps, 4, 0, "video12", 7)


def test_shards_record_caption_counts(tmp_path):
    from t2v2t.data.schema import SampleMeta, encode_sample
    from t2v2t.data.shards import ShardInfo, info_dict, write_shard

    def sample(key: str, n: int):  # noqa: ANN202
        meta = SampleMeta(
            key=key, dataset="d", split="train", source=f"{key}.mp4",
            captions=[f"c{i}" for i in range(n)], fps=25.0, vlen=8, duration=0.32,
            frame_indices=[[4]], sampling={"mode": "rand", "num_frames": 1, "candidates": 1,
            "seed": 0}, size=[8, 8],
        )  # fmt: skip
        return encode_sample(meta, [b"jpeg"])

    many = write_shard(tmp_path / "a.tar.zst", [sample("a", 3), sample("b", 1), sample("c", 20)])
    assert (many.samples, many.captions, many.caption_counts) == (3, 24, [3, 1, 20])
    ones = write_shard(tmp_path / "b.tar.zst", [sample("d", 1), sample("e", 1)])
    assert (ones.captions, ones.caption_counts) == (2, None)
    assert "caption_counts" not in info_dict(ones)  # absent = one caption each
    assert ShardInfo(**info_dict(many)) == many  # round trip through the manifest


# ---- through the loader: a synthetic MSR-VTT train split with several captions per video ------
def _msrvtt_shards(root):  # noqa: ANN001, ANN202
    """14 videos with 1..5 captions each, 4 per shard, written with the real shard writer."""
    from train_shards import COLOURS, _jpeg

    from t2v2t.data.schema import FORMAT, SampleMeta, encode_sample
    from t2v2t.data.shards import info_dict, shard_name, write_manifest, write_shard

    out = root / "msrvtt" / "train_2f"
    out.mkdir(parents=True)
    colours = list(COLOURS)
    samples = []
    for i in range(14):
        meta = SampleMeta(
            key=f"video{i}", dataset="msrvtt", split="train", source=f"videos/video{i}.mp4",
            captions=[f"video {i} caption {c}" for c in range(1 + i % 5)], fps=25.0, vlen=16,
            duration=0.64, frame_indices=[[4], [12]],
            sampling={"mode": "rand", "num_frames": 2, "candidates": 1, "seed": 0}, size=[16, 16],
        )  # fmt: skip
        rgb = COLOURS[colours[i % 8]]
        samples.append(encode_sample(meta, [_jpeg(rgb, rgb, 16, t) for t in range(2)]))
    infos = [
        write_shard(out / shard_name("msrvtt", "train", s // 4), samples[s : s + 4])
        for s in range(0, 14, 4)
    ]
    write_manifest(out, {
        "format": FORMAT, "dataset": "msrvtt", "split": "train", "num_frames": 2, "mode": "rand",
        "candidates": 1, "seed": 0, "short_side": 16, "jpeg_quality": 90, "num_samples": 14,
        "num_failed": 0, "shards": [info_dict(i) for i in infos], "created_with": {},
    })  # fmt: skip
    pairs = Counter(
        (f"video{i}", f"video {i} caption {c}") for i in range(14) for c in range(1 + i % 5)
    )
    return out, pairs


def _pairs(folder, *, rank=0, world=1, workers=0, skip=0, epoch=0, mode="all"):  # noqa: ANN001, ANN202
    from t2v2t.data.loader import TrainSource, make_train_loader

    loader = make_train_loader(
        [TrainSource(folder, 4, 2)], None, seed=11, epoch=epoch, rank=rank, world_size=world,
        num_workers=workers, image_size=16, skip_samples=skip, captions_per_epoch=mode,
    )  # fmt: skip
    batches = [list(zip(b["keys"], b["texts"], strict=True)) for b in loader]
    return loader, batches


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_epoch_visits_every_video_caption_once(tmp_path, workers):
    folder, pairs = _msrvtt_shards(tmp_path)
    total = sum(pairs.values())  # 40 (video, caption) pairs
    for world in (1, 2):
        seen: Counter = Counter()
        for rank in range(world):
            loader, batches = _pairs(folder, rank=rank, world=world, workers=workers)
            assert len(loader) == math.ceil(total / (world * 4))  # steps per epoch
            seen.update(p for b in batches for p in b)
        assert set(seen) == set(pairs)
        assert sum(seen.values()) - total <= world - 1
    # The same plan for any worker count
    assert _pairs(folder, world=2, rank=1, workers=workers)[1] == _pairs(folder, world=2, rank=1)[1]


def test_loader_resumes_mid_epoch_exactly(tmp_path):
    folder, _ = _msrvtt_shards(tmp_path)
    _, full = _pairs(folder, world=2, rank=0)
    k = 3
    _, rest = _pairs(folder, world=2, rank=0, skip=sum(len(b) for b in full[:k]))
    assert rest == full[k:]


def test_one_caption_per_epoch_keeps_todays_epoch(tmp_path):
    folder, _ = _msrvtt_shards(tmp_path)
    loader, batches = _pairs(folder, mode="one")
    keys = [k for b in batches for k, _ in b]
    assert sorted(keys) == sorted(f"video{i}" for i in range(14)) and len(loader) == 4
    with pytest.raises(ValueError, match="captions_per_epoch"):
        _pairs(folder, mode="every")


def test_old_manifest_without_caption_counts_is_one_error(tmp_path):
    import json

    from t2v2t.data.shards import ShardError

    folder, _ = _msrvtt_shards(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    for s in manifest["shards"]:
        s.pop("captions"), s.pop("caption_counts", None)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="captions_per_epoch: one"):
        _pairs(folder)
    assert len(_pairs(folder, mode="one")[0]) == 4


def test_inspect_stream_prints_the_caption_of_each_visit(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "inspect_stream.py"
    spec = importlib.util.spec_from_file_location("inspect_stream", script)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    folder, pairs = _msrvtt_shards(tmp_path)
    argv = ["--shards", str(folder), "--image-size", "16", "--batch-size", "4", "--seed", "11"]
    assert tool.main([*argv, "--captions", "--captions-per-epoch", "all"]) == 0
    lines = capsys.readouterr().out.splitlines()
    visits = Counter()
    for line in lines:
        head, caption = line.split("\t")
        key, *frames = head.split(" ")
        assert len(frames) == 2 and caption.startswith(f"{key.replace('video', 'video ')} caption")
        visits[(key, caption)] += 1
    assert visits == pairs  # one rank: every (video, caption) exactly once
    _, batches = _pairs(folder)
    assert [ln.split("\t")[1] for ln in lines] == [t for b in batches for _, t in b]
    assert tool.main(argv) == 0  # without --captions: the former lines, one caption per video
    assert all("\t" not in ln for ln in capsys.readouterr().out.splitlines())
