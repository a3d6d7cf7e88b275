"""The training loop for pre-training and fine-tuning (one loop, the config decides the task).

Reads top to bottom like nanoGPT's (:func:`train`): set up the device, the model
(:mod:`t2v2t.models.start`), the data, the optimiser and schedule, the checkpointer
(:mod:`t2v2t.training.checkpoint`: resume); then per epoch :func:`run_one_epoch` (for each
batch: lr -> the objective's losses (bf16 autocast on CUDA) -> backward -> clip -> step -> log
-> maybe checkpoint) and :func:`end_of_epoch` (evaluate when fine-tuning, keep best, checkpoint).

Run directory: ``config.yaml`` (resolved), ``metrics.jsonl`` (one line per optimiser step, plus
one per evaluation), ``last.pt`` and, when fine-tuning, ``best.pt`` and ``eval_epochN.json``.
"""

from __future__ import annotations

import gc
import json
import math
import os
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from t2v2t import dist, interrupts
from t2v2t.data.augment import normalize
from t2v2t.data.loader import TrainSource, make_train_loader
from t2v2t.models import build_tokenizer, load_weights
from t2v2t.models.loading import CheckpointError
from t2v2t.models.start import TrainModelSpec, build_for_training, init_from_checkpoint
from t2v2t.retrieval.evaluate import evaluate_retrieval
from t2v2t.retrieval.settings import EvalConfig
from t2v2t.training.checkpoint import (
    Checkpointer,
    TrainState,
    check_global_batch,
    load_checkpoint,
)
from t2v2t.training.config import Config, ConfigError, dump_yaml
from t2v2t.training.loggers import RunLoggers, eval_scalars
from t2v2t.training.metrics_log import setup_logging
from t2v2t.training.objective import Objective
from t2v2t.training.optim import VINDLU_WARMUP_EPOCHS, CosineSchedule, build_optimizer
from t2v2t.training.preflight import check_files
from t2v2t.training.samples_log import append_samples, keep_until
from t2v2t.training.select import (
    Selection,
    check_select,
    parse_select,
    select_eval,
    selection_value,
)

LOSS_TERMS = ("loss", "vtc", "vtm", "mlm")
# Steps before an epoch's end at which the next epoch's loader starts: more than its workers'
# start-up (about 7 s in `make demo`) takes at ~1 s per step.
AHEAD_STEPS = 8


@dataclass
class TrainResult:
    step: int
    epoch: int
    last_checkpoint: Path
    best_metric: float | None
    preempted: str | None = None  # the stop signal that ended the run early (its name)


# ---------------------------------------------------------------------------------------------
# The loop


def train(
    cfg: Config, run_dir: str | Path, *, resume_from: str | Path | None = None
) -> TrainResult:
    """Train as ``cfg`` says, writing into ``run_dir``; ``resume_from`` continues a checkpoint.

    A stop signal (``train.stop_signals``) ends it after the current step with ``last.pt``
    written (``TrainResult.preempted``); a killed loader worker is one ``error:`` line."""
    with interrupts.stop_signals(cfg.train.stop_signals):
        return _train(cfg, Path(run_dir), resume_from)


