"""The training loop for pre-training and fine-tuning (one loop, the config decides the task).

Reads top to bottom like nanoGPT's: set up (distributed, seeds, model, data, optimiser, resume),
then per epoch: for each batch -> lr -> forward (bf16 autocast on CUDA) -> backward -> clip ->
step -> log -> maybe checkpoint; at epoch end evaluate (fine-tuning) and checkpoint.

Run directory: ``config.yaml`` (resolved), ``metrics.jsonl`` (one line per optimiser step, plus
one per evaluation), ``last.pt`` and, when fine-tuning, ``best.pt`` and ``eval_epochN.json``.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from t2v2t.training.checkpoint import (
    git_commit,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from t2v2t.training.config import Config, ConfigError, check_files, dump_yaml
from t2v2t.training.loggers import RunLoggers, eval_scalars
from t2v2t.training.metrics_log import setup_logging
from t2v2t.training.optim import CosineSchedule, build_optimizer

LOSS_TERMS = ("loss", "vtc", "vtm", "mlm")


@dataclass
class TrainResult:
    step: int
    epoch: int
    last_checkpoint: Path
    best_metric: float | None


# ---------------------------------------------------------------------------------------------
# Small pieces of setup


def _dist() -> Any:
    from t2v2t import dist

    return dist


def setup_torch(cfg: Config) -> None:
    """Threads and determinism before anything allocates (exact resume relies on this on CPU)."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_dropout(model: nn.Module, p: float) -> None:
    """Force every dropout probability to ``p`` (``0`` makes steps comparable across runs)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
        # Attention implementations that keep the rate as a float attribute (HF BERT, timm).
        for attr in ("dropout_prob", "attention_dropout", "attn_drop_rate"):
            if isinstance(getattr(module, attr, None), float):
                setattr(module, attr, p)


def autocast_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA (paper-size runs), none (fp32) on CPU unless asked."""
    if cfg.train.precision == "fp32":
        return None
    if cfg.train.precision == "bf16" or device.type == "cuda":
        return torch.bfloat16
    return None


def resolve_init(cfg: Config) -> str | None:
    """``INIT`` env var (the Makefile exports it) overrides ``model.init``."""
    env = os.environ.get("INIT", "").strip()
    init = env or cfg.model.init
    if init not in (None, "", "random", "pretrained"):
        raise ConfigError(f"INIT={init!r} is not one of random, pretrained")
    return None if init in (None, "", "pretrained") else init


def training_frames(cfg: Config) -> int:
    """The frame count the temporal position embedding is built for: the most any source has."""
    return max(src.num_frames for src in cfg.data.sources.values())


def build_model_for(cfg: Config, init: str | None = None) -> nn.Module:
    """The model of the config's preset (the model package decides weights and sizes);
    ``init="random"`` when a checkpoint supplies every weight anyway."""
    from t2v2t.models import build_model

    overrides: dict[str, Any] = {}
    if cfg.model.image_size is not None:
        overrides["image_size"] = cfg.model.image_size
    if cfg.train.grad_checkpointing:
        overrides["grad_checkpointing"] = True
    # VindLU builds the temporal position embedding for the training frame count (fine-tuning:
    # 12 or 32 rows); a checkpoint with fewer rows is zero-padded to it (init_from_checkpoint).
    overrides["num_frames"] = training_frames(cfg)
    init = init or resolve_init(cfg)
    model = build_model(cfg.model.preset, init, overrides=overrides or None)
    if cfg.model.dropout is not None:
        set_dropout(model, cfg.model.dropout)
    return model


