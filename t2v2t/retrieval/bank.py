"""The caption bank of the inductive post-hoc methods: training captions, never the reported split.

``eval.bank=train`` is the dataset's train shard folder beside the evaluation shards
(``<root>/<dataset>/train_<T>f``); any other value is a shard folder. A bank whose manifest says
it holds the split being reported (or that is the evaluation folder itself) is refused in one
line. At most ``eval.bank_size`` captions, a seeded sample beyond that. Their text features are
cached next to the checkpoint's eval outputs, keyed by checkpoint + bank shards + settings
(docs/evaluation.md, "Which fusion?").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from t2v2t import storage
from t2v2t.data.eval_loader import EvalShards, eval_texts, open_eval_shards
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


def first_videos(shards: EvalShards, count: int) -> EvalShards:
    """The first shards of a folder holding at least ``count`` videos."""
    infos, total = [], 0
    for info in shards.infos:
        if total >= count:
            break
        infos.append(info)
        total += info.samples
    return dataclasses.replace(shards, infos=infos)


def _cached(path: Path | None, build: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, bool]:
    """(features, read from the cache?): ``build()`` once, then the npz at ``path``."""
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as npz:
            return torch.from_numpy(npz["feat"]), True
    feat = build().float().cpu()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, feat=feat.numpy())
        tmp.replace(path)
    return feat, False


def bank_features(
    s: EvalConfig,
    checkpoint: str | None,
    cache_dir: str | Path | None,
    encode: Callable[[list[str]], torch.Tensor],
    encode_videos: Callable[[EvalShards], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, dict] | None:
    """(bank caption features [n, E], bank video features [m, T, E] or None, what the result
    records) or None without a bank. Encoded once per checkpoint + bank, then read from
    ``cache_dir`` while neither changes; videos only with ``eval.bank_videos`` > 0 (dbnorm)."""
    directory = bank_dir(s)
    if directory is None:
        return None
    manifest = check_bank(directory, s)
    key = cache_key(checkpoint, manifest, s)
    where = None if cache_dir is None else Path(cache_dir)
    texts, hit = _cached(
        None if where is None else where / f"bank_{key}.npz",
        lambda: encode(bank_captions(directory, s.bank_size)),
    )
    info = {"shards": directory, "split": manifest.get("split"), "key": key, "cached": hit}
    videos = None
    if s.bank_videos > 0 and encode_videos is not None:
        subset = first_videos(open_eval_shards(directory), s.bank_videos)
        videos, _ = _cached(
            None if where is None else where / f"bank_videos_{key}_{s.bank_videos}.npz",
            lambda: encode_videos(subset),
        )
        info["videos"] = int(videos.shape[0])
    return texts, videos, info
