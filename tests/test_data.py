"""The streaming loader on small real shards whose pixels say which (video, frame) they are.

Every stored JPEG encodes its video in the red channel, its original frame index in the green
channel, and carries the same left-to-right ramp in blue, so a decoded batch shows which frames
arrived, in which order, and what geometry (crop, flip) was applied to them.
"""

from __future__ import annotations

import importlib.util
import io
import shutil
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from t2v2t.data import augment
from t2v2t.data.augment import Crop, decode_jpegs, normalize
from t2v2t.data.eval_loader import eval_texts, make_eval_loader
from t2v2t.data.frames import frame_indices
from t2v2t.data.loader import TrainSource, make_train_loader
from t2v2t.data.plan import buffer_shuffle, train_plans
from t2v2t.data.schema import FORMAT, SampleMeta, encode_sample
from t2v2t.data.shard_checks import ShardWarning
from t2v2t.data.shards import ShardError, info_dict, shard_name, write_manifest, write_shard
from t2v2t.seeding import rng_for

ROOT = Path(__file__).resolve().parents[1]
H, W = 32, 48  # stored frame size
SIZE = 16  # loader output size
G_STEP = 8  # green = 8 * original frame index
SHARD_SIZES = [7, 3, 5, 1, 4]


def _jpeg(red: int, green: int) -> bytes:
    img = np.empty((H, W, 3), dtype=np.uint8)
    img[..., 0] = red
    img[..., 1] = green
    img[..., 2] = np.linspace(0, 255, W, dtype=np.uint8)[None, :]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def _build(root: Path, dataset: str, num_frames: int, candidates: int, mode: str, sizes) -> Path:
    out = root / dataset
    out.mkdir(parents=True)
    infos, k = [], 0
    for s, n in enumerate(sizes):
        samples = []
        for _ in range(n):
            key = f"{dataset}_{k:03d}"
            vlen = 30 if num_frames > 1 else 1
            segs = frame_indices(num_frames, vlen, mode, key, seed=0, candidates=candidates)
            meta = SampleMeta(
                key=key, dataset=dataset, split="train", source=f"{key}.mp4",
                captions=[f"caption {c} of {key}" for c in range(3)], fps=10.0, vlen=vlen,
                duration=vlen / 10, frame_indices=segs,
                sampling={"mode": mode, "num_frames": num_frames, "candidates": candidates,
                          "seed": 0},
                size=[H, W],
            )  # fmt: skip
            jpegs = [_jpeg(10 * k % 250, G_STEP * i) for seg in segs for i in seg]
            samples.append(encode_sample(meta, jpegs))
            k += 1
        infos.append(write_shard(out / shard_name(dataset, "train", s), samples))
    write_manifest(
        out,
        {
            "format": FORMAT, "dataset": dataset, "split": "train", "num_frames": num_frames,
            "mode": mode, "candidates": candidates, "seed": 0, "short_side": H,
            "jpeg_quality": 95, "num_samples": sum(sizes), "num_failed": 0,
            "shards": [info_dict(i) for i in infos], "created_with": {},
        },
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shards")
    return {
        "video": _build(root, "vid", 4, 2, "rand", SHARD_SIZES),
        "image": _build(root, "img", 1, 1, "middle", [4, 3]),
        "eval": _build(root, "evl", 4, 1, "middle", [3, 4, 2]),
    }


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(str(minilm_dir))


def _run(loader) -> list[tuple[str, tuple[int, ...]]]:
    return [
        (k, tuple(i))
        for b in loader
        for k, i in zip(b["keys"], b["frame_indices"].tolist(), strict=True)
    ]


def _loader(shards, epoch=0, **kw):
    kw.setdefault("shuffle_buffer", 4)
    return make_train_loader(
        [TrainSource(shards["video"], 3, 4)], None, seed=7, epoch=epoch, image_size=SIZE, **kw
    )


# ----------------------------------------------------------------------------- the plan


def test_plan_covers_every_sample_once_with_equal_lengths() -> None:
    counts = [7, 3, 5, 1, 4, 9]
    for world in (1, 2, 3, 8):  # 8 > 6 shards: the per-sample split
        plans = train_plans(
            counts, seed=1, epoch=2, world_size=world, batch_size=4, shuffle_buffer=5, tag="t"
        )
        assert len({p.num_batches for p in plans}) == 1
        seen = []
        for p in plans:
            starts = p.shard_starts()
            for pos in p.order[: p.num_real]:
                i, j = p.locate(int(pos))
                assert j < p.counts[i] and starts[i] + j == pos
                seen.append((p.shards[i], j))
        assert sorted(seen) == sorted((s, j) for s, c in enumerate(counts) for j in range(c))


def test_ranks_repeat_at_most_world_size_minus_one_for_any_shard_count() -> None:
    # Big shards, few of them: ranks split the epoch's sample order, cutting through shards.
    cases = [[64, 64, 64, 64, 44], [300], [50, 7], [1, 1, 1, 97], [5] * 13, [2, 0, 9, 4]]
    for counts in cases:
        total = sum(counts)
        for world in (1, 2, 3, 4, 8):
            plans = train_plans(
                counts, seed=3, epoch=1, world_size=world, batch_size=8, shuffle_buffer=6, tag="t"
            )
            lengths = {len(p.order) for p in plans}
            assert lengths == {-(-total // world)}, (counts, world)
            assert len({p.num_batches for p in plans}) == 1
            keys = Counter()
            for p in plans:
                for pos in p.order:
                    i, j = p.locate(int(pos))
                    assert 0 <= j < p.counts[i], (counts, world)
                    keys[(p.shards[i], j)] += 1
            assert set(keys) == {(s, j) for s, c in enumerate(counts) for j in range(c)}
            assert sum(keys.values()) - total <= world - 1, (counts, world)


def test_buffer_shuffle_is_a_seeded_permutation() -> None:
    a = buffer_shuffle(50, 8, rng_for(1))
    assert sorted(a.tolist()) == list(range(50))
    assert a.tolist() == buffer_shuffle(50, 8, rng_for(1)).tolist()
    assert a.tolist() != buffer_shuffle(50, 8, rng_for(2)).tolist()
    assert a.tolist() != list(range(50))


# ----------------------------------------------------------------------------- train stream


def test_same_run_same_sequence_and_epochs_differ(shards) -> None:
    first = _run(_loader(shards, epoch=0))
    assert first == _run(_loader(shards, epoch=0))
    # 20 samples in batches of 3 on one rank: no padding, the last batch holds 2.
    assert sorted(k for k, _ in first) == [f"vid_{i:03d}" for i in range(20)]
    other = _run(_loader(shards, epoch=1))
    assert [k for k, _ in first] != [k for k, _ in other]  # order
    assert dict(first) != dict(other)  # candidates: some video gets other frames
    assert sorted(k for k, _ in other[:20]) == sorted(k for k, _ in first[:20])


def test_frames_are_the_chosen_ones_and_geometry_is_shared(shards, tokenizer) -> None:
    loader = make_train_loader(
        [TrainSource(shards["video"], 4, 4)], tokenizer, seed=3, epoch=0, image_size=SIZE
    )
    flips = set()
    for batch in loader:
        frames = batch["frames"]
        assert frames.dtype == torch.uint8 and frames.shape == (4, 4, 3, SIZE, SIZE)
        assert batch["input_ids"].shape == (4, 32) and batch["input_ids"].dtype == torch.long
        assert batch["attention_mask"].dtype == torch.long
        assert batch["source"] == "vid"
        for v, key in enumerate(batch["keys"]):
            kid = int(key.split("_")[1])
            f = frames[v].float()
            # Red: this video. Green: the original frame index the loader reports.
            assert abs(f[:, 0].mean().item() - (10 * kid % 250)) < 6
            greens = (f[:, 1].mean(dim=(1, 2)) / G_STEP).round().long()
            assert greens.tolist() == batch["frame_indices"][v].tolist()
            # Blue ramp: identical crop and flip on every frame of the video.
            blue = f[:, 2]
            assert (blue - blue[0]).abs().max() < 8
            slope = blue[0, :, -1].mean() - blue[0, :, 0].mean()
            flips.add(bool(slope < 0))
            assert batch["texts"][v].endswith(key)
        assert batch["video_ids"].dtype == torch.long and len(set(batch["video_ids"].tolist())) == 4
    assert flips == {True, False}  # both flipped and unflipped videos occur


def test_hflip_off_never_flips_and_keeps_the_crops(shards) -> None:
    def frames(hflip: bool) -> dict[str, torch.Tensor]:
        loader = make_train_loader(
            [TrainSource(shards["video"], 4, 4)], None, seed=3, epoch=0, image_size=SIZE,
            hflip=hflip,
        )  # fmt: skip
        return {k: f for b in loader for k, f in zip(b["keys"], b["frames"], strict=True)}

    on, off = frames(True), frames(False)
    assert on.keys() == off.keys()
    mirrored = 0
    for key, f in off.items():
        blue = f[:, 2].float()
        assert (blue[:, :, -1].mean() - blue[:, :, 0].mean()) > 0, key  # never flipped
        # Same crop: with the flip on, a video is either identical or exactly mirrored.
        if not torch.equal(on[key], f):
            assert (on[key].int() - f.flip(-1).int()).abs().max() <= 1, key
            mirrored += 1
    assert 0 < mirrored < len(off)
    with pytest.raises(ValueError, match="crop_scale"):
        _loader(shards, crop_scale=[0.8, 0.5])


def test_ranks_split_keys_exactly_once_before_padding(shards) -> None:
    seqs, lens = [], set()
    for rank in range(2):
        loader = _loader(shards, rank=rank, world_size=2)
        lens.add(len(loader))
        seq = _run(loader)
        assert len(seq) == 10  # 20 samples over 2 ranks: no padding needed
        seqs.append(seq[: loader.dataset.sources[0].plan.num_real])
    keys = [k for s in seqs for k, _ in s]
    assert len(lens) == 1
    assert sorted(keys) == [f"vid_{i:03d}" for i in range(sum(SHARD_SIZES))]


def test_resume_mid_epoch_reproduces_the_rest(shards, tokenizer) -> None:
    sources = [TrainSource(shards["video"], 3, 4), TrainSource(shards["image"], 2, 1)]

    def batches(skip):
        loader = make_train_loader(
            sources, tokenizer, seed=5, epoch=1, image_size=SIZE, skip_samples=skip,
            shuffle_buffer=4,
        )  # fmt: skip
        return loader, list(loader)

    loader, full = batches(0)
    assert len(full) == len(loader) == 7 + 4  # ceil(20/3) video + ceil(7/2) image batches
    assert {b["source"] for b in full} == {"vid", "img"}
    assert (
        full[0]["source"] != full[1]["source"]
        or full[1]["source"] != full[2]["source"]
        or ([b["source"] for b in full] != sorted(b["source"] for b in full))
    )  # interleaved, not one corpus after the other
    k = 4
    consumed = sum(len(b["keys"]) for b in full[:k])
    resumed_loader, rest = batches(consumed)
    assert len(resumed_loader) == len(full) and resumed_loader.skip_batches == k
    assert len(rest) == len(full) - k
    for a, b in zip(full[k:], rest, strict=True):
        assert a["keys"] == b["keys"] and a["source"] == b["source"]
        assert torch.equal(a["frames"], b["frames"])
        assert torch.equal(a["input_ids"], b["input_ids"])
    with pytest.raises(ValueError, match="batch boundary"):
        batches(consumed + 1)


def test_truncated_shard_is_named_or_skipped_with_a_warning(shards, tmp_path) -> None:
    bad = tmp_path / "vid"
    shutil.copytree(shards["video"], bad)
    victim = bad / shard_name("vid", "train", 2)
    victim.write_bytes(victim.read_bytes()[:-100])
    with pytest.raises(ShardError, match=victim.name):
        _loader({"video": bad})
    with pytest.warns(ShardWarning, match="skipped 1 of 5"):
        loader = _loader({"video": bad}, skip_bad_shards=True)
    assert len(loader.skipped_shards) == 1 and victim.name in loader.skipped_shards[0]
    keys = sorted(k for k, _ in _run(loader))
    lost = {f"vid_{i:03d}" for i in range(10, 15)}  # shard 2 holds samples 10..14
    assert keys == sorted({f"vid_{i:03d}" for i in range(20)} - lost)


def test_corrupt_bytes_of_the_right_size_name_the_shard(shards, tmp_path) -> None:
    bad = tmp_path / "vid"
    shutil.copytree(shards["video"], bad)
    victim = bad / shard_name("vid", "train", 0)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)
    victim.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ShardError, match=victim.name):
            _run(_loader({"video": bad}))
        with pytest.raises(ShardError, match="sha256"):
            _loader({"video": bad}, verify_hash=True)


# ----------------------------------------------------------------------------- eval


def test_eval_every_sample_once_across_ranks(shards) -> None:
    seen_idx, seen_keys = [], []
    for rank in range(2):
        loader = make_eval_loader(
            shards["eval"], batch_size=2, num_frames=4, image_size=SIZE, rank=rank, world_size=2
        )
        for b in loader:
            assert b["frames"].shape[1:] == (4, 3, SIZE, SIZE)
            assert b["frames"][:, :, 2].float().diff(dim=-1).mean() > 0  # never flipped
            seen_idx += b["index"].tolist()
            seen_keys += b["keys"]
    assert seen_idx == list(range(9))
    assert seen_keys == [f"evl_{i:03d}" for i in range(9)]
    texts = eval_texts(shards["eval"])
    assert texts.video_keys == seen_keys
    assert len(texts.texts) == 27 and texts.text_video[:4] == [0, 0, 0, 1]
    assert texts.texts[3] == "caption 0 of evl_001"
    # Worker processes change nothing (batch by batch, frames included).
    one = make_eval_loader(shards["eval"], batch_size=2, num_frames=4, image_size=SIZE)
    two = make_eval_loader(shards["eval"], batch_size=2, num_frames=4, image_size=SIZE,
                           num_workers=2)  # fmt: skip
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["frames"], b["frames"])
    # Fewer frames than stored: middle subsampling of the stored segments.
    two = next(iter(make_eval_loader(shards["eval"], batch_size=9, num_frames=2, image_size=SIZE)))
    assert two["frames"].shape == (9, 2, 3, SIZE, SIZE)