def _train(cfg: Config, run_dir: Path, resume_from: str | Path | None) -> TrainResult:
    setup_torch(cfg)
    check_files(cfg, resume_from=resume_from)
    check_select(cfg)
    ckpt = load_checkpoint(resume_from) if resume_from is not None else None
    if ckpt is not None:  # before anything is written: a wrong batch is one error line
        check_global_batch(cfg, ckpt, dist.world_info()[1], resume_from)
    dev = setup_device(cfg, run_dir)

    # -- model: the same seed on every rank gives the same initial weights
    seed_everything(cfg.data.seed)
    model = model_to_train(cfg, ckpt, dev)
    tokenizer = build_tokenizer(model.config.preset)

    # -- data: batches per epoch are equal on every rank (the loader guarantees it)
    first = epoch_loader(cfg, tokenizer, dev, model.config.image_size, TrainState())
    steps_per_epoch = len(first)
    if steps_per_epoch == 0:
        raise ConfigError("the training shards hold fewer samples than one global batch")

    # -- optimiser, schedule, checkpoints: resuming restores them and every RNG stream
    optimizer, schedule = optimizer_and_schedule(cfg, model, steps_per_epoch)
    scaler = grad_scaler(dev)
    checkpointer = Checkpointer(
        run_dir, cfg, model, optimizer, schedule, rank=dev.rank, world=dev.world, scaler=scaler
    )
    if ckpt is not None:
        state = checkpointer.resume(ckpt)
        del ckpt
    else:
        state = TrainState()
        # Different ranks draw different MLM masks / hard negatives from here on.
        seed_everything(cfg.data.seed + 1000 * dev.rank + 1)

    # -- the run directory (rank 0 writes; the others only compute)
    log = open_run_dir(cfg, run_dir, dev, resume_step=None if resume_from is None else state.step)
    run = Run(
        cfg=cfg,
        dev=dev,
        run_dir=run_dir,
        model=model,
        objective=wrap_for_ranks(Objective.from_config(model, cfg.loss), dev),
        tokenizer=tokenizer,
        optimizer=optimizer,
        schedule=schedule,
        checkpointer=checkpointer,
        log=log,
        steps_per_epoch=steps_per_epoch,
        scaler=scaler,
    )

    died = None
    try:
        run_epochs(run, state, first)
    except RuntimeError as err:  # torch's report of a killed worker: one line instead
        died = interrupts.worker_death(err, workers=cfg.data.num_workers, last=checkpointer.last)
        if died is None:
            raise
    if died is not None:
        run.ahead = first = None
        gc.collect()  # the loaders' other workers stop now, not while the interpreter exits
        raise died
    if log is not None:
        log.close()
    dist.barrier()  # every rank is past the last checkpoint before any exits
    return TrainResult(state.step, state.epoch, checkpointer.last, state.best, run.preempted)


def run_epochs(run: Run, state: TrainState, first: Any) -> None:
    """The epochs from ``state`` on: a resumed run starts inside the epoch its checkpoint stopped
    in; max_steps or a stop signal may end the run mid-epoch (``last.pt`` holds the position)."""
    cfg = run.cfg
    while state.epoch < cfg.optim.epochs and not run.max_steps_reached(state):
        fresh = state.epoch == 0 and not state.mid_epoch
        loader = first if fresh else run.take_ahead(state) or run.loader(state)
        run.begin_epoch(state, loader)
        if not run_one_epoch(run, loader, state):
            if keeps_last(cfg) and run.preempted is None:  # best.pt: the weights it ends with
                run.checkpointer.save(run.checkpointer.best, state)
            break
        end_of_epoch(run, state)  # its checkpoint is the next epoch's start
        more = state.epoch < cfg.optim.epochs and not run.max_steps_reached(state)
        if more and agree_to_stop(run.dev):
            run.preempted = interrupts.signal_name(interrupts.pending())
            break


