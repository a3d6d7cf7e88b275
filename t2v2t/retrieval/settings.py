"""Retrieval evaluation settings: one :class:`EvalConfig` for the ``eval:`` section of a
training config (per-epoch evaluation) and the ``eval.<key>=value`` options of the eval commands
(:func:`eval_settings`), checked by :func:`check_eval` (docs/evaluation.md)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from t2v2t.typed_yaml import WORDS, ConfigError, build_dataclass, check_path, parse_override


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
    # Also vtm (true) | none (false): stage 1 alone (docs/evaluation.md: ``eval.rerank=none``).
    rerank: bool = field(default=True, metadata={WORDS: {"vtm": True, "none": False}})
    pair_batch: int = 128  # candidate pairs per VTM call
    pairing: str = "shared"  # or two_pass (VindLU's way; one process)
    # None = True for shared pairs, False for VindLU's two passes (each pair repeats its video).
    share_video_kv: bool | None = None
    # auto = vindlu for a VindLU checkpoint (or a folder exported from one), else project.
    preprocess: str = "auto"
    device: str = "auto"  # the eval commands' device; auto = cuda when available
    # Post-hoc methods on the stage-1 matrix, both protocols (docs/evaluation.md, "Which fusion?");
    # the eval commands turn it on, training's per-epoch evaluation leaves it off.
    posthoc: bool = False
    bank: str | None = None  # None | train (the dataset's train shards) | a shard folder
    bank_size: int = 5000  # captions at most in the bank, a seeded sample beyond that
    bank_videos: int = 0  # training videos encoded for dbnorm's video bank (0: none)
    fusion_params: str | None = None  # fusion_params.json from make tune-fusion


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
    if e.bank_size < 1 or e.bank_videos < 0:
        raise ConfigError(
            f"eval.bank_size must be >= 1 and eval.bank_videos >= 0 "
            f"(bank_size={e.bank_size}, bank_videos={e.bank_videos})"
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
        check_path(parts, EvalConfig, prefix=["eval"])
        if parts[0] in fixed:
            raise ConfigError(
                f"eval.{parts[0]} is set by the command ({parts[0]}={fixed[parts[0]]!r}); "
                f"drop the option"
            )
        tree[parts[0]] = value
    settings = build_dataclass(EvalConfig, tree, "eval")
    check_eval(settings)
    return settings