def _ramp_jpeg(h: int, w: int, mode: str = "RGB") -> tuple[bytes, np.ndarray]:
    """A smooth image (red ramps along x, green along y) and its PIL decode as HWC RGB."""
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    img[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    img[..., 2] = 90
    buf = io.BytesIO()
    Image.fromarray(img).convert(mode).save(buf, "JPEG", quality=95, subsampling=0)
    data = buf.getvalue()
    return data, np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _reference(full: np.ndarray, crop: Crop, size: int) -> np.ndarray:
    region = torch.from_numpy(full[crop.top : crop.top + crop.height,
                                   crop.left : crop.left + crop.width].copy())  # fmt: skip
    out = torch.nn.functional.interpolate(
        region.permute(2, 0, 1)[None].float(), size=(size, size), mode="bilinear",
        align_corners=False, antialias=True,
    )[0].permute(1, 2, 0)  # fmt: skip
    out = out.round().clamp(0, 255).to(torch.uint8).numpy()
    return out[:, ::-1] if crop.flip else out


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_decode_paths_agree_with_a_reference(monkeypatch, mode) -> None:
    data, full = _ramp_jpeg(96, 144, mode)
    cases = [
        (Crop(8, 16, 20, 30), 1.0),  # libjpeg-turbo op, resized
        (Crop(8, 16, 20, 30, flip=True), 1.0),
        (Crop(4, 40, 16, 16, flip=True), 0.5),  # no resampling: a copy (eval's path)
        (Crop(8, 16, 64, 96), 1.5),  # PIL with draft: libjpeg decodes at 1/2 scale
    ]
    for fallback in (False, True):
        if fallback:  # torchvision's op unavailable: PIL decodes every frame
            monkeypatch.setattr(augment, "_DECODE_JPEG", None)
        for crop, tol in cases:
            out = np.empty((2, 16, 16, 3), dtype=np.uint8)
            decode_jpegs([data, data], crop, 16, out, key="k")
            ref = _reference(full, crop, 16).astype(float)
            assert np.array_equal(out[0], out[1])  # one geometry for all frames
            assert np.abs(out[0] - ref).mean() < tol, (crop, fallback)
            if mode == "L":
                assert np.array_equal(out[..., 0], out[..., 2])
    with pytest.raises(ValueError, match="frame 1 is not a readable image"):
        decode_jpegs([data, b"junk"], Crop(0, 0, 20, 30), 16, out, key="k")


def test_normalize() -> None:
    frames = torch.full((1, 2, 3, 4, 4), 255, dtype=torch.uint8).permute(0, 1, 2, 4, 3)
    out = normalize(frames, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5))
    assert out.dtype == torch.float32 and out.is_contiguous()
    assert torch.allclose(out[0, 0, :, 0, 0], torch.tensor([1.0, 2.0, 1.0]))
    with pytest.raises(TypeError):
        normalize(out, (0, 0, 0), (1, 1, 1))


