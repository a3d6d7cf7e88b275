"""What the evaluation commands share: default paths, ``key=value`` options, loading a checkpoint.

``scripts/evaluate.py`` (``make eval-<dataset>``) and ``scripts/ablation.py`` (``make ablation``) are
thin wrappers over these. Problems a user can fix (a missing checkpoint or shard folder, a bad
option) raise :class:`UsageError` with one line that says what to run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from t2v2t.errors import UsageError  # scripts import it from here too
from t2v2t.recipes import PAPER_EVAL, eval_datasets, eval_recipe, eval_shard_dir, recipe
from t2v2t.retrieval.fusion import FUSIONS

# The datasets with an evaluation split in the recipe table (t2v2t/recipes.py).
DATASETS = eval_datasets()


@dataclass
class EvalOptions:
    """The evaluation knobs settable as ``eval.<name>=value`` (``ARGS=`` of the make targets)."""

    k: int = 128
    batch_size: int = 32
    num_frames: int | None = None  # None = the shards' frame count
    max_text_len: int | None = None  # None = 32 sentences, 64 paragraphs
    tau: float = 1.0
    lam: float = 1.0
    rerank: bool = True
    pair_batch: int = 128
    pairing: str = "shared"  # or two_pass (VindLU's way; one process)
    # auto = vindlu for a VindLU checkpoint (or a folder exported from one), else project.
    preprocess: str = "auto"
    device: str = "auto"  # auto = cuda when available

    def kwargs(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("device")
        d.pop("preprocess")  # resolved against the checkpoint by evaluate_dataset
        return d


def _coerce(name: str, raw: str, tp: str) -> Any:
    value = yaml.safe_load(raw) if raw.strip() else None
    try:
        if tp.startswith("bool"):  # rerank=vtm|none, or true/false
            word = str(value).lower()
            if word in ("vtm", "true", "1", "yes"):
                return True
            if word in ("none", "false", "0", "no"):
                return False
            raise ValueError
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if "None" in tp:
                return None
            raise ValueError
        if tp.startswith("int"):
            if isinstance(value, bool) or int(value) != float(value):
                raise ValueError
            return int(value)
        if tp.startswith("float"):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise UsageError(f"option {name}={raw!r}: expected {tp}") from None


def parse_options(items: Sequence[str], base: EvalOptions | None = None) -> EvalOptions:
    """``eval.k=64 eval.batch_size=16`` (the ``eval.`` prefix is optional) -> :class:`EvalOptions`."""
    opts = dataclasses.replace(base) if base else EvalOptions()
    types = {f.name: str(f.type) for f in dataclasses.fields(EvalOptions)}
    for item in items:
        if "=" not in item:
            raise UsageError(f"option {item!r} is not key=value (e.g. eval.k=64)")
        key, raw = item.split("=", 1)
        name = key.strip().removeprefix("eval.")
        if name not in types:
            raise UsageError(
                f"unknown option {key!r}; known: {', '.join('eval.' + n for n in types)}"
            )
        setattr(opts, name, _coerce(key, raw, types[name]))
    if opts.pairing not in ("shared", "two_pass"):
        raise UsageError(f"eval.pairing={opts.pairing!r}: use shared or two_pass")
    if opts.preprocess not in ("auto", "project", "vindlu"):
        raise UsageError(f"eval.preprocess={opts.preprocess!r}: use auto, project or vindlu")
    if opts.k < 1 or opts.batch_size < 1 or opts.pair_batch < 1 or opts.tau <= 0:
        raise UsageError("eval.k, eval.batch_size and eval.pair_batch must be >= 1, eval.tau > 0")
    return opts


def default_checkpoint(dataset: str) -> Path:
    return Path("runs") / f"finetune-{dataset}" / "best.pt"


def check_inputs(dataset: str, ckpt: Path, shards: Path, ckpt_given: bool) -> None:
    """One clear line per missing input, naming the command that makes it."""
    if not (shards / "manifest.json").is_file():
        state = "has no manifest.json" if shards.is_dir() else "does not exist"
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


def resolve_device(name: str):
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            from t2v2t.dist import world_info

            return torch.device("cuda", world_info()[2])
        return torch.device("cpu")
    return torch.device(name)


def load_checkpoint(ckpt: Path, preset: str, say: Callable[[str], None] = print):
    """(:class:`~t2v2t.models.loading.LoadedCheckpoint`, its tokenizer); errors as one line."""
    from t2v2t.models.loading import CheckpointError, load_any_checkpoint, tokenizer_for

    try:
        loaded = load_any_checkpoint(ckpt, preset, say=say)
    except CheckpointError as e:
        raise UsageError(str(e)) from None
    return loaded, tokenizer_for(loaded)


def load_model(ckpt: Path, preset: str, say: Callable[[str], None] = print):
    """The checkpoint's model (its own preset and architecture) and tokenizer, weights loaded.
    A project ``.pt``, a VindLU ``.pth`` or an exported folder, recognised by content."""
    loaded, tokenizer = load_checkpoint(ckpt, preset, say)
    return loaded.model, tokenizer, loaded.preset


def evaluate_dataset(
    dataset: str,
    *,
    preset: str,
    ckpt: Path,
    shards: Path,
    opts: EvalOptions,
    say: Callable[[str], None] = print,
) -> Any:
    """Load the checkpoint and evaluate one dataset (call on every rank under torchrun)."""
    from t2v2t.retrieval.evaluate import evaluate_retrieval

    device = resolve_device(opts.device)
    t0 = time.perf_counter()
    from t2v2t.retrieval.preprocess import default_preprocess

    loaded, tokenizer = load_checkpoint(ckpt, preset, say)
    model = loaded.model.to(device)
    preprocess = opts.preprocess
    if preprocess == "auto":
        preprocess = default_preprocess(loaded.source, loaded.extra)
    say(
        f"[eval] {dataset}: {loaded.source} model from {ckpt} on {device} "
        f"({time.perf_counter() - t0:.1f}s), eval.preprocess={preprocess}"
    )
    split = eval_recipe(dataset).split
    return evaluate_retrieval(
        model,
        tokenizer,
        shards,
        dataset=dataset,
        split=split,
        device=device,
        checkpoint=str(ckpt),
        log=lambda m: say(f"[eval] {dataset}: {m}"),
        preprocess=preprocess,
        **opts.kwargs(),
    )


__all__ = [
    "DATASETS",
    "FUSIONS",
    "EvalOptions",
    "UsageError",
    "check_inputs",
    "default_checkpoint",
    "eval_shard_dir",
    "evaluate_dataset",
    "load_checkpoint",
    "load_model",
    "output_dir",
    "parse_options",
]