@dataclass(frozen=True)
class Device:
    """This process in the job: rank, world size, local rank, torch device, autocast dtype."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    amp_dtype: torch.dtype | None

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass
class Run:
    """What every step of one run uses; :func:`train` builds it once."""

    cfg: Config
    dev: Device
    run_dir: Path
    model: nn.Module  # the plain model: checkpoints and evaluation
    objective: nn.Module  # what a batch goes through: the Objective (DDP-wrapped if world > 1)
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    schedule: CosineSchedule
    checkpointer: Checkpointer
    log: RunLoggers | None  # rank 0 only
    steps_per_epoch: int  # a fresh epoch's on this process count
    scaler: torch.amp.GradScaler  # fp16's loss scaling; disabled (a no-op) otherwise
    preempted: str | None = None  # set when the ranks agreed to stop on a stop signal
    # The epoch under way: its steps and the step it ends at (a resumed epoch begun on another
    # process count may have another length than steps_per_epoch, with drop_last).
    epoch_steps: int = 0
    epoch_end: int = 0

    def begin_epoch(self, state: TrainState, loader: Any) -> None:
        """Where the epoch ``loader`` serves ends, and the schedule's total from it: the steps
        taken, this epoch's rest, ``steps_per_epoch`` for every later epoch."""
        self.epoch_steps = len(loader)
        self.epoch_end = state.step - getattr(loader, "skip_batches", 0) + self.epoch_steps
        later = max(0, self.cfg.optim.epochs - state.epoch - 1)
        self.schedule.set_total(self.epoch_end + later * self.steps_per_epoch)

    def max_steps_reached(self, state: TrainState) -> bool:
        return bool(self.cfg.train.max_steps and state.step >= self.cfg.train.max_steps)

    # The next epoch's loader, started AHEAD_STEPS steps before this epoch ends: its workers
    # start and prefetch while the last steps run, so the epoch turns without a stall.
    ahead: Any = None

    def loader(self, state: TrainState) -> Any:
        return epoch_loader(self.cfg, self.tokenizer, self.dev, self.model.config.image_size, state)

    def start_ahead(self, state: TrainState) -> None:
        """Start epoch ``state.epoch + 1``'s loader (from its first sample) if a run gets there."""
        nxt = replace(state, epoch=state.epoch + 1, samples=0, earlier=[])
        max_steps = self.cfg.train.max_steps
        end = self.epoch_end
        if self.ahead is None and nxt.epoch < self.cfg.optim.epochs and not 0 < max_steps <= end:
            try:
                loader = self.loader(nxt)
                self.ahead = (nxt.epoch, loader.start() if hasattr(loader, "start") else loader)
            except Exception:  # noqa: BLE001 - the epoch's own start raises it, after the checkpoint
                self.ahead = None

    def take_ahead(self, state: TrainState) -> Any:
        """The started loader when it is ``state``'s (an epoch's start), else None."""
        ahead, self.ahead = self.ahead, None
        return (
            ahead[1]
            if ahead is not None and ahead[0] == state.epoch and not state.mid_epoch
            else None
        )


def run_one_epoch(run: Run, loader: Any, state: TrainState) -> bool:
    """Optimiser steps over ``loader`` (the rest of ``state.epoch``), each logged, with a
    mid-epoch ``last.pt`` every ``train.ckpt_every_steps``; False when ``train.max_steps`` or
    a stop signal (``run.preempted``, after ``last.pt``) stopped the epoch before its end."""
    cfg, spe, epoch_end = run.cfg, run.epoch_steps, run.epoch_end
    taken = state.step - (epoch_end - spe)  # of this epoch, before this loader
    bar = progress_bar(run.dev.main, state.epoch, cfg.optim.epochs, spe, taken)
    t_last = time.perf_counter()
    for batch in loader:
        lr = run.schedule.get_lr()
        out = optimizer_step(run, batch)
        state.step += 1
        state.samples += int(batch["frames"].shape[0])
        if cfg.train.log_samples:
            append_samples(
                run.run_dir,
                step=state.step,
                epoch=state.epoch,
                rank=run.dev.rank,
                keys=list(batch["keys"]),
            )
        t_last, stop = log_step(run, state, batch, out, lr, t_last, bar)
        if epoch_end - state.step == min(AHEAD_STEPS, spe - 1):
            run.start_ahead(state)
        # At the epoch's end its own checkpoint (and evaluation) comes first, then the stop.
        stop = stop and state.step < epoch_end and not run.max_steps_reached(state)
        done = run.max_steps_reached(state) or stop
        if state.step < epoch_end and (done or _every(state.step, cfg.train.ckpt_every_steps)):
            run.checkpointer.save(run.checkpointer.last, state)  # the position inside the epoch
        if stop:
            run.preempted = interrupts.signal_name(interrupts.pending())
        if done:
            break
    bar.close()
    return state.step >= epoch_end


