"""Which checkpoint a fine-tuning run hands on as ``best.pt``: ``train.select``.

``last`` keeps the last epoch (VindLU's MSR-VTT recipe); ``<split>:<metric>`` evaluates that
split after every epoch and keeps the best epoch by ``metric``: ``r_mean`` (VindLU's: the mean of
text-to-video and video-to-text R@1/5/10) or ``t2v_avg`` (text-to-video (R1+R5+R10)/3). The
split that chooses is never the reported one by default (docs/training.md, "Choosing the
checkpoint"); evaluating the reported split each epoch (``train.eval_every_epoch``) is
monitoring only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from t2v2t import storage
from t2v2t.retrieval.settings import EvalConfig
from t2v2t.training.config import Config, ConfigError
from t2v2t.training.preflight import check_shard_dir

SELECT_METRICS = ("r_mean", "t2v_avg")


@dataclass(frozen=True)
class Selection:
    split: str | None  # None: the last epoch is kept
    metric: str = "r_mean"

    @property
    def label(self) -> str:
        return "last" if self.split is None else f"{self.split}:{self.metric}"


def parse_select(value: str) -> Selection:
    """``last`` or ``<split>[:<metric>]``; anything else is a one-line :class:`ConfigError`."""
    text = str(value).strip()
    if text == "last":
        return Selection(None)
    split, _, metric = text.partition(":")
    metric = metric or "r_mean"
    if not split or metric not in SELECT_METRICS or not split.replace("_", "").isalnum():
        raise ConfigError(
            f"train.select: {value!r} is not last or <split>:<metric> with metric one of "
            f"{', '.join(SELECT_METRICS)} (e.g. train.select=val:r_mean)"
        )
    return Selection(split, metric)


def select_shards(cfg: Config, sel: Selection) -> str | Path:
    """The shard folder of the selecting split: ``train.select_shards``, else beside
    ``eval.shards`` with the split's name in place of ``eval.split`` (``test_12f`` -> ``val_12f``)."""
    if cfg.train.select_shards:
        return cfg.train.select_shards
    shards, split = cfg.eval.shards, cfg.eval.split
    name = storage.basename(shards) if shards else ""
    if not name.startswith(f"{split}_"):
        raise ConfigError(
            f"train.select={sel.label} needs its shard folder: set train.select_shards "
            "(or eval.shards named <split>_<N>f to find it beside), or train.select=last"
        )
    sibling = str(sel.split) + name[len(split) :]
    if storage.is_url(shards):
        return f"{str(shards).rstrip('/').rsplit('/', 1)[0]}/{sibling}"
    return Path(shards).with_name(sibling)


def select_eval(cfg: Config, sel: Selection) -> EvalConfig:
    """The evaluation settings of the selecting split (the ``eval`` section's, another split)."""
    return replace(cfg.eval, split=str(sel.split), shards=str(select_shards(cfg, sel)))


def selection_value(result: dict[str, Any], fusion: str, metric: str) -> float:
    """``r_mean`` or ``t2v_avg`` of ``fusion`` in an evaluation result."""
    res = result["results"][fusion]
    if metric == "t2v_avg":
        return float(res["t2v"]["Avg"])
    return (float(res["t2v"]["Avg"]) + float(res["v2t"]["Avg"])) / 2


def check_select(cfg: Config) -> Selection:
    """``train.select`` parsed, and its split's shards on disk (before a run writes anything)."""
    sel = parse_select(cfg.train.select)
    if sel.split is not None:
        if not cfg.eval.dataset:
            raise ConfigError(f"train.select={sel.label} needs eval.dataset (or train.select=last)")
        folder = select_shards(cfg, sel)
        hint = f"`make shards DATASET={cfg.eval.dataset} SPLIT={sel.split}` (or train.select=last)"
        check_shard_dir("train.select", str(folder), hint)
    return sel
