"""VindLU's training-only rules (stochastic depth, fp16 with a GradScaler, dropping the last
partial batch), each written out here from VindLU's code, independently of this project's:

- ``models/backbones/beit/st_beit.py``: ``BeitEncoder`` gives block ``i`` the drop path rate
  ``torch.linspace(0, config.drop_path_rate, num_hidden_layers)[i]`` (``drop_path_rate`` 0.1 in
  the BEiT config it loads); a block with rate 0 has ``nn.Identity``; one ``BeitDropPath`` serves
  both residual branches (attention, MLP) of a block, applied on ``(b t) l c``: per frame.
- ``models/modules/temporal_model.py``: the ``timesformer`` block (``configs/pretrain.py``'s
  ``temporal_model_block``) is ``shortcut + scale * DropPath(0.1)(x)`` on ``[b, t, l, c]``:
  per video.
- ``tasks/shared_utils.py`` / ``tasks/retrieval.py``: ``GradScaler(enabled=config.fp16)``
  (``fp16 = True``), ``autocast`` float16, ``scaler.scale(loss).backward(); scaler.step(opt);
  scaler.update()``, the scheduler steps every iteration; ``"scaler"`` in the checkpoint.
- ``dataset/__init__.py``: ``create_loader`` passes ``drop_last=True`` for training loaders
  over a ``DistributedSampler`` (which pads every rank to ``ceil(N / world)``).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from timm.layers import DropPath
from train_shards import make_train_shards, tiny_overrides

from t2v2t.data.loader import TrainSource, make_train_loader
from t2v2t.data.plan import train_plans
from t2v2t.models import build_model, build_tokenizer
from t2v2t.models.start import build_for_training
from t2v2t.models.vision import VideoEncoder, create_backbone
from t2v2t.training.checkpoint import Checkpointer, load_checkpoint, rng_state
from t2v2t.training.config import load_config
from t2v2t.training.loop import (
    grad_scaler,
    make_loader,
    model_spec,
    optimizer_and_schedule,
    optimizer_step,
    train,
)
from t2v2t.training.metrics_log import read_metrics
from t2v2t.training.objective import Objective
from t2v2t.training.optim import CosineSchedule

# BEiT's block structure (relative position bias, layer scale) at stand-in sizes.
BEIT = {"image_size": 32, "depth": 12, "width": 64, "heads": 2}


def _vindlu_block_rates(rate: float, depth: int) -> list[float]:
    """torch.linspace(0, rate, depth), written out: 0, rate/(depth-1), ..., rate."""
    return [rate * i / (depth - 1) for i in range(depth)]


@pytest.fixture(scope="module")
def encoder() -> VideoEncoder:
    torch.manual_seed(0)
    enc = VideoEncoder(create_backbone("beit_base_patch16_224", **BEIT), num_frames=4)
    for module in enc.temporal:  # a trained model's temporal branch (fresh ones are zero)
        module.scale.data.fill_(0.5)
    return enc


def _rate(module: torch.nn.Module) -> float:
    return module.drop_prob if isinstance(module, DropPath) else 0.0


def test_drop_path_rates_rise_over_the_blocks_as_vindlus(encoder) -> None:
    enc = copy.deepcopy(encoder)
    enc.set_drop_path(0.1)
    want = _vindlu_block_rates(0.1, 12)
    for i, blk in enumerate(enc.backbone.blocks):
        assert _rate(blk.drop_path1) == pytest.approx(want[i], abs=1e-7)
        assert _rate(blk.drop_path2) == pytest.approx(want[i], abs=1e-7)
    assert isinstance(enc.backbone.blocks[0].drop_path1, torch.nn.Identity)  # rate 0: none
    assert all(_rate(t.drop_path) == pytest.approx(0.1) for t in enc.temporal)
    enc.set_drop_path(0.0)  # off again: nothing left to draw
    assert not any(isinstance(m, DropPath) for m in enc.modules())


def test_drop_path_changes_nothing_in_eval_mode(encoder) -> None:
    frames = torch.randn(3, 4, 3, 32, 32)
    with_dp = copy.deepcopy(encoder)
    with_dp.set_drop_path(0.1)
    with torch.no_grad():
        a = encoder.eval()(frames)
        b = with_dp.eval()(frames)
        with_dp.train()
        c = with_dp(frames)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])  # in training the branches are dropped


def test_temporal_branch_dropped_per_video_with_probability_0_1(encoder) -> None:
    """DropPath(0.1) on [b, t, l, c]: each video's branch (all its frames and tokens) is kept,
    scaled by 1 / 0.9, or dropped, with frequency 0.1 (4,000 videos: sd 0.005)."""
    enc = copy.deepcopy(encoder)
    enc.set_drop_path(0.1)
    module = enc.temporal[5]
    b, t, n, d = 4000, 2, 3, 64
    torch.manual_seed(1)
    x = torch.randn(b * t, n, d)
    with torch.no_grad():
        module.eval()
        branch = (module(x, t) - x).view(b, t, n, d)
        module.train()
        got = (module(x, t) - x).view(b, t, n, d)
    dropped = got.abs().amax(dim=(1, 2, 3)) == 0
    kept = ~dropped
    torch.testing.assert_close(got[kept], branch[kept] / 0.9, rtol=1e-4, atol=1e-5)
    assert abs(dropped.float().mean().item() - 0.1) < 0.025


def test_block_branches_dropped_per_frame_with_the_blocks_rate(encoder) -> None:
    """The last block (rate 0.1): every frame is one of the four outcomes of two independent
    drops (attention, MLP); each branch is dropped for ~10% of the frames, both for ~1%."""
    enc = copy.deepcopy(encoder)
    enc.set_drop_path(0.1)
    blk = enc.backbone.blocks[11]
    torch.manual_seed(2)
    x = torch.randn(3000, 5, 64)
    with torch.no_grad():
        blk.train()
        got = blk(x)
        attn = blk.gamma_1 * blk.attn(blk.norm1(x))
        outcomes = []
        for keep_attn in (1 / 0.9, 0.0):
            x1 = x + keep_attn * attn
            mlp = blk.gamma_2 * blk.mlp(blk.norm2(x1))
            outcomes += [x1 + keep_mlp * mlp for keep_mlp in (1 / 0.9, 0.0)]
    match = torch.stack(
        [((got - o).abs().amax(dim=(1, 2)) < 1e-4) for o in outcomes], dim=1
    )  # [frames, (kept, kept) (kept, dropped) (dropped, kept) (dropped, dropped)]
    assert (match.sum(1) >= 1).all()  # every frame is one of the four
    first = match.float().argmax(1)
    attn_dropped = (first >= 2).float().mean().item()
    mlp_dropped = (first % 2 == 1).float().mean().item()
    assert abs(attn_dropped - 0.1) < 0.025 and abs(mlp_dropped - 0.1) < 0.025
    assert 0.0 < (first == 3).float().mean().item() < 0.03


def test_paper_recipes_train_with_drop_path_0_1() -> None:
    for task in ("pretrain", "finetune-msrvtt", "finetune-didemo", "finetune-anet"):
        assert load_config(task, "base").model.drop_path == 0.1
    assert load_config("pretrain", "tiny").model.drop_path == 0.0
    # The key reaches the model a run trains (and only through the training spec).
    cfg = load_config("pretrain", "tiny", ["model.drop_path=0.1", "model.image_size=32"])
    model = build_for_training(model_spec(cfg, init="random"))
    depth = len(model.vision.backbone.blocks)
    got = [_rate(b.drop_path2) for b in model.vision.backbone.blocks]
    assert got == pytest.approx(_vindlu_block_rates(0.1, depth), abs=1e-7)


# --- fp16 autocast with a GradScaler (train.precision=fp16) ----------------------------------


def _fp16_step_parts(scaler: torch.amp.GradScaler, grad_clip: float = 0.0) -> SimpleNamespace:
    """What optimizer_step reads of a run: a tiny model's objective, AdamW, schedule, scaler."""
    cfg = load_config(
        "pretrain", "tiny", ["model.image_size=32", f"optim.grad_clip={grad_clip}", "loss.mlm=0"]
    )
    torch.manual_seed(0)
    model = build_model("tiny", init="random", overrides={"image_size": 32, "vision_depth": 2})
    optimizer, schedule = optimizer_and_schedule(cfg, model, steps_per_epoch=10)
    return SimpleNamespace(
        cfg=cfg,
        objective=Objective.from_config(model, cfg.loss),
        optimizer=optimizer,
        schedule=schedule,
        scaler=scaler,
        dev=SimpleNamespace(device=torch.device("cpu"), amp_dtype=torch.float16),
        model=model,
    )


