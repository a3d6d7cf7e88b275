"""Typed training configs: YAML recipes + preset layers + dotted ``key=value`` overrides.

A run's config is built in layers, each a plain dict deep-merged onto the previous one:

1. ``configs/<task>.yaml``             the paper's recipe (pretrain, finetune-msrvtt, ...)
2. ``configs/presets/<preset>.yaml``   e.g. ``tiny``: small model, CPU-sized batches (optional)
3. ``configs/presets/<preset>-<task>.yaml``  preset tweaks for one task (optional)
4. command-line overrides ``optim.lr=3e-5 data.sources.webvid.batch_size=8``

The merged dict is then turned into dataclasses field by field, each value checked against the
field's type (no ``eval``). Every mistake raises :class:`ConfigError` with a one-line message that
names the key and what to do; the CLI turns it into exit status 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from t2v2t import storage
from t2v2t.recipes import eval_datasets, eval_recipe, eval_shard_dir, recipe, text_len

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
# Pre-training, and fine-tuning on every dataset with an evaluation split (t2v2t/recipes.py):
# finetune-msrvtt, -didemo, -anet have their paper recipes (configs/<task>.yaml); any other
# (folder, vindlu) takes configs/finetune.yaml with its shard folders from the recipe table.
TASKS = ("pretrain", *(f"finetune-{d}" for d in eval_datasets()))
# The vision backbone's patch size per model preset (t2v2t/models/config.py names the timm
# models): an image size must tile into whole patches. Kept here so config checks need no torch.
PATCH_SIZES = {"base": 16, "tiny": 16}


class ConfigError(ValueError):
    """A config that cannot be used; the message is one line meant for the user."""


@dataclass
class ModelSection:
    preset: str = "base"  # "base" (paper) or "tiny" (CPU); filled from --preset
    init: str | None = None  # "random" or None (pretrained weights); INIT env var overrides
    image_size: int | None = None  # None = the preset's (base 224); the loader resizes to it
    dropout: float | None = None  # None = the model's own; 0 makes steps comparable across runs


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


@dataclass
class TrainConfig:
    init_checkpoint: str | None = None  # weights to start from (--ckpt); fine-tuning needs one
    max_steps: int = 0  # stop after this many optimiser steps; 0 = run every epoch
    ckpt_every_steps: int = 1000  # also saved at every epoch end
    log_every: int = 10  # progress-bar refresh; metrics.jsonl gets every step
    # jsonl (metrics.jsonl, always written) plus any of tensorboard, wandb (WANDB_MODE honoured)
    loggers: list[str] = field(default_factory=lambda: ["jsonl"])
    wandb_project: str = "t2v2t"
    grad_checkpointing: bool = False
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    eval_every_epoch: bool = False
    deterministic: bool = False  # torch deterministic algorithms (CPU tests, exact resume)
    threads: int = 0  # torch intra-op threads; 0 = torch's default


@dataclass(frozen=True)
class EvalConfig:
    """Retrieval evaluation settings, one type for both uses: the ``eval:`` section of a training
    config (per-epoch evaluation) and the ``eval.<key>=value`` options of ``scripts/evaluate.py``
    and ``scripts/ablation.py`` (:func:`eval_settings`). Checked by :func:`check_eval`."""

    dataset: str | None = None  # msrvtt | didemo | anet (t2v2t/recipes.py)
    split: str = "test"
    shards: str | None = None  # e.g. shards/msrvtt/test_12f
    num_frames: int | None = None  # None = the shards' frame count
    max_text_len: int | None = None  # None = the recipe table's: 32 sentences, 64 paragraphs
    k: int = 128
    batch_size: int = 32
    fusion: str = "t2v2t"  # the fusion whose T2V Avg selects best.pt: none | naive | t2v2t
    tau: float = 1.0
    lam: float = 1.0
    rerank: bool = True  # also vtm (true) | none (false): stage 1 alone
    pair_batch: int = 128  # candidate pairs per VTM call
    pairing: str = "shared"  # or two_pass (VindLU's way; one process)
    # None = True for shared pairs, False for VindLU's two passes (each pair repeats its video).
    share_video_kv: bool | None = None
    # auto = vindlu for a VindLU checkpoint (or a folder exported from one), else project.
    preprocess: str = "auto"
    device: str = "auto"  # the eval commands' device; auto = cuda when available


# Words some boolean settings also accept (docs/evaluation.md: ``eval.rerank=none``).
_BOOL_WORDS = {"eval.rerank": {"vtm": True, "none": False}}


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


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read one YAML mapping (``yaml.safe_load``); errors name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"invalid YAML in {path}{where}: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


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


# ---------------------------------------------------------------------------------------------
# Typed construction


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; ConfigError names ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(value, str) and key in _BOOL_WORDS:
        value = _BOOL_WORDS[key].get(value.lower(), value)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null", "~") and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return build_dataclass(tp, value, key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        # A null entry removes it: `data.sources.cc3m=null` pre-trains on WebVid alone.
        return {
            str(k): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items() if v is not None
        }
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads "1e-4" (no dot) as a string; accept it as the number it means.
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported field type {_type_name(tp)}")


def _unknown_key(key: str, name: str, known: list[str]) -> ConfigError:
    parent = key[: -len(name)]  # "optim." for "optim.lrr"
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(parent + c) for c in close)}?" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint} (known here: {', '.join(known)})")


def build_dataclass(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Instantiate dataclass ``cls`` from a (possibly partial) mapping, type-checking each value."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in fields:
            raise _unknown_key(key, str(name), list(fields))
        kwargs[name] = _coerce(value, hints[name], key)
    return cls(**kwargs)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a","b","c"], value parsed as a YAML scalar/list)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not key=value (e.g. optim.lr=3e-5)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # e.g. an unbalanced quote: keep the text; the type check decides
    return key.split("."), value


def _check_path(parts: list[str], cls: type) -> None:
    """Fail early, naming the whole dotted key, when an override addresses no field."""
    tp: Any = cls
    for i, part in enumerate(parts):
        key = ".".join(parts[: i + 1])
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
            origin = typing.get_origin(tp)
        if dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            if part not in hints:
                raise _unknown_key(key, part, list(hints))
            tp = hints[part]
        elif origin is dict:
            tp = typing.get_args(tp)[1]  # a new source name is allowed: it adds a source
        else:
            raise ConfigError(f"unknown config key {key!r}: {'.'.join(parts[:i])} is not a section")


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted ``key=value`` in a copy of the merged dict (checked against :class:`Config`)."""
    out = deep_merge({}, tree)
    for item in overrides:
        parts, value = parse_override(item)
        _check_path(parts, Config)
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return out


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
    tree = apply_overrides(tree, list(overrides or []))
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
    if not 0 <= cfg.loss.reverse <= 1:
        raise ConfigError(f"loss.reverse: a share of the batch in [0, 1], got {cfg.loss.reverse}")
    t = cfg.train
    if t.max_steps < 0 or t.ckpt_every_steps < 0 or t.log_every < 1:
        raise ConfigError("train: max_steps, ckpt_every_steps >= 0 and log_every >= 1")
    bad = [n for n in t.loggers if n not in ("jsonl", "tensorboard", "wandb")]
    if bad:
        raise ConfigError(f"train.loggers: unknown {bad}; choose from jsonl, tensorboard, wandb")
    if t.precision not in ("auto", "bf16", "fp32"):
        raise ConfigError(f"train.precision: {t.precision!r} is not one of auto, bf16, fp32")
    if cfg.model.init not in (None, "random", "pretrained"):
        raise ConfigError(f"model.init: {cfg.model.init!r} is not one of random, pretrained")
    check_eval(cfg.eval)
    if t.eval_every_epoch and not (cfg.eval.shards and cfg.eval.dataset):
        raise ConfigError("train.eval_every_epoch needs eval.dataset and eval.shards")