# ----------------------------------------------------------------------------- the CLI


def _inspect(shard_dir: Path, *args: str) -> list[str]:
    cmd = [sys.executable, str(ROOT / "scripts" / "inspect_stream.py"), "--shards", str(shard_dir)]
    cmd += ["--image-size", str(SIZE), "--batch-size", "3", "--shuffle-buffer", "4", "--seed", "7"]
    cmd += args
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def test_inspect_stream_workers_resume_and_ranks(shards) -> None:
    zero = _inspect(shards["video"], "--epoch", "2", "--workers", "0")
    assert len(zero) == 20  # one rank: no padding, a short last batch
    key, *idx = zero[0].split()
    assert key.startswith("vid_") and len(idx) == 4
    expected = _run(_loader(shards, epoch=2))
    assert zero == [" ".join([k, *map(str, i)]) for k, i in expected]
    # Two worker processes: the same epoch, line for line; and resuming inside it.
    assert _inspect(shards["video"], "--epoch", "2", "--workers", "2") == zero
    resumed = _inspect(shards["video"], "--epoch", "2", "--workers", "2", "--skip-samples", "6")
    assert resumed == zero[6:]
    # Rank 1 of 2 through the CLI (with workers) + rank 0 in process: every key.
    rank1 = _inspect(shards["video"], "--epoch", "2", "--workers", "2", "--world-size", "2",
                     "--rank", "1")  # fmt: skip
    rank0 = _run(_loader(shards, epoch=2, rank=0, world_size=2))
    assert len(rank1) == len(rank0)
    assert {line.split()[0] for line in rank1} | {k for k, _ in rank0} == {
        f"vid_{i:03d}" for i in range(20)
    }