def end_of_epoch(run: Run, state: TrainState) -> None:
    """Evaluate (fine-tuning): the monitored split, the selecting one; keep ``best.pt`` as
    ``train.select`` says; checkpoint the next epoch's start."""
    state.epoch += 1
    state.samples = 0
    state.earlier = []
    sel = parse_select(run.cfg.train.select)
    monitored = None
    if run.cfg.train.eval_every_epoch:
        monitored = evaluate_and_log(run, state, run.cfg.eval, "monitor", sel)
    improved = choose_epoch(run, state, sel, monitored)
    run.checkpointer.save(run.checkpointer.last, state)
    if improved:
        run.checkpointer.save(run.checkpointer.best, state)


# ---------------------------------------------------------------------------------------------
# The steps of train()


def setup_torch(cfg: Config) -> None:
    """Threads and determinism before anything allocates (exact resume relies on this on CPU)."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # MKL's CPU GEMM otherwise picks kernels by the memory alignment of its operands: a
        # resumed run allocates differently and its losses differ in the last bits. Read when
        # MKL first runs, which is after this in a fresh process (docs/reliability.md, "Exact
        # resume"); ~7% slower GEMM.
        os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")


def setup_device(cfg: Config, run_dir: Path) -> Device:
    """Join the torchrun process group (a plain ``python`` run is world size 1), log to
    ``train.log`` on rank 0, and take this local rank's GPU (TF32 matmuls) or the CPU."""
    dist.init_distributed()
    rank, world, local_rank = dist.world_info()
    setup_logging(run_dir / "train.log" if rank == 0 else None, main=rank == 0)
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        device = torch.device("cpu")
    return Device(rank, world, local_rank, device, autocast_dtype(cfg, device))


def model_to_train(cfg: Config, ckpt: dict[str, Any] | None, dev: Device) -> nn.Module:
    """The model on ``dev`` in training mode: a resumed checkpoint's weights, else
    ``train.init_checkpoint``'s, else the preset's own (pretrained or random)."""
    if ckpt is not None:
        model = build_for_training(model_spec(cfg, init="random"))  # the checkpoint holds all
        load_weights(model, ckpt)
    elif cfg.train.init_checkpoint:
        spec, say = model_spec(cfg, init="random"), print if dev.main else _quiet
        try:
            model = init_from_checkpoint(spec, cfg.train.init_checkpoint, say=say)
        except CheckpointError as e:
            raise ConfigError(str(e)) from None
    else:
        model = build_for_training(model_spec(cfg))
    model.to(dev.device)
    model.train()
    return model


def optimizer_and_schedule(
    cfg: Config, model: nn.Module, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, CosineSchedule]:
    """AdamW over the model's parameter groups and its per-step cosine schedule."""
    o = cfg.optim
    optimizer = build_optimizer(
        model,
        o.lr,
        o.weight_decay,
        (o.betas[0], o.betas[1]),
        o.eps,
        o.text_lr_scale,
        o.temporal_lr_scale,
        o.decay_rule,
    )
    vindlu = o.schedule == "vindlu"
    schedule = CosineSchedule(
        optimizer,
        lr=o.lr,
        min_lr=o.min_lr,
        warmup_epochs=VINDLU_WARMUP_EPOCHS.get(cfg.task, 0.0) if vindlu else o.warmup_epochs,
        epochs=o.epochs,
        steps_per_epoch=steps_per_epoch,
        max_steps=cfg.train.max_steps,
        rule=o.schedule,
    )
    return optimizer, schedule


def wrap_for_ranks(objective: Objective, dev: Device) -> nn.Module:
    """DistributedDataParallel around the objective (and so the model) with several processes."""
    if dev.world == 1:
        return objective
    w = objective.weights
    return DistributedDataParallel(
        objective,
        device_ids=[dev.local_rank] if dev.device.type == "cuda" else None,
        # A zero-weight loss leaves its head without gradients (fine-tuning: MLM).
        find_unused_parameters=not (w.vtc and w.vtm and w.mlm),
    )