def check_eval(e: EvalConfig) -> None:
    """Value checks of the evaluation settings (training's ``eval:`` and the eval commands')."""
    choices = {
        "fusion": ("none", "naive", "t2v2t"),
        "pairing": ("shared", "two_pass"),
        "preprocess": ("auto", "project", "vindlu"),
    }
    for name, allowed in choices.items():
        value = getattr(e, name)
        if value not in allowed:
            raise ConfigError(f"eval.{name}: {value!r} is not one of {', '.join(allowed)}")
    if min(e.k, e.batch_size, e.pair_batch) < 1 or not e.tau > 0:
        raise ConfigError(
            f"eval.k, eval.batch_size and eval.pair_batch must be >= 1 and eval.tau > 0 "
            f"(k={e.k}, batch_size={e.batch_size}, pair_batch={e.pair_batch}, tau={e.tau})"
        )
    for name in ("num_frames", "max_text_len"):
        value = getattr(e, name)
        if value is not None and value < 1:
            raise ConfigError(f"eval.{name} must be >= 1 or null (eval.{name}={value})")


def eval_settings(
    options: Sequence[str] = (), base: EvalConfig | None = None, **fixed: Any
) -> EvalConfig:
    """The eval commands' settings: ``eval.k=64 batch_size=16`` (the ``eval.`` prefix optional)
    over ``base`` (default: the defaults) and the fields the command sets itself (``fixed``, e.g.
    dataset, split, shards), coerced and checked as a training config's ``eval:`` section."""
    tree: dict[str, Any] = dataclasses.asdict(base) if base is not None else {}
    tree.update(fixed)
    for item in options:
        parts, value = parse_override(item)
        parts = parts[1:] if parts[0] == "eval" else parts
        if not parts:
            raise ConfigError(f"option {item!r} names no setting (e.g. eval.k=64)")
        _check_path(["eval", *parts], Config)
        if parts[0] in fixed:
            raise ConfigError(
                f"eval.{parts[0]} is set by the command ({parts[0]}={fixed[parts[0]]!r}); "
                f"drop the option"
            )
        tree[parts[0]] = value
    settings = build_dataclass(EvalConfig, tree, "eval")
    check_eval(settings)
    return settings