def test_inspect_stream_world_size_4_every_key_once_and_few_repeats(tmp_path, capsys) -> None:
    spec = importlib.util.spec_from_file_location(
        "inspect_stream", ROOT / "scripts/inspect_stream.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for sizes in ([13], [9, 9, 5], [3, 2, 4, 3, 1, 5, 2, 3, 4, 2]):
        name = f"s{len(sizes)}"
        folder = _build(tmp_path, name, 1, 1, "middle", sizes)
        per_rank, keys = [], Counter()
        for rank in range(4):
            argv = ["--shards", str(folder), "--world-size", "4", "--rank", str(rank)]
            argv += ["--image-size", str(SIZE), "--batch-size", "2", "--epoch", "1"]
            assert tool.main(argv) == 0
            lines = capsys.readouterr().out.splitlines()
            per_rank.append(len(lines))
            keys.update(line.split()[0] for line in lines)
        total = sum(sizes)
        assert set(keys) == {f"{name}_{k:03d}" for k in range(total)}, sizes
        assert len(set(per_rank)) == 1, (sizes, per_rank)
        assert sum(keys.values()) - total <= 3, (sizes, keys)


# ----------------------------------------------------------------------------- tar reader


def test_an_epoch_opens_each_shard_once_and_only_through_open_shard(shards, monkeypatch) -> None:
    """Shard bytes are opened in one place (:func:`t2v2t.data.shards.open_shard`, where a URL
    goes through the node cache), and one worker's epoch opens each shard once."""
    import builtins

    from t2v2t.data import shards as shards_module
    from t2v2t.data import stream as stream_module

    real_open, real_open_shard = builtins.open, shards_module.open_shard
    via_open_shard: list[str] = []
    file_opens: list[tuple[str, bool]] = []  # (shard file, opened inside open_shard)
    inside = [0]

    def counting_open(file, *args, **kwargs):
        if str(file).endswith(".tar.zst"):
            file_opens.append((Path(file).name, inside[0] > 0))
        return real_open(file, *args, **kwargs)

    def counting_open_shard(directory, name, sha256=None):
        via_open_shard.append(name)
        inside[0] += 1
        try:
            return real_open_shard(directory, name, sha256)
        finally:
            inside[0] -= 1

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(stream_module, "open_shard", counting_open_shard)
    monkeypatch.setattr(shards_module, "open_shard", counting_open_shard)
    keys = [k for k, _ in _run(_loader(shards))]
    assert len(keys) == sum(SHARD_SIZES)
    names = [shard_name("vid", "train", s) for s in range(len(SHARD_SIZES))]
    assert sorted(via_open_shard) == names  # each shard once
    assert sorted(file_opens) == [(n, True) for n in names]  # and only through open_shard


def test_shard_samples_can_skip_the_bytes_of_unwanted_samples(shards) -> None:
    from t2v2t.data.shards import iter_samples, open_shard
    from t2v2t.data.tarstream import iter_shard_samples

    name = shard_name("vid", "train", 0)
    full = list(iter_samples(shards["video"] / name))
    with open_shard(shards["video"], name) as f:
        assert list(iter_shard_samples(f)) == full
    with open_shard(shards["video"], name) as f:
        some = list(iter_shard_samples(f, keep=lambda i: i % 3 == 1))
    assert [s["__key__"] for s in some] == [s["__key__"] for s in full]
    for i, (got, ref) in enumerate(zip(some, full, strict=True)):
        assert got == (ref if i % 3 == 1 else {"__key__": ref["__key__"], "__skipped__": True})


def test_hashed_shard_reads_verify_the_digest_at_the_end(shards, tmp_path) -> None:
    """Opened with the manifest's sha256, a shard read to its end is checked against it."""
    from t2v2t.data.shards import ShardError, open_shard, read_manifest
    from t2v2t.data.tarstream import group_members, iter_shard_samples

    info = read_manifest(shards["video"])["shards"][0]
    with open_shard(shards["video"], info["name"], info["sha256"]) as f:
        assert len(list(iter_shard_samples(f))) == info["samples"]
    with open_shard(shards["video"], info["name"], "0" * 64) as f:
        with pytest.raises(ShardError, match="sha256 differs"):
            list(iter_shard_samples(f))
    grouped = list(group_members([("a.json", b"1"), ("a.000.jpg", None), ("b.json", b"2")]))
    assert grouped == [
        {"__key__": "a", "json": b"1", "__skipped__": True},
        {"__key__": "b", "json": b"2"},
    ]


def test_lean_tar_reader_matches_tarfile(tmp_path) -> None:
    import tarfile

    from t2v2t.data.tarstream import iter_tar

    long = "k" * 120 + ".json"  # needs a pax (or GNU) long-name record
    members = [("a.json", b"{}"), ("a.000.jpg", b"x" * 700), (long, b"y"), ("d/b.txt", b"")]
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
            folder = tarfile.TarInfo("d")
            folder.type = tarfile.DIRTYPE  # skipped by the reader
            tar.addfile(folder)
            for name, data in members:
                if fmt == tarfile.USTAR_FORMAT and len(name) > 100:
                    continue
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        raw = buf.getvalue()
        got = list(iter_tar(io.BytesIO(raw)))
        want = [(n, d) for n, d in members if fmt != tarfile.USTAR_FORMAT or len(n) <= 100]
        assert got == want, fmt
        skipped = list(iter_tar(io.BytesIO(raw), want=lambda n: n.endswith(".json")))
        assert skipped == [(n, d if n.endswith(".json") else None) for n, d in want]
        with pytest.raises(EOFError):
            list(iter_tar(io.BytesIO(raw[:1100])))
        with pytest.raises(EOFError):
            list(iter_tar(io.BytesIO(raw[:1100]), want=lambda n: False))
        bad = bytearray(raw)
        bad[10] ^= 0xFF  # inside the first header's name
        with pytest.raises(ValueError, match="checksum"):
            list(iter_tar(io.BytesIO(bytes(bad))))


def test_fast_tokenize_equals_the_transformers_call(tokenizer) -> None:
    from t2v2t.data.captions import tokenize

    texts = ["a red circle moves left", "", "word " * 80, "ünïcode and punctuation, too!"]
    for max_len in (8, 32, 64):
        ids, mask = tokenize(tokenizer, texts, max_len)
        ref = tokenizer(texts, padding="max_length", truncation=True, max_length=max_len,
                        return_tensors="pt")  # fmt: skip
        assert ids.dtype == torch.long and ids.shape == (4, max_len)
        assert torch.equal(ids, ref["input_ids"]) and torch.equal(mask, ref["attention_mask"])


def test_more_ranks_than_shards_still_split_every_key_once(shards) -> None:
    keys = []
    for rank in range(8):  # 8 ranks, 5 shards: every rank streams all and takes every 8th
        loader = _loader(shards, rank=rank, world_size=8)
        assert len(loader) == 1  # ceil(3 samples / batch 3)
        keys += [k for k, _ in _run(loader)[: loader.dataset.sources[0].plan.num_real]]
    assert sorted(keys) == [f"vid_{i:03d}" for i in range(20)]


def test_pin_memory_path_yields_the_same_batches(shards) -> None:
    plain = _run(_loader(shards, epoch=3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no accelerator found" on CPU-only machines
        assert _run(_loader(shards, epoch=3, pin_memory=True)) == plain


@pytest.mark.slow
def test_bench_loader_quick_runs(tmp_path) -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_loader.py"), "--quick",
         "--bench-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    import json

    results = json.loads((tmp_path / "results.json").read_text())
    for key in ("loader_frames_per_s", "loader_vs_jpeg_limit", "loader_vs_decord",
                "loader_bicubic_vs_own_decoder", "loader_vs_own_decoder"):  # fmt: skip
        assert results[key] > 0
    for shares in results["details"]["loader"]["cpu_time_breakdown"].values():
        assert abs(sum(shares.values()) - 1) < 0.01
        assert shares["JPEG decode (the decode_jpeg op)"] > 0
    assert "## loader" in (tmp_path / "README.md").read_text()


def test_a_broken_frame_names_the_shard_and_the_sample(tmp_path) -> None:
    meta = SampleMeta(
        key="bad_000", dataset="vid", split="train", source="x.mp4", captions=["c"], fps=1.0,
        vlen=1, duration=1.0, frame_indices=[[0]],
        sampling={"mode": "middle", "num_frames": 1, "candidates": 1, "seed": 0}, size=[H, W],
    )  # fmt: skip
    info = write_shard(tmp_path / "bad-000.tar.zst", [encode_sample(meta, [b"not a jpeg"])])
    write_manifest(tmp_path, {"format": FORMAT, "dataset": "vid", "split": "train",
                              "num_frames": 1, "shards": [info_dict(info)]})  # fmt: skip
    loader = make_train_loader([TrainSource(tmp_path, 1, 1)], None, seed=0, epoch=0)
    with pytest.raises(ShardError, match=r"bad-000\.tar\.zst: sample 'bad_000'.*not a readable"):
        next(iter(loader))


def test_loader_started_ahead_gives_the_same_batches(shards) -> None:
    """The trainer starts the next epoch's loader before the epoch ends (docs/training.md,
    "Epoch boundaries"): a started loader's batches equal a later start's, frames included."""
    later = list(_loader(shards, epoch=1, num_workers=2))
    ahead = _loader(shards, epoch=1, num_workers=2)
    assert ahead.start() is ahead and ahead._ahead is not None
    first = ahead._ahead
    assert ahead.start()._ahead is first  # starting twice keeps the running workers
    got = list(ahead)
    assert ahead._ahead is None and len(got) == len(later) > 1
    for a, b in zip(got, later, strict=True):
        assert a["keys"] == b["keys"] and torch.equal(a["frames"], b["frames"])
    again = list(ahead)  # the next iteration starts afresh: the same epoch again
    assert [b["keys"] for b in again] == [b["keys"] for b in later]


def test_worker_batches_come_out_of_the_frame_pool_bit_for_bit(shards, tokenizer) -> None:
    """Workers write frames into reused shared slots (t2v2t.data.frame_pool); a caller that keeps
    every batch of the epoch (7 batches, more than one worker's 3 slots) still has the frames
    and arrays of the in-process loader, in memory of its own."""

    def epoch(workers: int) -> list[dict]:
        return list(make_train_loader([TrainSource(shards["video"], 3, 4)], tokenizer, seed=7,
                                      epoch=2, image_size=SIZE, shuffle_buffer=4,
                                      num_workers=workers))  # fmt: skip

    plain = epoch(0)
    assert len(plain) == 7
    for workers in (1, 2):
        got = epoch(workers)
        assert len(got) == len(plain)
        for a, b in zip(got, plain, strict=True):
            assert a["keys"] == b["keys"] and a["texts"] == b["texts"]
            assert a["frames"].shape == b["frames"].shape and torch.equal(a["frames"], b["frames"])
            assert not a["frames"].is_shared()  # copied out of the pool, not a slot's view
            for key in ("frame_indices", "video_ids", "input_ids", "attention_mask"):
                assert isinstance(a[key], torch.Tensor) and a[key].dtype == b[key].dtype
                assert torch.equal(a[key], b[key]), key


def test_frame_pool_slots_wait_for_the_main_process_and_an_early_stop_frees_them() -> None:
    import threading

    from t2v2t.data.frame_pool import SLOTS, FramePool

    pool = FramePool(workers=1, slot_bytes=2 * 3 * 4 * 4 * 3)
    shape = (2, 3, 4, 4, 3)
    notes = []
    for k in range(SLOTS):
        view, note = pool.take(0, shape)
        view.fill_(k + 1)
        notes.append(note)
    assert [n.slot for n in notes] == list(range(SLOTS))
    out = pool.copy_out(notes[0])  # frees slot 0: the next take gets it at once
    assert out.shape == (2, 3, 3, 4, 4) and int(out.min()) == int(out.max()) == 1
    view, note = pool.take(0, shape)
    assert note.slot == 0
    view.fill_(9)
    assert int(out.max()) == 1  # what the main process copied out is its own

    got = []
    waiter = threading.Thread(target=lambda: got.append(pool.take(0, shape)), daemon=True)
    waiter.start()  # every slot is still to be copied out: the take waits
    waiter.join(0.5)
    assert waiter.is_alive() and not got
    pool.close()  # an epoch stopped early: nothing waits for a slot any more
    waiter.join(10)
    assert not waiter.is_alive() and got[0][1].slot == 1
    with pytest.raises(ValueError, match="do not fit"):
        pool.take(0, (2, 3, 4, 4, 4))


def test_the_pin_memory_thread_copies_pooled_frames_into_pinned_memory(monkeypatch) -> None:
    """torch's pin-memory step (the function its pin thread runs on each batch) calls a pooled
    batch's frames' ``pin_memory``, which copies them out of the pool with ``pin=True``."""
    from torch.utils.data._utils.pin_memory import pin_memory

    from t2v2t.data.frame_pool import FramePool

    pool = FramePool(workers=1, slot_bytes=1 * 1 * 2 * 2 * 3)
    view, note = pool.take(0, (1, 1, 2, 2, 3))
    view.fill_(5)
    asked = []
    real = FramePool.copy_out

    def copy_out(self, n, pin=False):
        asked.append(pin)
        return real(self, n, pin=False)  # pinned memory needs an accelerator

    monkeypatch.setattr(FramePool, "copy_out", copy_out)
    batch = pin_memory({"frames": note, "keys": ["a"], "frame_indices": np.zeros((1, 1))})
    assert asked == [True]
    assert isinstance(batch["frames"], torch.Tensor) and int(batch["frames"].max()) == 5
    pool.close()


def test_a_loader_started_ahead_and_dropped_frees_its_frame_pool(shards) -> None:
    import gc

    from t2v2t.data import frame_pool

    before = set(frame_pool._POOLS)
    ahead = _loader(shards, epoch=4, num_workers=2).start()  # workers running, no batch taken
    assert len(set(frame_pool._POOLS) - before) == 1
    del ahead
    gc.collect()
    assert set(frame_pool._POOLS) == before
