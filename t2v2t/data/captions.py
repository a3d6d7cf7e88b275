"""Caption choice and tokenization for the loader."""

from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np
import torch

from t2v2t.recipes import SENTENCE_LEN  # noqa: F401  (the loader's default; one place)
from t2v2t.seeding import rng_for, stable_int

_ID_MASK = (1 << 63) - 1  # video ids must fit a signed int64 tensor


_PUNCT = re.compile(r"[,.'!?\"()*#:;~]")
_SPACES = re.compile(r"\s{2,}")


def pre_text(text: str, max_words: int | None = None) -> str:
    """VindLU's caption cleaning: lower case; drop ``, . ' ! ? " ( ) * # : ; ~``; ``-`` and
    ``/`` become spaces; ``<person>`` becomes ``person``; runs of whitespace collapse to one
    space; the ends are stripped; optionally only the first ``max_words`` words are kept."""
    text = _PUNCT.sub("", text.lower())
    text = text.replace("-", " ").replace("/", " ").replace("<person>", "person")
    text = _SPACES.sub(" ", text).rstrip("\n").strip(" ")
    if max_words:
        words = text.split(" ")
        if len(words) > max_words:
            text = " ".join(words[:max_words])
    return text


def choose_caption(captions: list[str], seed: int, epoch: int, key: str) -> str:
    """One caption per video and epoch, from ``(seed, epoch, key)`` (never the worker)."""
    if not captions:
        raise ValueError(f"sample {key} has no captions")
    if len(captions) == 1:
        return captions[0]
    return captions[int(rng_for(seed, epoch, key, "caption").integers(len(captions)))]


CAPTIONS_PER_EPOCH = ("all", "one")  # data.captions_per_epoch (docs/training.md)


def caption_in_pass(captions: list[str], seed: int, epoch: int, key: str, j: int) -> str:
    """A per-caption epoch's caption of this video in pass ``j``: the ``j``-th of its captions
    in an order shuffled by ``(seed, epoch, key)``, so the passes of one epoch visit each of its
    captions once (:func:`t2v2t.data.plan.train_plan` with caption counts)."""
    if not 0 <= j < len(captions):
        raise ValueError(
            f"sample {key} has {len(captions)} captions but is planned for caption {j + 1} "
            "(the manifest's caption counts disagree with the shard: rebuild it)"
        )
    if len(captions) == 1:
        return captions[0]
    return captions[int(rng_for(seed, epoch, key, "captions").permutation(len(captions))[j])]


def video_id(key: str) -> int:
    """A stable 63-bit integer per video key: VTC treats equal ids as positives."""
    return stable_int(key) & _ID_MASK


_BACKENDS: dict[tuple[int, int], tuple[Any, Any]] = {}  # (id(tokenizer), max_len) -> (it, rust)


def _rust_tokenizer(tokenizer: Any, max_len: int) -> Any | None:
    """A private copy of a fast tokenizer's Rust backend, set to truncate and pad to ``max_len``.

    Calling the backend directly skips ``transformers``' per-call Python (about half the cost
    of tokenising a batch of captions); the output is identical (tested).
    """
    if not getattr(tokenizer, "is_fast", False) or tokenizer.pad_token_id is None:
        return None
    cache_key = (id(tokenizer), max_len)
    hit = _BACKENDS.get(cache_key)
    if hit is None or hit[0] is not tokenizer:
        rust = copy.deepcopy(tokenizer.backend_tokenizer)
        rust.enable_truncation(max_len)
        rust.enable_padding(length=max_len, pad_id=tokenizer.pad_token_id,
                            pad_token=tokenizer.pad_token)  # fmt: skip
        hit = _BACKENDS[cache_key] = (tokenizer, rust)
    return hit[1]


def tokenize(tokenizer: Any, texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` as int64 ``[B, max_len]`` (padded to the fixed length).

    Fixed-length padding keeps batch shapes constant across steps (no recompiles, stable memory).
    """
    rust = _rust_tokenizer(tokenizer, max_len)
    if rust is not None:
        encs = rust.encode_batch_fast(texts)
        # Through numpy: torch.tensor() of nested lists costs ~4x more (measured).
        ids = np.array([e.ids for e in encs], dtype=np.int64).reshape(len(encs), max_len)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64).reshape(ids.shape)
        return torch.from_numpy(ids), torch.from_numpy(mask)
    enc = tokenizer(
        texts,
        padding="max_length",
        truncation=True,
        max_length=max_len,
        return_tensors="pt",
    )
    return enc["input_ids"].long(), enc["attention_mask"].long()
