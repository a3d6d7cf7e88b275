"""Typed training configs: YAML recipes + preset layers + dotted ``key=value`` overrides.

A run's config is built in layers, each a plain dict deep-merged onto the previous one:

1. ``configs/<task>.yaml``             the paper's recipe (pretrain, finetune-msrvtt, ...)
2. ``configs/presets/<preset>.yaml``   e.g. ``tiny``: small model, CPU-sized batches (optional)
3. ``configs/presets/<preset>-<task>.yaml``  preset tweaks for one task (optional)
4. command-line overrides ``optim.lr=3e-5 data.sources.webvid.batch_size=8``

The merged dict is then turned into these dataclasses field by field by ``t2v2t/typed_yaml.py``
(each value checked against the field's type, no ``eval``). Every mistake raises
:class:`ConfigError` with a one-line message that names the key and what to do; the CLI turns it
into exit status 2. The ``eval:`` section is the retrieval's own :class:`EvalConfig`
(``t2v2t/retrieval/settings.py``); the checks that touch files are in ``preflight.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from t2v2t.interrupts import STOP_SIGNALS
from t2v2t.recipes import eval_datasets, eval_recipe, eval_shard_dir, recipe, text_len
from t2v2t.retrieval.settings import EvalConfig, check_eval
from t2v2t.typed_yaml import (
    ConfigError,
    apply_overrides,
    build_dataclass,
    deep_merge,
    read_yaml,
)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
# Pre-training, and fine-tuning on every dataset with an evaluation split (t2v2t/recipes.py):
# finetune-msrvtt, -didemo, -anet have their paper recipes (configs/<task>.yaml); any other
# (folder, vindlu) takes configs/finetune.yaml with its shard folders from the recipe table.
TASKS = ("pretrain", *(f"finetune-{d}" for d in eval_datasets()))
# The vision backbone's patch size per model preset (t2v2t/models/config.py names the timm
# models): an image size must tile into whole patches. Kept here so config checks need no torch.
PATCH_SIZES = {"base": 16, "tiny": 16}


@dataclass
class ModelSection:
    preset: str = "base"  # "base" (paper) or "tiny" (CPU); filled from --preset
    # "random" or None (pretrained weights); scripts/train.py sets it from the Makefile's INIT
    init: str | None = None
    image_size: int | None = None  # None = the preset's (base 224); the loader resizes to it
    dropout: float | None = None  # None = the model's own; 0 makes steps comparable across runs
    # Stochastic depth in training (VindLU's 0.1): vision block i of L drops a residual branch
    # with drop_path * i / (L - 1), each temporal attention with drop_path; 0 = off.
    drop_path: float = 0.1


@dataclass
class SourceConfig:
    dir: str = ""  # a shard folder, e.g. shards/webvid/train_4f (must hold manifest.json)
    num_frames: int = 4
    batch_size: int | None = None  # per GPU; None = data.batch_size
    max_text_len: int = 32


@dataclass
class DataConfig:
    # Keyed by corpus name so that preset layers and overrides can address one source.
    sources: dict[str, SourceConfig] = field(default_factory=dict)
    batch_size: int = 64  # per GPU (per process), for sources that do not set their own
    num_workers: int = 2
    seed: int = 42
    skip_bad_shards: bool = False
    hflip: bool = True  # random horizontal flip; off when captions say "left"/"right"
    crop_scale: list[float] = field(default_factory=lambda: [0.5, 1.0])  # random resized crop area
    # e.g. cuda: decode JPEGs there in batches (docs/training.md, "Decoding JPEGs on the GPU")
    decode_device: str | None = None
    # all: every (video, caption) once per epoch, as VindLU's training set; one: one caption per
    # video and epoch (docs/training.md, "Training: the paper, VindLU's code and this project").
    captions_per_epoch: str = "all"
    # The random resized crop's resampling: bicubic (VindLU's) or bilinear (faster, the former).
    interp: str = "bicubic"
    pre_text: bool = (
        True  # training captions cleaned by VindLU's pre_text (lower case, no punctuation)
    )
    # Leave out each rank's short last batch of a source (VindLU's drop_last=True): steps per
    # epoch floor(ceil(items / GPUs) / batch); false: the last batch may be short (ceil).
    drop_last: bool = True


@dataclass
class OptimConfig:
    lr: float = 1e-4
    min_lr: float = 1e-6
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.02  # not applied to biases, norms, temperature, position embeddings
    warmup_epochs: float = 1.0  # may be fractional (fine-tuning: 0.5)
    epochs: int = 10
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    # lr multiplier for the pre-trained BERT weights (text encoder, fusion layers' BERT parts);
    # 1 = the paper's single lr. Lower it when the vision side starts from random weights.
    text_lr_scale: float = 1.0
    # lr multiplier for the zero-initialised temporal attention and temporal position embedding.
    # 1 = the paper. Their per-channel scale starts at 0 and Adam moves it ~lr per step, so in a
    # short schedule (a few hundred steps) frame order never gets a voice unless this is larger.
    temporal_lr_scale: float = 1.0
    # paper: warmup_epochs and the cosine down to min_lr (the paper's table); vindlu: VindLU's
    # configs' warm-up (pretrain 1, MSR-VTT/DiDeMo 0, ActivityNet 1 epoch) and its 0.01 x lr floor.
    schedule: str = "paper"
    # Which parameters skip weight decay: vindlu (only 1-D and .bias, VindLU's add_weight_decay)
    # or project (also the temperature, position embeddings, class token).
    decay_rule: str = "vindlu"


@dataclass
class LossConfig:
    vtc: float = 1.0
    vtm: float = 1.0
    mlm: float = 1.0  # 0 disables a term
    # Time-order negatives (off in the paper's recipes): this share of each batch's videos is also
    # encoded with its frames reversed, as a negative of its own caption in VTC and VTM. Only
    # for captions that state an order or direction ("walks in" vs "walks out"); the synthetic
    # corpora's always do. Costs that share of extra video-encoder work.
    reverse: float = 0.0
    # VTC's gradient across GPUs: local (VindLU's AllGather, each rank's slice unsummed) or
    # global (the summed gradient of the global-batch loss; docs/training.md).
    vtc_gather: str = "local"


@dataclass
class TrainConfig:
    init_checkpoint: str | None = None  # weights to start from (--ckpt); fine-tuning needs one
    max_steps: int = 0  # stop after this many optimiser steps; 0 = run every epoch
    ckpt_every_steps: int = 1000  # also saved at every epoch end
    log_every: int = 10  # progress-bar refresh; metrics.jsonl gets every step
    log_samples: bool = False  # <run>/samples.jsonl: each rank's sample keys at every step
    # jsonl (metrics.jsonl, always written) plus any of tensorboard, wandb (WANDB_MODE honoured)
    loggers: list[str] = field(default_factory=lambda: ["jsonl"])
    wandb_project: str = "t2v2t"
    grad_checkpointing: bool = False
    # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32 | fp16 (VindLU's: fp16 autocast with a
    # GradScaler, its state in the checkpoint)
    precision: str = "auto"
    eval_every_epoch: bool = False  # evaluate the eval section's split each epoch (monitoring)
    # Which epoch best.pt keeps: last, or <split>:<metric> (r_mean | t2v_avg) evaluated on that
    # split each epoch, never the reported one by default (t2v2t/training/select.py).
    select: str = "last"
    select_shards: str | None = None  # the selecting split's shards; None = beside eval.shards
    deterministic: bool = False  # torch deterministic algorithms (CPU tests, exact resume)
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    # Signals that mean "finish this step, write last.pt, exit 75" (docs/reliability.md,
    # "Preemption"); any of SIGTERM, SIGUSR1, SIGUSR2; [] leaves their default action (death).
    stop_signals: list[str] = field(default_factory=lambda: ["SIGTERM", "SIGUSR1"])


@dataclass
class Config:
    task: str = "pretrain"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def source_batch_size(self, name: str) -> int:
        src = self.data.sources[name]
        return src.batch_size if src.batch_size is not None else self.data.batch_size


# ---------------------------------------------------------------------------------------------
# YAML layers and merging


def recipe_layers(task: str, preset: str, config_dir: Path = CONFIG_DIR) -> list[Path]:
    """The YAML files a (task, preset) run merges, in order."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    own = config_dir / f"{task}.yaml"
    generic = task.startswith("finetune-") and not own.is_file()
    layers = [config_dir / "finetune.yaml" if generic else own]
    names = [f"presets/{preset}.yaml", f"presets/{preset}-{task}.yaml"]
    if generic:
        names.insert(1, f"presets/{preset}-finetune.yaml")
    for name in names:
        if (config_dir / name).is_file():
            layers.append(config_dir / name)
    return layers