def _check_shard_dir(key: str, path: str, make_hint: str) -> None:
    if storage.is_url(path):  # an object store has no folders, only the manifest's object
        if not storage.exists(storage.join(path, "manifest.json")):
            raise ConfigError(
                f"{key}: {path} has no manifest.json (not built or unfinished); build it with "
                f"{make_hint} OUT=<the URL's root>"
            )
        return
    p = Path(path)
    if not p.is_dir():
        raise ConfigError(f"{key}: shard folder {path} does not exist; build it with {make_hint}")
    if not (p / "manifest.json").is_file():
        raise ConfigError(
            f"{key}: {path} has no manifest.json (unfinished build?); rebuild with {make_hint}"
        )


def _make_hint(path: str) -> str:
    parts = Path(path).parts
    dataset = parts[-2] if len(parts) >= 2 else "<dataset>"
    return f"`make shards DATASET={dataset}`"


def check_files(cfg: Config, *, resume_from: str | Path | None = None) -> None:
    """Start-up checks on disk: every shard folder has its manifest, checkpoints exist."""
    for name, src in cfg.data.sources.items():
        _check_shard_dir(f"data.sources.{name}.dir", src.dir, _make_hint(src.dir))
    if cfg.train.eval_every_epoch and cfg.eval.shards:
        _check_shard_dir("eval.shards", cfg.eval.shards, _make_hint(cfg.eval.shards))
    if resume_from is None and cfg.train.init_checkpoint:
        ckpt = Path(cfg.train.init_checkpoint)
        if not ckpt.exists():  # a file, or an exported folder
            hint = (
                "run `make pretrain` first or pass CKPT=path/to/checkpoint.pt"
                if cfg.task.startswith("finetune")
                else "pass CKPT=path/to/checkpoint.pt"
            )
            raise ConfigError(f"checkpoint {ckpt} does not exist; {hint}")
    if resume_from is not None and not Path(resume_from).is_file():
        raise ConfigError(f"cannot resume: {resume_from} does not exist (no checkpoint saved yet)")


def dump_yaml(cfg: Config) -> str:
    """The resolved config as YAML text (written to ``<run>/config.yaml``)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)
