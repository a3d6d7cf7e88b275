"""What the evaluation commands share: default paths, settings, loading a checkpoint.

``scripts/evaluate.py`` (``make eval-<dataset>``) and ``scripts/ablation.py`` (``make ablation``) are
thin wrappers over these. Their ``eval.<key>=value`` options become one
:class:`~t2v2t.retrieval.settings.EvalConfig` through the config's own coercer
(:func:`command_settings`), the type training's per-epoch evaluation uses. Problems a user can fix
(a missing checkpoint or shard folder, a bad option) raise :class:`UsageError` or
:class:`ConfigError` with one line that says what to run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from t2v2t.dist import world_info
from t2v2t.errors import UsageError  # scripts import it from here too
from t2v2t.models.loading import CheckpointError, load_any_checkpoint, tokenizer_for
from t2v2t.recipes import PAPER_EVAL, eval_datasets, eval_recipe, eval_shard_dir, recipe
from t2v2t.retrieval.evaluate import EvalResult, evaluate_retrieval
from t2v2t.retrieval.fusion import FUSIONS
from t2v2t.retrieval.preprocess import default_preprocess
from t2v2t.retrieval.settings import EvalConfig, eval_settings
from t2v2t.storage import ShardFolder
from t2v2t.typed_yaml import ConfigError

# The datasets with an evaluation split in the recipe table (t2v2t/recipes.py).
DATASETS = eval_datasets()


def command_settings(
    options: Sequence[str], dataset: str | None = None, root: str | Path = "shards"
) -> EvalConfig:
    """``eval.k=64 ...`` -> settings; with ``dataset``: its evaluation split and shard folder
    under ``root`` from the recipe table (set by the command, not by an option)."""
    base = EvalConfig(posthoc=True)  # the commands report every post-hoc method
    if dataset is None:
        return eval_settings(options, base)
    split = eval_recipe(dataset).split
    shards = str(eval_shard_dir(dataset, root))
    return eval_settings(options, base, dataset=dataset, split=split, shards=shards)


def for_dataset(settings: EvalConfig, dataset: str, root: str | Path = "shards") -> EvalConfig:
    """``settings`` (from :func:`command_settings` without a dataset) aimed at ``dataset``."""
    split, shards = eval_recipe(dataset).split, str(eval_shard_dir(dataset, root))
    return dataclasses.replace(settings, dataset=dataset, split=split, shards=shards)


def default_checkpoint(dataset: str) -> Path:
    return Path("runs") / f"finetune-{dataset}" / "best.pt"


def check_inputs(
    dataset: str, ckpt: Path, shards: ShardFolder | Path | str, ckpt_given: bool
) -> None:
    """One clear line per missing input, naming the command that makes it."""
    folder = ShardFolder.of(shards)
    if not folder.has("manifest.json"):
        state = "has no manifest.json" if folder.exists() else "does not exist"
        split = eval_recipe(dataset).split
        built = any(r.split == split for r in recipe(dataset))  # `folder`: SPLIT=test, own build
        raise UsageError(
            f"eval shards {shards} {state}; build them with `make shards DATASET={dataset}"
            + ("`" if built else f" SPLIT={split}` (DATA= the test videos, or ANNOTATIONS=)")
        )
    if not ckpt.exists():
        target = f"finetune-{dataset}" if dataset in PAPER_EVAL else f"finetune DATASET={dataset}"
        how = (
            "check the CKPT= path"
            if ckpt_given
            else f"train it with `make {target}` or pass CKPT=path/to/checkpoint.pt"
        )
        raise UsageError(f"checkpoint {ckpt} does not exist; {how}")


def output_dir(ckpt: Path, run: str | Path | None) -> Path:
    """``<RUN>/eval`` when given, else ``<checkpoint's directory>/eval``."""
    return (Path(run) if run else ckpt.parent) / "eval"


def resolve_device(name: str) -> torch.device:
    """``auto``: this process's GPU when there is one, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", world_info()[2])
        return torch.device("cpu")
    return torch.device(name)


def load_checkpoint(ckpt: Path, preset: str, say: Callable[[str], None] = print) -> Any:
    """(:class:`~t2v2t.models.loading.LoadedCheckpoint`, its tokenizer); errors as one line."""
    try:
        loaded = load_any_checkpoint(ckpt, preset, say=say)
    except CheckpointError as e:
        raise UsageError(str(e)) from None
    return loaded, tokenizer_for(loaded)


def load_model(ckpt: Path, preset: str, say: Callable[[str], None] = print) -> Any:
    """The checkpoint's model (its own preset and architecture) and tokenizer, weights loaded.
    A project ``.pt``, a VindLU ``.pth`` or an exported folder, recognised by content."""
    loaded, tokenizer = load_checkpoint(ckpt, preset, say)
    return loaded.model, tokenizer, loaded.preset


def evaluate_dataset(
    settings: EvalConfig,
    *,
    preset: str,
    ckpt: Path,
    say: Callable[[str], None] = print,
) -> EvalResult:
    """Load the checkpoint and evaluate ``settings.dataset`` on ``settings.shards`` (call on
    every rank under torchrun); ``preprocess=auto`` resolves against the checkpoint."""
    device = resolve_device(settings.device)
    t0 = time.perf_counter()
    loaded, tokenizer = load_checkpoint(ckpt, preset, say)
    model = loaded.model.to(device)
    preprocess = settings.preprocess
    if preprocess == "auto":
        preprocess = default_preprocess(loaded.source, loaded.extra)
    dataset = settings.dataset
    say(
        f"[eval] {dataset}: {loaded.source} model from {ckpt} on {device} "
        f"({time.perf_counter() - t0:.1f}s), eval.preprocess={preprocess}"
    )
    result = evaluate_retrieval(
        model,
        tokenizer,
        dataclasses.replace(settings, preprocess=preprocess),
        device=device,
        checkpoint=str(ckpt),
        log=lambda m: say(f"[eval] {dataset}: {m}"),
        bank_cache=output_dir(ckpt, None),  # the bank's features, next to the eval outputs
    )
    result["checkpoint_selected_by"] = selected_by(loaded.extra)
    return result


def selected_by(extra: dict[str, Any]) -> str | None:
    """How a fine-tuning run chose this checkpoint: its ``train.select`` (``last``,
    ``val:r_mean``, ...; docs/training.md, "Choosing the checkpoint"); None when the checkpoint
    does not say (an export, VindLU's own, a run from before ``train.select``)."""
    train = (extra.get("config") or {}).get("train") or {}
    select = train.get("select")
    return str(select) if select is not None else None


__all__ = [
    "DATASETS",
    "FUSIONS",
    "ConfigError",
    "EvalConfig",
    "UsageError",
    "check_inputs",
    "command_settings",
    "default_checkpoint",
    "eval_shard_dir",
    "evaluate_dataset",
    "for_dataset",
    "load_checkpoint",
    "load_model",
    "output_dir",
]