def open_run_dir(
    cfg: Config, run_dir: Path, dev: Device, *, resume_step: int | None
) -> RunLoggers | None:
    """Rank 0: the run directory with the resolved ``config.yaml`` and the loggers."""
    if not dev.main:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_yaml(cfg))
    if cfg.train.log_samples:
        keep_until(run_dir, resume_step)
    return RunLoggers(
        run_dir,
        cfg.train.loggers,
        resume_step=resume_step,
        config=cfg.to_dict(),
        wandb_project=cfg.train.wandb_project,
    )


def optimizer_step(run: Run, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Forward, backward, gradient clipping, AdamW and schedule step on one batch. Under fp16
    the loss is scaled and a step whose gradients overflowed is skipped (the scaler halves its
    scale); the schedule steps either way, as VindLU's loop does."""
    out = forward_loss(run.objective, batch, run.dev.device, run.dev.amp_dtype)
    run.optimizer.zero_grad(set_to_none=True)
    scaler = run.scaler  # disabled: scale, unscale_, step and update are plain pass-throughs
    scaler.scale(out["loss"]).backward()
    if run.cfg.optim.grad_clip > 0:
        scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.objective.parameters(), run.cfg.optim.grad_clip)
    scaler.step(run.optimizer)
    scaler.update()
    run.schedule.step()
    return out


def log_step(
    run: Run,
    state: TrainState,
    batch: dict[str, Any],
    out: dict[str, torch.Tensor],
    lr: float,
    t_last: float,
    bar: Any,
) -> tuple[float, bool]:
    """One metrics.jsonl line (loss terms averaged over ranks, throughput since ``t_last``)
    and the progress bar; a non-finite loss stops the run. Returns the time now and whether
    any rank has a stop signal: its flag rides the loss terms' all-reduce (no extra one)."""
    flag = torch.tensor(float(interrupts.pending() is not None), device=out["loss"].device)
    terms = torch.stack([*(out[k].detach().float() for k in LOSS_TERMS), flag])
    *terms, stop = reduce_mean(terms, run.dev.world).tolist()  # one device sync per step
    now = time.perf_counter()
    rate = int(batch["frames"].shape[0]) * run.dev.world / max(now - t_last, 1e-9)
    if run.log is not None:
        into = (state.step - run.epoch_end + run.epoch_steps) / run.epoch_steps  # of this epoch
        record = {"step": state.step, "epoch": round(state.epoch + into, 6)}
        record.update(zip(LOSS_TERMS, terms, strict=True))
        record.update(lr=lr, samples_per_s=rate, source=batch.get("source"))
        if run.scaler.is_enabled():
            record["grad_scale"] = run.scaler.get_scale()  # halved after a skipped step
        if run.dev.device.type == "cuda":
            record["gpu_mem_gb"] = torch.cuda.max_memory_allocated(run.dev.device) / 2**30
        run.log.write(record)
        bar.update(1)
        if state.step % run.cfg.train.log_every == 0 or state.step == 1:
            bar.set_postfix(loss=f"{terms[0]:.4f}", lr=f"{lr:.2e}", sps=f"{rate:.1f}")
    if not math.isfinite(terms[0]):
        raise FloatingPointError(f"loss is {terms[0]} at step {state.step} (run {run.run_dir})")
    return now, stop > 0


def evaluate_and_log(
    run: Run, state: TrainState, settings: EvalConfig, role: str, sel: Selection
) -> dict[str, Any]:
    """Retrieval after an epoch on ``settings``' split: ``eval_epochN.json`` (``role``
    ``monitor``: the eval section's split, never choosing) or ``select_epochN.json``
    (``select``: the split ``train.select`` chooses on), and a metrics line."""
    cfg = run.cfg
    result = evaluate_epoch(cfg, run.model, run.tokenizer, run.dev.device, settings)
    result.update(role=role, selected_by=sel.label)
    metric = t2v_avg(result, cfg.eval.fusion)
    if run.log is not None:
        name = (
            f"eval_epoch{state.epoch}.json"
            if role == "monitor"
            else f"select_epoch{state.epoch}.json"
        )
        (run.run_dir / name).write_text(json.dumps(result, indent=1))
        key = "eval_t2v_avg" if role == "monitor" else "select_t2v_avg"
        row = {"step": state.step, "epoch": state.epoch, "split": settings.split, "role": role}
        run.log.write({**row, key: metric, "fusion": cfg.eval.fusion, **eval_scalars(result)})
        what = "monitoring only" if role == "monitor" else f"chooses best.pt ({sel.label})"
        print(
            f"[eval] epoch {state.epoch}: {settings.split} T2V Avg ({cfg.eval.fusion}) "
            f"{metric:.2f}, {what}"
        )
    return result


