"""Evaluation preprocessing: the project's own, or VindLU's (docs/evaluation.md,
"Reproduce the paper's tables from VindLU's checkpoints").

``project``: frames short side to the image size then centre crop (bilinear), captions as
stored, stage-1 similarity divided by the learned temperature, bf16 autocast on GPUs.
``vindlu``: what VindLU's evaluation does: every frame squashed to ``size`` x ``size`` with a
bicubic resize (aspect ratio not kept), captions cleaned by :func:`pre_text`, stage-1 ranks by
the raw mean of per-frame cosines (no temperature), fp16 autocast on GPUs.
"""

from __future__ import annotations

import contextlib
from contextlib import nullcontext
from typing import Any

import torch

from t2v2t.data.augment import squash_bicubic
from t2v2t.data.captions import pre_text

PREPROCESS = ("project", "vindlu")


def clean_texts(texts: list[str], preprocess: str) -> list[str]:
    check_preprocess(preprocess)
    return [pre_text(t) for t in texts] if preprocess == "vindlu" else list(texts)


def check_preprocess(preprocess: str) -> str:
    if preprocess not in PREPROCESS:
        raise ValueError(f"eval.preprocess={preprocess!r}: use one of {', '.join(PREPROCESS)}")
    return preprocess


def default_preprocess(source: str, extra: dict[str, Any] | None = None) -> str:
    """``vindlu`` for a VindLU checkpoint (or a folder exported from one), else ``project``."""
    recorded = (extra or {}).get("preprocess")
    if recorded in PREPROCESS:
        return str(recorded)
    return "vindlu" if source == "vindlu" else "project"


def raw_similarity(text_feat: torch.Tensor, video_feat: torch.Tensor) -> torch.Tensor:
    """[Nt, Nv]: the mean over frames of per-frame cosines (features are unit vectors), with no
    temperature: the score VindLU's evaluation ranks by."""
    with torch.autocast(text_feat.device.type, enabled=False):
        return text_feat.float() @ video_feat.float().mean(1).t()


def autocast_for(
    device: torch.device, preprocess: str
) -> torch.autocast | contextlib.AbstractContextManager[None]:
    """fp16 autocast on CUDA for VindLU (its evaluation's ``fp16``), bf16 for the project."""
    if device.type != "cuda":
        return nullcontext()
    dtype = torch.float16 if preprocess == "vindlu" else torch.bfloat16
    return torch.autocast("cuda", dtype=dtype)


def amp_dtype(preprocess: str) -> torch.dtype:
    return torch.float16 if preprocess == "vindlu" else torch.bfloat16


__all__ = [
    "PREPROCESS",
    "amp_dtype",
    "autocast_for",
    "check_preprocess",
    "clean_texts",
    "default_preprocess",
    "pre_text",
    "raw_similarity",
    "squash_bicubic",
]