def _batch(tokenizer, n: int = 4) -> dict:
    enc = tokenizer(
        ["a red square", "a blue circle", "two green stars", "a yellow sky"][:n],
        padding="max_length", truncation=True, max_length=16, return_tensors="pt",
    )  # fmt: skip
    torch.manual_seed(3)
    return {
        "frames": torch.randint(0, 256, (n, 2, 3, 32, 32), dtype=torch.uint8),
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "video_ids": torch.arange(n),
    }


@pytest.mark.parametrize("grad_clip", [0.0, 1.0])
def test_fp16_step_skipped_on_overflow_schedule_steps_anyway(grad_clip: float) -> None:
    """GradScaler's rule: scaled fp16 gradients that overflow (inf/nan) skip optimizer.step and
    halve the scale; VindLU's loop steps its scheduler every iteration regardless. A finite step
    updates the weights and keeps the scale (it grows only after 2,000 good steps)."""
    tokenizer = build_tokenizer("tiny")
    run = _fp16_step_parts(torch.amp.GradScaler("cpu", init_scale=2.0**40), grad_clip)
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    lr0 = run.schedule.get_lr()
    out = optimizer_step(run, _batch(tokenizer))
    assert torch.isfinite(out["loss"])
    assert run.scaler.get_scale() == 2.0**39  # overflowed: x0.5
    assert _adam_steps(run.optimizer) == {0}  # AdamW never stepped
    assert all(torch.equal(before[k], v) for k, v in run.model.state_dict().items())
    assert run.schedule.step_count == 1 and run.schedule.get_lr() != lr0

    run.scaler = torch.amp.GradScaler("cpu", init_scale=1.0)  # small enough not to overflow
    optimizer_step(run, _batch(tokenizer))
    assert run.scaler.get_scale() == 1.0
    assert _adam_steps(run.optimizer) == {1}
    assert any(not torch.equal(before[k], v) for k, v in run.model.state_dict().items())