def keeps_last(cfg: Config) -> bool:
    """A fine-tuning run with ``train.select=last``: ``best.pt`` is the last weights."""
    return cfg.task.startswith("finetune") and parse_select(cfg.train.select).split is None


def choose_epoch(
    run: Run, state: TrainState, sel: Selection, monitored: dict[str, Any] | None
) -> bool:
    """True when this epoch becomes ``best.pt``: always for ``last`` when fine-tuning, else
    when its selection value on the selecting split beats ``state.best``."""
    if sel.split is None:
        return keeps_last(run.cfg)
    settings = select_eval(run.cfg, sel)
    same = monitored is not None and str(settings.shards) == str(run.cfg.eval.shards)
    if same and run.dev.main:
        print(f"[select] train.select={sel.label} chooses on the evaluated split itself")
    result = monitored if same else evaluate_and_log(run, state, settings, "select", sel)
    value = selection_value(result, run.cfg.eval.fusion, sel.metric)
    improved = state.best is None or value > state.best
    state.best = value if improved else state.best
    if run.log is not None:
        run.log.write({"step": state.step, "epoch": state.epoch, "select": sel.label,
                       "select_value": value, "best": state.best})  # fmt: skip
    return improved


# ---------------------------------------------------------------------------------------------
# Small pieces


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA (paper-size runs), none (fp32) on CPU unless asked; fp16 (with
    :func:`grad_scaler`) is VindLU's."""
    if cfg.train.precision == "fp32":
        return None
    if cfg.train.precision == "fp16":
        return torch.float16
    if cfg.train.precision == "bf16" or device.type == "cuda":
        return torch.bfloat16
    return None


def grad_scaler(dev: Device) -> torch.amp.GradScaler:
    """VindLU's ``GradScaler`` (its defaults: scale 2**16, x2 every 2,000 good steps, x0.5 on
    an overflow) when autocasting to fp16; a disabled one otherwise."""
    return torch.amp.GradScaler(dev.device.type, enabled=dev.amp_dtype == torch.float16)


def resolve_init(cfg: Config) -> str | None:
    """``model.init`` (the train command sets it from the Makefile's ``INIT``)."""
    init = cfg.model.init
    return None if init in (None, "", "pretrained") else init


def training_frames(cfg: Config) -> int:
    """The frame count the temporal position embedding is built for: the most any source has."""
    return max(src.num_frames for src in cfg.data.sources.values())


def model_spec(cfg: Config, init: str | None = None) -> TrainModelSpec:
    """What the run asks of its model (:mod:`t2v2t.models.start`); ``init="random"`` when a
    checkpoint supplies every weight anyway, else the ``INIT``/``model.init`` choice."""
    return TrainModelSpec(
        preset=cfg.model.preset,
        num_frames=training_frames(cfg),
        init=init or resolve_init(cfg),
        image_size=cfg.model.image_size,
        grad_checkpointing=cfg.train.grad_checkpointing,
        dropout=cfg.model.dropout,
        drop_path=cfg.model.drop_path,
    )


def epoch_loader(
    cfg: Config, tokenizer: Any, dev: Device, image_size: int, state: TrainState
) -> Any:
    """This rank's loader of ``state.epoch``, skipping the samples it already consumed of it
    (and what ran on other process counts: ``state.earlier``)."""
    return make_loader(
        cfg,
        tokenizer,
        epoch=state.epoch,
        rank=dev.rank,
        world=dev.world,
        skip=state.samples,
        image_size=image_size,
        earlier=state.earlier,
    )


