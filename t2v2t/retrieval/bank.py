"""The caption bank of the inductive post-hoc methods: training captions, never the reported split.

``eval.bank=train`` is the dataset's train shard folder beside the evaluation shards
(``<root>/<dataset>/train_<T>f``); any other value is a shard folder. A bank whose manifest says
it holds the split being reported (or that is the evaluation folder itself) is refused in one
line. At most ``eval.bank_size`` captions, a seeded sample beyond that. Their text features are
cached next to the checkpoint's eval outputs, keyed by checkpoint + bank shards + settings
(docs/evaluation.md, "Which fusion?").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from t2v2t import storage
from t2v2t.data.eval_loader import eval_texts
from t2v2t.data.shards import ShardError, read_manifest
from t2v2t.recipes import recipe
from t2v2t.retrieval.settings import EvalConfig
from t2v2t.typed_yaml import ConfigError

BANK_SEED = 0


def bank_dir(s: EvalConfig) -> str | None:
    """The bank's shard folder, or None without a bank."""
    if s.bank in (None, "", "none"):
        return None
    if s.bank != "train":
        return str(s.bank)
    frames = recipe(str(s.dataset), "train")[0].num_frames
    parent = str(s.shards).rstrip("/").rsplit("/", 1)[0]  # a path or a URL alike
    return str(storage.join(parent, f"train_{frames}f"))


def check_bank(directory: str, s: EvalConfig) -> dict:
    """The bank's manifest; :class:`ConfigError` when it is the reported split."""
    same = str(directory).rstrip("/") == str(s.shards).rstrip("/")
    try:
        manifest = read_manifest(directory)
    except (ShardError, OSError) as e:  # missing or not a shard folder: one line naming it
        raise ConfigError(f"eval.bank={s.bank}: {directory}: {e}") from None
    split = manifest.get("split")
    if same or split == s.split:
        raise ConfigError(
            f"eval.bank={s.bank}: {directory} holds the {split or s.split} split, the split this "
            "evaluation reports; a bank must come from training data (eval.bank=train)"
        )
    return manifest


def bank_captions(directory: str, size: int) -> list[str]:
    """Every caption of the bank folder, or a seeded sample of ``size`` in manifest order."""
    texts = eval_texts(directory).texts
    if len(texts) <= size:
        return texts
    keep = np.sort(np.random.default_rng(BANK_SEED).choice(len(texts), size, replace=False))
    return [texts[i] for i in keep]


def cache_key(checkpoint: str | None, manifest: dict, s: EvalConfig) -> str:
    ckpt = Path(checkpoint) if checkpoint else None
    stat = ckpt.stat() if ckpt is not None and ckpt.exists() else None
    parts = [
        str(checkpoint),
        None if stat is None else [stat.st_size, stat.st_mtime_ns],
        json.dumps(manifest, sort_keys=True),
        s.bank_size,
        s.max_text_len,
        s.preprocess,
        BANK_SEED,
    ]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def bank_features(
    s: EvalConfig,
    checkpoint: str | None,
    cache_dir: str | Path | None,
    encode: Callable[[list[str]], torch.Tensor],
) -> tuple[torch.Tensor, dict] | None:
    """(bank text features [n, E], what the result records) or None without a bank; encoded
    once per checkpoint + bank, then read from ``cache_dir`` while neither changes."""
    directory = bank_dir(s)
    if directory is None:
        return None
    manifest = check_bank(directory, s)
    key = cache_key(checkpoint, manifest, s)
    path = None if cache_dir is None else Path(cache_dir) / f"bank_{key}.npz"
    info = {"shards": directory, "split": manifest.get("split"), "key": key}
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as npz:
            return torch.from_numpy(npz["text_feat"]), {**info, "cached": True}
    feat = encode(bank_captions(directory, s.bank_size)).float().cpu()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, text_feat=feat.numpy())
        tmp.replace(path)
    return feat, {**info, "cached": False}