def _adam_steps(optimizer: torch.optim.Optimizer) -> set[int]:
    return {int(st["step"]) for st in optimizer.state_dict()["state"].values()}


def test_fp16_run_resumes_exactly_with_its_scaler_state(tmp_path: Path) -> None:
    """A fp16 run stopped after step 1 and resumed logs the uninterrupted run's losses and loss
    scales bit for bit and ends with its weights and scaler state (scale, growth tracker)."""
    shards = make_train_shards(tmp_path / "shards", num_samples=16, per_shard=8)
    overrides = tiny_overrides(  # CPU fp16 kernels are slow: two steps, no MLM head
        shards, "train.precision=fp16", "train.ckpt_every_steps=0", "optim.epochs=1", "loss.mlm=0"
    )
    reference, run = tmp_path / "reference", tmp_path / "run"
    train(load_config("pretrain", "tiny", overrides), reference)
    train(load_config("pretrain", "tiny", [*overrides, "train.max_steps=1"]), run)
    stopped = load_checkpoint(run / "last.pt")
    assert stopped["step"] == 1 and stopped["scaler"]["scale"] in (2.0**16, 2.0**15)
    train(load_config("pretrain", "tiny", overrides), run, resume_from=run / "last.pt")
    ref, got = _metrics(reference), _metrics(run)
    assert [r["step"] for r in got] == [1, 2]
    for a, b in zip(got, ref, strict=True):
        assert (a["loss"], a["grad_scale"], a["lr"]) == (b["loss"], b["grad_scale"], b["lr"])
    final, want = load_checkpoint(run / "last.pt"), load_checkpoint(reference / "last.pt")
    assert final["scaler"] == want["scaler"] and want["scaler"]["growth_interval"] == 2000
    for name, tensor in want["model"].items():
        assert torch.equal(final["model"][name], tensor), name
    # fp32 and bf16 runs keep no scaler state (a disabled scaler: plain steps)
    for dtype in (None, torch.bfloat16):
        scaler = grad_scaler(SimpleNamespace(device=torch.device("cpu"), amp_dtype=dtype))
        assert not scaler.is_enabled() and scaler.state_dict() == {}


def _metrics(run: Path) -> list[dict]:
    return [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]


# --- drop_last (data.drop_last) ----------------------------------------------------------------


def _vindlu_batches(total: int, world: int, batch: int) -> int:
    """DistributedSampler pads every rank to ceil(total / world) indices; DataLoader with
    drop_last=True yields the full batches of them: floor(ceil(total / world) / batch)."""
    return math.ceil(total / world) // batch


@pytest.mark.parametrize("world", [1, 2, 3])
def test_drop_last_plan_has_vindlus_batch_count_and_drops_each_ranks_tail(world: int) -> None:
    counts = [5, 7, 3, 6]  # 21 samples
    caps = [np.random.default_rng(0).integers(1, 4, size=n) for n in counts]
    for captions, total in ((None, 21), (caps, int(sum(c.sum() for c in caps)))):
        kw = dict(seed=3, epoch=1, batch_size=4, shuffle_buffer=8, tag="t", captions=captions)
        keep = train_plans(counts, world_size=world, drop_last=False, **kw)
        drop = train_plans(counts, world_size=world, drop_last=True, **kw)
        for k, d in zip(keep, drop, strict=True):
            assert d.num_batches == _vindlu_batches(total, world, 4)
            assert k.num_batches == math.ceil(math.ceil(total / world) / 4)
            batches = [d.batch(i) for i in range(d.num_batches)]
            assert all(len(b) == 4 for b in batches)  # no short batch
            # What is visited: the same order, less its last ceil(total / world) % 4 entries
            # (an epoch's dropped items; padding repeats sit at the very end).
            visited = np.concatenate(batches) if batches else np.zeros(0, np.int64)
            tail = math.ceil(total / world) % 4
            assert np.array_equal(visited, k.order[: len(k.order) - tail])


