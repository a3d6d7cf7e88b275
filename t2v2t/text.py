"""Caption choice and tokenization for the loader."""

from __future__ import annotations

from typing import Any

import torch

from t2v2t.seeding import rng_for, stable_int

SENTENCE_LEN = 32  # VindLU's max_txt_l for sentence datasets
PARAGRAPH_LEN = 64  # ... and for paragraph datasets (DiDeMo, ActivityNet)
_ID_MASK = (1 << 63) - 1  # video ids must fit a signed int64 tensor


def choose_caption(captions: list[str], seed: int, epoch: int, key: str) -> str:
    """One caption per video and epoch, from ``(seed, epoch, key)`` (never the worker)."""
    if not captions:
        raise ValueError(f"sample {key} has no captions")
    if len(captions) == 1:
        return captions[0]
    return captions[int(rng_for(seed, epoch, key, "caption").integers(len(captions)))]


def video_id(key: str) -> int:
    """A stable 63-bit integer per video key: VTC treats equal ids as positives."""
    return stable_int(key) & _ID_MASK


def tokenize(tokenizer: Any, texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` as int64 ``[B, max_len]`` (padded to the fixed length).

    Fixed-length padding keeps batch shapes constant across steps (no recompiles, stable memory).
    """
    enc = tokenizer(
        texts,
        padding="max_length",
        truncation=True,
        max_length=max_len,
        return_tensors="pt",
    )
    return enc["input_ids"].long(), enc["attention_mask"].long()