def init_from_checkpoint(cfg: Config, say: Any = print) -> nn.Module:
    """The model to train from ``train.init_checkpoint`` (a project ``.pt``, a VindLU ``.pth`` or
    an exported folder). A project file fills the config's preset model; another source brings
    its own architecture. The temporal position embedding is fitted to the training frame count
    the way VindLU's loader does: extra rows are zeros, surplus rows are cut."""
    from t2v2t.models import load_weights
    from t2v2t.models.loading import CheckpointError, load_any_checkpoint
    from t2v2t.models.vision import fit_temporal_rows

    path = cfg.train.init_checkpoint
    try:
        loaded = load_any_checkpoint(path, cfg.model.preset, say=say)
    except CheckpointError as e:
        raise ConfigError(str(e)) from None
    frames = training_frames(cfg)
    if loaded.source == "project":
        model = build_model_for(cfg, init="random")  # every weight comes from the file
        state = loaded.model.state_dict()
        state["vision.temporal_pos"] = fit_temporal_rows(state["vision.temporal_pos"], frames)
        load_weights(model, state)
        return model
    new = loaded.model
    if new.config.preset != cfg.model.preset:
        say(f"[init] {path}: its architecture ({loaded.source}) replaces PRESET={cfg.model.preset}")
    new.vision.set_num_frames(frames)
    new.config.num_frames = frames
    new.set_grad_checkpointing(cfg.train.grad_checkpointing)
    if cfg.model.dropout is not None:
        set_dropout(new, cfg.model.dropout)
    return new


def make_loader(
    cfg: Config, tokenizer: Any, *, epoch: int, rank: int, world: int, skip: int, image_size: int
) -> Any:
    from t2v2t.data.loader import TrainSource, make_train_loader

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
    )


def reduce_mean(values: torch.Tensor, world: int) -> torch.Tensor:
    """Mean over ranks of a small tensor of logged numbers (identity in one process)."""
    if world > 1:
        import torch.distributed as tdist

        values = values.clone()
        tdist.all_reduce(values)
        values /= world
    return values


def gather_rng_states(world: int) -> list[dict[str, Any]]:
    """Every rank's RNG state (rank 0 writes them all, so each rank resumes its own stream)."""
    state = rng_state()
    if world == 1:
        return [state]
    import torch.distributed as tdist

    states: list[Any] = [None] * world
    tdist.all_gather_object(states, state)
    return states


# ---------------------------------------------------------------------------------------------
# Evaluation (fine-tuning)


def evaluate_epoch(
    cfg: Config, model: nn.Module, tokenizer: Any, device: torch.device
) -> dict[str, Any]:
    """Retrieval on the task's test/val shards through the evaluator (all ranks take part)."""
    from t2v2t.retrieval.evaluate import evaluate_retrieval

    was_training = model.training
    model.eval()
    try:
        result = evaluate_retrieval(model, tokenizer, cfg.eval, device=device)
    finally:
        model.train(was_training)
    return result


def t2v_avg(result: dict[str, Any], fusion: str) -> float:
    """The selection metric: text-to-video (R1+R5+R10)/3 of ``fusion``."""
    return float(result["results"][fusion]["t2v"]["Avg"])


# ---------------------------------------------------------------------------------------------
# The loop