def dataset_layer(dataset: str) -> dict[str, Any]:
    """The shard folders, frames and text lengths of fine-tuning on ``dataset`` (recipe table)."""
    train, test, length = recipe(dataset, "train")[0], eval_recipe(dataset), text_len(dataset)
    source = {
        "dir": f"shards/{dataset}/train_{train.num_frames}f",
        "num_frames": train.num_frames,
        "max_text_len": length,
    }
    return {
        "data": {"sources": {dataset: source}},
        "eval": {
            "dataset": dataset,
            "split": test.split,
            "shards": str(eval_shard_dir(dataset)),
            "num_frames": test.num_frames,
            "max_text_len": length,
        },
    }


def select_sources(tree: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Keep only the named ``data.sources`` (``SOURCES=webvid`` pre-trains on WebVid alone)."""
    known = list(tree.get("data", {}).get("sources", {}))
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ConfigError(
            f"SOURCES={','.join(names)}: this recipe's sources are {', '.join(known)}; "
            f"name one or more of them, e.g. SOURCES={known[0] if known else 'webvid'}"
        )
    out = deep_merge({}, tree)
    out["data"]["sources"] = {n: tree["data"]["sources"][n] for n in known if n in names}
    return out


def load_config(
    task: str,
    preset: str = "base",
    overrides: list[str] | None = None,
    config_dir: Path = CONFIG_DIR,
    sources: list[str] | None = None,
) -> Config:
    """Merge the recipe layers and overrides for (task, preset) into a typed :class:`Config`.

    ``sources``: keep only these of the recipe's ``data.sources`` (before the overrides)."""
    tree: dict[str, Any] = {}
    for i, path in enumerate(recipe_layers(task, preset, config_dir)):
        tree = deep_merge(tree, read_yaml(path))
        if i == 0 and path.name == "finetune.yaml":
            tree = deep_merge(tree, dataset_layer(task.removeprefix("finetune-")))
    if sources is not None:
        tree = select_sources(tree, sources)
    tree = deep_merge(tree, {"task": task, "model": {"preset": preset}})
    tree = apply_overrides(tree, list(overrides or []), Config)
    cfg = build_dataclass(Config, tree)
    check_values(cfg)
    return cfg


def config_from_dict(tree: dict[str, Any]) -> Config:
    """Rebuild a :class:`Config` from its ``to_dict()`` (e.g. the copy inside a checkpoint)."""
    cfg = build_dataclass(Config, tree)
    check_values(cfg)
    return cfg


# ---------------------------------------------------------------------------------------------
# Validation


def check_values(cfg: Config) -> None:
    """Value checks that need no files: ranges and choices."""
    if cfg.task not in TASKS:
        raise ConfigError(f"task: unknown {cfg.task!r}; choose one of {', '.join(TASKS)}")
    if not cfg.data.sources:
        raise ConfigError("data.sources is empty: a run needs at least one shard folder")
    for name, src in cfg.data.sources.items():
        if not src.dir:
            raise ConfigError(f"data.sources.{name}.dir is not set (e.g. shards/webvid/train_4f)")
        if src.num_frames < 1:
            raise ConfigError(f"data.sources.{name}.num_frames must be >= 1")
        if cfg.source_batch_size(name) < 1:
            raise ConfigError(f"data.sources.{name}.batch_size must be >= 1")
    if cfg.data.num_workers < 0:
        raise ConfigError(
            f"data.num_workers must be >= 0 (data.num_workers={cfg.data.num_workers}): "
            "0 loads in the training process"
        )
    size, patch = cfg.model.image_size, PATCH_SIZES.get(cfg.model.preset, 16)
    if size is not None and (size < 1 or size % patch):
        raise ConfigError(
            f"model.image_size must be a positive multiple of the patch size {patch} "
            f"(model.image_size={size}): e.g. model.image_size={max(patch, size // patch * patch)}"
        )
    o = cfg.optim
    if not o.lr > 0 or o.min_lr < 0 or o.min_lr > o.lr:
        raise ConfigError(
            f"optim: need lr > 0 and 0 <= min_lr <= lr (lr={o.lr}, min_lr={o.min_lr})"
        )
    if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
        raise ConfigError(f"optim.betas: expected two numbers in [0, 1), got {o.betas}")
    if o.epochs < 1 or o.warmup_epochs < 0 or o.warmup_epochs > o.epochs:
        raise ConfigError("optim: need epochs >= 1 and 0 <= warmup_epochs <= epochs")
    if o.grad_clip < 0 or o.weight_decay < 0:
        raise ConfigError("optim: grad_clip and weight_decay must be >= 0")
    if o.text_lr_scale <= 0 or o.temporal_lr_scale <= 0:
        raise ConfigError("optim: text_lr_scale and temporal_lr_scale must be > 0")
    if min(cfg.loss.vtc, cfg.loss.vtm, cfg.loss.mlm) < 0 or not (
        cfg.loss.vtc or cfg.loss.vtm or cfg.loss.mlm
    ):
        raise ConfigError("loss: weights must be >= 0 and at least one > 0")
    if not 0 <= cfg.model.drop_path < 1:
        raise ConfigError(
            f"model.drop_path: a probability in [0, 1), got {cfg.model.drop_path} (0 = off)"
        )
    if not 0 <= cfg.loss.reverse <= 1:
        raise ConfigError(f"loss.reverse: a share of the batch in [0, 1], got {cfg.loss.reverse}")
    _check_choice("loss.vtc_gather", cfg.loss.vtc_gather, ("local", "global"))
    _check_choice("optim.schedule", o.schedule, ("paper", "vindlu"))
    _check_choice("optim.decay_rule", o.decay_rule, ("vindlu", "project"))
    _check_choice("data.captions_per_epoch", cfg.data.captions_per_epoch, ("all", "one"))
    _check_choice("data.interp", cfg.data.interp, ("bicubic", "bilinear"))
    _check_train(cfg.train)
    if cfg.model.init not in (None, "random", "pretrained"):
        raise ConfigError(f"model.init: {cfg.model.init!r} is not one of random, pretrained")
    check_eval(cfg.eval)
    if cfg.train.eval_every_epoch and not (cfg.eval.shards and cfg.eval.dataset):
        raise ConfigError("train.eval_every_epoch needs eval.dataset and eval.shards")


def _check_train(t: TrainConfig) -> None:
    """The train section's ranges and choices."""
    if t.max_steps < 0 or t.ckpt_every_steps < 0 or t.log_every < 1:
        raise ConfigError("train: max_steps, ckpt_every_steps >= 0 and log_every >= 1")
    bad = [n for n in t.loggers if n not in ("jsonl", "tensorboard", "wandb")]
    if bad:
        raise ConfigError(f"train.loggers: unknown {bad}; choose from jsonl, tensorboard, wandb")
    bad_signals = [n for n in t.stop_signals if n not in STOP_SIGNALS]
    if bad_signals:
        raise ConfigError(
            f"train.stop_signals: {bad_signals[0]!r} is not one of {', '.join(STOP_SIGNALS)}"
        )
    _check_choice("train.precision", t.precision, ("auto", "bf16", "fp32", "fp16"))


def dump_yaml(cfg: Config) -> str:
    """The resolved config as YAML text (written to ``<run>/config.yaml``)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)


def _check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(allowed)}")