def test_drop_last_loader_resumes_exactly_and_names_the_dropped_items(tmp_path: Path) -> None:
    # 20 videos, batch 8, one rank: VindLU's 2 full batches; the plan's last 4 are not visited.
    shards = make_train_shards(tmp_path / "shards", num_samples=20, per_shard=8)

    def batches(skip: int = 0, drop_last: bool = True) -> list[list[str]]:
        loader = make_train_loader(
            [TrainSource(shards, 8, 2)], None, seed=5, epoch=0, image_size=32,
            skip_samples=skip, drop_last=drop_last,
        )  # fmt: skip
        return [list(b["keys"]) for b in loader]

    full, kept = batches(), batches(drop_last=False)
    assert [len(b) for b in full] == [8, 8] and [len(b) for b in kept] == [8, 8, 4]
    assert full == kept[:2]  # the same plan; the short batch (its 4 videos) is dropped
    assert not set(kept[2]) & {k for b in full for k in b}
    assert batches(skip=8) == full[1:]  # resume after one batch
    assert batches(skip=16) == []  # the epoch's end (both batches consumed)


def test_steps_per_epoch_and_schedule_follow_drop_last(tmp_path: Path) -> None:
    shards = make_train_shards(tmp_path / "shards", num_samples=20, per_shard=8)
    model = build_model("tiny", init="random", overrides={"image_size": 32, "vision_depth": 2})
    steps = {}
    for drop in ("true", "false"):
        cfg = load_config(
            "pretrain", "tiny", tiny_overrides(shards, f"data.drop_last={drop}", "optim.epochs=3")
        )
        loader = make_loader(cfg, None, epoch=0, rank=0, world=1, skip=0, image_size=32)
        _, schedule = optimizer_and_schedule(cfg, model, len(loader))
        steps[drop] = (len(loader), schedule.total_steps)
    assert steps == {"true": (2, 6), "false": (3, 9)}
    assert load_config("finetune-msrvtt", "base").data.drop_last is True  # the paper's recipes


def test_drop_last_elastic_resume_reads_the_rest_of_the_n_rank_epoch(tmp_path: Path) -> None:
    """2 ranks x 4 over 20 videos: VindLU's floor(10 / 4) = 2 steps, each rank's last 2 dropped.
    Stopped after step 1 and resumed on 1 process x 8 (docs/reliability.md, "Elastic resume"):
    its one step is the 2 ranks' second batches; their dropped tails stay unread."""
    shards = make_train_shards(tmp_path / "shards", num_samples=20, per_shard=8)

    def read(world: int, rank: int, batch: int, **kw) -> list[list[str]]:  # noqa: ANN003
        loader = make_train_loader(
            [TrainSource(shards, batch, 2)], None, seed=0, epoch=0, image_size=32, rank=rank,
            world_size=world, drop_last=True, **kw,
        )  # fmt: skip
        return [list(b["keys"]) for b in loader]

    ranks = [read(2, r, 4) for r in range(2)]
    assert [len(b) for r in ranks for b in r] == [4, 4, 4, 4]
    rest = read(1, 0, 8, earlier=[(2, 4)])
    assert len(rest) == 1 and sorted(rest[0]) == sorted(ranks[0][1] + ranks[1][1])
    kept = {k for r in ranks for b in r for k in b}
    assert len(kept) == 16  # 4 of the 20 are dropped this epoch, by the 2-rank plans as by VindLU
    # The trainer takes the checkpoint: the 2-rank part goes to `earlier`, no refusal.
    cfg = load_config("pretrain", "tiny", tiny_overrides(shards, "data.drop_last=true"))
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    sched = CosineSchedule(opt, lr=0.1, min_lr=0.0, warmup_epochs=0, epochs=1, steps_per_epoch=2)
    ckpt = {
        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": 1, "config": {},
        "data_position": {"epoch": 0, "samples": 4, "world_size": 2}, "rng": [rng_state()],
    }  # fmt: skip
    model = SimpleNamespace(config=None)
    ckptr = Checkpointer(tmp_path, cfg, model, opt, sched, rank=0, world=1)
    state = ckptr.resume(ckpt)
    assert (state.earlier, state.samples, state.step) == ([(2, 4)], 0, 1)