def make_loader(
    cfg: Config,
    tokenizer: Any,
    *,
    epoch: int,
    rank: int,
    world: int,
    skip: int,
    image_size: int,
    earlier: list[tuple[int, int]] | None = None,
) -> Any:
    sources = [
        TrainSource(src.dir, cfg.source_batch_size(name), src.num_frames, src.max_text_len)
        for name, src in cfg.data.sources.items()
    ]
    return make_train_loader(
        sources,
        tokenizer,
        seed=cfg.data.seed,
        epoch=epoch,
        rank=rank,
        world_size=world,
        num_workers=cfg.data.num_workers,
        image_size=image_size,
        skip_samples=skip,
        skip_bad_shards=cfg.data.skip_bad_shards,
        crop_scale=cfg.data.crop_scale,
        hflip=cfg.data.hflip,
        pin_memory=torch.cuda.is_available(),
        decode_device=cfg.data.decode_device,
        captions_per_epoch=cfg.data.captions_per_epoch,
        interp=cfg.data.interp,
        pre_text=cfg.data.pre_text,
        earlier=earlier or (),
        drop_last=cfg.data.drop_last,
    )


def agree_to_stop(dev: Device) -> bool:
    """Collective: True on every rank when any rank has received a stop signal."""
    flag = torch.tensor([float(interrupts.pending() is not None)], device=dev.device)
    if dev.world > 1:
        tdist.all_reduce(flag, op=tdist.ReduceOp.MAX)
    return bool(flag.item() > 0)


def reduce_mean(values: torch.Tensor, world: int) -> torch.Tensor:
    """Mean over ranks of a small tensor of logged numbers (identity in one process)."""
    if world > 1:
        values = values.clone()
        tdist.all_reduce(values)
        values /= world
    return values


def evaluate_epoch(
    cfg: Config,
    model: nn.Module,
    tokenizer: Any,
    device: torch.device,
    settings: EvalConfig | None = None,
) -> dict[str, Any]:
    """Retrieval on ``settings``' shards (default: the eval section's) through the evaluator
    (all ranks take part)."""
    was_training = model.training
    model.eval()
    try:
        result = evaluate_retrieval(model, tokenizer, settings or cfg.eval, device=device)
    finally:
        model.train(was_training)
    return result


def t2v_avg(result: dict[str, Any], fusion: str) -> float:
    """The selection metric: text-to-video (R1+R5+R10)/3 of ``fusion``."""
    return float(result["results"][fusion]["t2v"]["Avg"])


def forward_loss(
    objective: nn.Module,
    batch: dict[str, Any],
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> dict[str, Any]:
    """Move one loader batch to ``device``, normalise frames there, and run the
    :class:`Objective` (or its DDP / ``torch.compile`` wrapper) under ``amp_dtype`` autocast
    (:func:`autocast_dtype`); the benchmarks step through this too."""
    config = dist.unwrap_model(objective).model.config
    frames = normalize(batch["frames"].to(device, non_blocking=True), config.mean, config.std)
    input_ids = batch["input_ids"].to(device, non_blocking=True)
    attention_mask = batch["attention_mask"].to(device, non_blocking=True)
    video_ids = batch["video_ids"].to(device, non_blocking=True)
    with torch.autocast(
        device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None
    ):
        return objective(frames, input_ids, attention_mask, video_ids)


def _quiet(_: str) -> None:
    """``say`` for the ranks that print nothing."""


def _every(step: int, n: int) -> bool:
    return n > 0 and step % n == 0


def progress_bar(main: bool, epoch: int, epochs: int, total: int, initial: int) -> Any:
    desc = f"epoch {epoch + 1}/{epochs}"
    return tqdm(total=total, initial=initial, desc=desc, disable=not main, dynamic_ncols=True)