def train(
    cfg: Config, run_dir: str | Path, *, resume_from: str | Path | None = None
) -> TrainResult:
    """Train as ``cfg`` says, writing into ``run_dir``; ``resume_from`` continues a checkpoint."""
    run_dir = Path(run_dir)
    dist = _dist()
    setup_torch(cfg)
    check_files(cfg, resume_from=resume_from)

    # -- distributed: torchrun sets the env; a plain `python` run is world size 1
    dist.init_distributed()
    rank, world, local_rank = dist.world_info()
    main = rank == 0
    setup_logging(run_dir / "train.log" if main else None, main=main)
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        device = torch.device("cpu")
    amp_dtype = autocast_dtype(cfg, device)

    # -- model: the same seed on every rank gives the same initial weights
    seed_everything(cfg.data.seed)
    from t2v2t.models import build_tokenizer, load_weights

    ckpt: dict[str, Any] | None = None
    if resume_from is not None:
        model = build_model_for(cfg, init="random")  # the checkpoint holds every weight
        ckpt = load_checkpoint(resume_from)
        load_weights(model, ckpt)
    elif cfg.train.init_checkpoint:
        model = init_from_checkpoint(cfg, say=print if main else (lambda _: None))
    else:
        model = build_model_for(cfg)
    tokenizer = build_tokenizer(model.config.preset)
    model.to(device)
    model.train()
    image_size = model.config.image_size

    # -- data: batches per epoch are equal on every rank (the loader guarantees it)
    first = make_loader(
        cfg, tokenizer, epoch=0, rank=rank, world=world, skip=0, image_size=image_size
    )
    steps_per_epoch = len(first)
    if steps_per_epoch == 0:
        raise ConfigError("the training shards hold fewer samples than one global batch")

    # -- optimiser and schedule
    o = cfg.optim
    optimizer = build_optimizer(
        model,
        o.lr,
        o.weight_decay,
        (o.betas[0], o.betas[1]),
        o.eps,
        o.text_lr_scale,
        o.temporal_lr_scale,
    )
    schedule = CosineSchedule(
        optimizer,
        lr=o.lr,
        min_lr=o.min_lr,
        warmup_epochs=o.warmup_epochs,
        epochs=o.epochs,
        steps_per_epoch=steps_per_epoch,
        max_steps=cfg.train.max_steps,
    )

    # -- resume: optimiser, schedule, position in the data, every RNG stream
    step, start_epoch, skip, best = 0, 0, 0, None
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        schedule.load_state_dict(ckpt["scheduler"])
        step = int(ckpt["step"])
        position = ckpt["data_position"]
        start_epoch, skip = int(position["epoch"]), int(position["samples"])
        if skip and int(position.get("world_size", world)) != world:
            raise ConfigError(
                f"{resume_from} stopped mid-epoch with {position['world_size']} processes; "
                f"resume it with the same number (now {world}) or from an epoch-end checkpoint"
            )
        best = ckpt.get("best_metric")
        changed = config_changes(ckpt.get("config", {}), cfg.to_dict())
        if changed and main:
            print(f"[resume] config differs from the checkpoint's: {'; '.join(changed)}")
        states = ckpt["rng"] if isinstance(ckpt["rng"], list) else [ckpt["rng"]]
        set_rng_state(states[rank] if rank < len(states) else states[0])
        del ckpt
    else:
        # Different ranks draw different MLM masks / hard negatives from here on.
        seed_everything(cfg.data.seed + 1000 * rank + 1)

    raw_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        w = cfg.loss
        model = DistributedDataParallel(
            model,
            device_ids=[local_rank] if device.type == "cuda" else None,
            # A zero-weight loss leaves its head without gradients (fine-tuning: MLM).
            find_unused_parameters=not (w.vtc and w.vtm and w.mlm),
        )

    # -- run directory (rank 0 writes; the others only compute)
    log = None
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump_yaml(cfg))
        log = RunLoggers(
            run_dir,
            cfg.train.loggers,
            resume_step=step if resume_from is not None else None,
            config=cfg.to_dict(),
            wandb_project=cfg.train.wandb_project,
        )
    commit = git_commit()

    def save(path: Path, epoch: int, samples: int) -> None:
        states = gather_rng_states(world)  # collective: every rank calls save()
        if not main:
            return
        save_checkpoint(
            path,
            {
                "model": raw_model.state_dict(),
                "preset": raw_model.config.preset,
                "model_config": raw_model.config.to_dict(),
                "config": cfg.to_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": schedule.state_dict(),
                "rng": states,
                # samples: what this rank consumed of the epoch (the loader's skip_samples)
                "data_position": {"epoch": epoch, "samples": samples, "world_size": world},
                "step": step,
                "best_metric": best,
                "git_commit": commit,
            },
        )

    max_steps = cfg.train.max_steps
    last_path = run_dir / "last.pt"
    done = bool(max_steps and step >= max_steps)
    epoch = start_epoch
    while epoch < o.epochs and not done:
        loader = (
            first
            if epoch == 0 and skip == 0
            else make_loader(
                cfg,
                tokenizer,
                epoch=epoch,
                rank=rank,
                world=world,
                skip=skip,
                image_size=image_size,
            )
        )
        samples, skip = skip, 0  # samples this rank consumed in the epoch (equal on all ranks)
        bar = _progress(main, epoch, o.epochs, steps_per_epoch, step - epoch * steps_per_epoch)
        t_last = time.perf_counter()
        for batch in loader:
            # -- one optimiser step
            lr = schedule.get_lr()
            out = forward_loss(model, batch, cfg, device, amp_dtype)
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            if o.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
            optimizer.step()
            schedule.step()
            step += 1
            samples += int(batch["frames"].shape[0])
            global_batch = int(batch["frames"].shape[0]) * world

            # -- log: loss terms averaged over ranks, throughput of this step
            terms = torch.stack([out[k].detach().float() for k in LOSS_TERMS])
            terms = reduce_mean(terms, world).tolist()  # one device sync per step
            now = time.perf_counter()
            rate, t_last = global_batch / max(now - t_last, 1e-9), now
            if main:
                record = {"step": step, "epoch": round(step / steps_per_epoch, 6)}
                record.update(zip(LOSS_TERMS, terms, strict=True))
                record.update(lr=lr, samples_per_s=rate, source=batch.get("source"))
                if device.type == "cuda":
                    record["gpu_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
                log.write(record)
                bar.update(1)
                if step % cfg.train.log_every == 0 or step == 1:
                    bar.set_postfix(loss=f"{terms[0]:.4f}", lr=f"{lr:.2e}", sps=f"{rate:.1f}")
            if not math.isfinite(terms[0]):
                raise FloatingPointError(f"loss is {terms[0]} at step {step} (run {run_dir})")

            done = bool(max_steps and step >= max_steps)
            epoch_over = step >= (epoch + 1) * steps_per_epoch
            if not epoch_over and (done or _every(step, cfg.train.ckpt_every_steps)):
                save(last_path, epoch, samples)  # mid-epoch: the position inside the epoch
            if done:
                break
        bar.close()
        if step < (epoch + 1) * steps_per_epoch:
            break  # stopped mid-epoch by max_steps; last.pt holds the position

        # -- epoch end: evaluate (fine-tuning), keep best.pt, checkpoint the next epoch's start
        epoch += 1
        improved = False
        if cfg.train.eval_every_epoch:
            result = evaluate_epoch(cfg, raw_model, tokenizer, device)
            metric = t2v_avg(result, cfg.eval.fusion)
            improved = best is None or metric > best
            best = metric if improved else best
            if main:
                (run_dir / f"eval_epoch{epoch}.json").write_text(json.dumps(result, indent=1))
                log.write(
                    {
                        "step": step,
                        "epoch": epoch,
                        "eval_t2v_avg": metric,
                        "best": best,
                        "fusion": cfg.eval.fusion,
                        **eval_scalars(result),
                    }
                )
                note = " (best)" if improved else ""
                print(f"[eval] epoch {epoch}: T2V Avg ({cfg.eval.fusion}) {metric:.2f}{note}")
        save(last_path, epoch, 0)
        if improved:
            save(run_dir / "best.pt", epoch, 0)

    if log is not None:
        log.close()
    dist.barrier()
    return TrainResult(step=step, epoch=epoch, last_checkpoint=last_path, best_metric=best)


# Settings that may change on resume without changing what is computed.
RESUME_FREE_KEYS = (
    "train.max_steps",
    "train.ckpt_every_steps",
    "train.log_every",
    "train.loggers",
    "train.wandb_project",
    "train.threads",
    "data.num_workers",
    "train.init_checkpoint",
)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key (old -> new)`` for settings that differ between a checkpoint's config and now."""
    a, b = _flatten(old), _flatten(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in RESUME_FREE_KEYS)
    return [f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in keys]


def forward_loss(
    model: nn.Module,
    batch: dict[str, Any],
    cfg: Config,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> dict[str, Any]:
    """Move one loader batch to ``device``, normalise frames there, run the model's losses."""
    from t2v2t.data.loader import normalize

    config = _dist().unwrap_model(model).config
    frames = normalize(batch["frames"].to(device, non_blocking=True), config.mean, config.std)
    input_ids = batch["input_ids"].to(device, non_blocking=True)
    attention_mask = batch["attention_mask"].to(device, non_blocking=True)
    video_ids = batch["video_ids"].to(device, non_blocking=True)
    with torch.autocast(
        device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None
    ):
        return model(frames, input_ids, attention_mask, video_ids, cfg.loss)


def _every(step: int, n: int) -> bool:
    return n > 0 and step % n == 0


def _progress(main: bool, epoch: int, epochs: int, total: int, initial: int) -> Any:
    from tqdm import tqdm

    desc = f"epoch {epoch + 1}/{epochs}"
    return tqdm(total=total, initial=initial, desc=desc, disable=not main, dynamic_ncols=True)
