"""VindLU's losses as plain functions of tensors: VTC, VTM and its hard negatives, MLM masking.

:class:`t2v2t.training.objective.Objective` runs a batch through the model and calls these; each
can be checked against a hand-computed reference. Weights of 0 disable a loss (`LossWeights`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from t2v2t import dist


@dataclass(frozen=True)
class LossWeights:
    """How much each loss counts in the total; 0 leaves a loss out (and its compute)."""

    vtc: float = 1.0
    vtm: float = 1.0
    mlm: float = 1.0

    KEYS = ("vtc", "vtm", "mlm")

    @classmethod
    def from_any(cls, w: Any) -> LossWeights:
        """None (all 1), a mapping, or any object with vtc/vtm/mlm attributes."""
        if w is None:
            return cls()
        if isinstance(w, LossWeights):
            return w
        if isinstance(w, Mapping):
            unknown = sorted(set(w) - set(cls.KEYS))
            if unknown:
                raise ValueError(f"unknown loss weight keys {unknown}; use {', '.join(cls.KEYS)}")
            return cls(**{k: float(v) for k, v in w.items()})
        return cls(**{k: float(getattr(w, k, 0.0)) for k in cls.KEYS})


def positive_mask(text_ids: torch.Tensor, video_ids: torch.Tensor) -> torch.Tensor:
    """[Nt, Nv] bool: True where the text and the video are the same video (id equality)."""
    return text_ids.view(-1, 1) == video_ids.view(1, -1)


def vtc_loss(
    text_feat: torch.Tensor,
    video_feat: torch.Tensor,
    video_ids: torch.Tensor,
    temp: torch.Tensor | float,
    gather: bool = True,
    negative_videos: torch.Tensor | None = None,
    gather_grad: str = "global",
) -> torch.Tensor:
    """Symmetric InfoNCE over the global batch (VindLU's vtc_loss).

    text_feat [B, E] and video_feat [B, E] (the frame mean of normalised per-frame features, so
    the dot product is the mean of per-frame cosines) belong to the same samples; video_ids [B].
    Targets spread evenly over every column with the same video id (soft labels).
    ``negative_videos`` [R, E] are extra text->video columns that match no text (time-reversed
    videos); they take no part in the video->text direction. ``gather_grad``: how the gathered
    features' gradient returns to this rank (``local``: VindLU's, ``global``: summed over ranks;
    :data:`t2v2t.dist.VTC_GATHERS`).
    """
    if gather:
        text_feat = dist.all_gather_with_grad(text_feat, gather_grad)
        video_feat = dist.all_gather_with_grad(video_feat, gather_grad)
        video_ids = dist.all_gather_tensor(video_ids)
        if negative_videos is not None:
            negative_videos = dist.all_gather_with_grad(negative_videos, gather_grad)
    # Similarities and softmax in fp32 even under bf16 autocast (temperature as low as 0.001).
    with torch.autocast(text_feat.device.type, enabled=False):
        dt = torch.promote_types(text_feat.dtype, torch.float32)
        sim_t2v = text_feat.to(dt) @ video_feat.to(dt).t() / temp
        sim_extra = None
        if negative_videos is not None and len(negative_videos):
            sim_extra = text_feat.to(dt) @ negative_videos.to(dt).t() / temp
    with torch.no_grad():
        pos = positive_mask(video_ids, video_ids).to(sim_t2v.dtype)
        targets = pos / pos.sum(1, keepdim=True)
    loss_v2t = -(F.log_softmax(sim_t2v.t(), dim=1) * targets).sum(1).mean()
    if sim_extra is not None:
        sim_t2v = torch.cat([sim_t2v, sim_extra], dim=1)
        targets = F.pad(targets, (0, sim_extra.shape[1]))
    loss_t2v = -(F.log_softmax(sim_t2v, dim=1) * targets).sum(1).mean()
    return (loss_t2v + loss_v2t) / 2


def sample_hard_negatives(
    sim: torch.Tensor, positives: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One negative column per row, drawn from softmax(sim) with positives removed.

    Returns (indices [N], valid [N]); a row whose every column is a positive has no negative
    (valid False, index 0). Masking with -inf before the softmax is the same distribution as
    VindLU's zeroing-and-renormalising, without underflow when the positive dominates.
    """
    with torch.no_grad():
        logits = sim.float().masked_fill(positives, float("-inf"))
        valid = ~positives.all(dim=1)
        probs = torch.softmax(logits, dim=1)
        probs[~valid] = 1.0  # placeholder row so multinomial accepts it; never used
        idx = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        return idx, valid


def vtm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary match cross-entropy; class 1 = the text matches the video."""
    return F.cross_entropy(logits.float(), labels)


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    mask_prob: float,
    mask_token_id: int,
    vocab_size: int,
    special_ids: Iterable[int],
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: pick `mask_prob` of the real tokens (never special or padding ones); of
    those 80% become [MASK], 10% a random token, 10% stay. Labels are -100 where not picked."""
    dev = input_ids.device

    def rand(shape: torch.Size) -> torch.Tensor:
        return torch.rand(shape, generator=generator, device=generator.device if generator else dev)

    maskable = attention_mask.bool() & ~torch.isin(
        input_ids, torch.tensor(list(special_ids), device=dev)
    )
    picked = (rand(input_ids.shape).to(dev) < mask_prob) & maskable
    labels = input_ids.masked_fill(~picked, -100)
    r = rand(input_ids.shape).to(dev)
    to_mask = picked & (r < 0.8)
    to_random = picked & (r >= 0.8) & (r < 0.9)
    kwargs = {"generator": generator, "device": generator.device if generator else dev}
    random_tokens = torch.randint(vocab_size, input_ids.shape, **kwargs).to(dev)
    masked = input_ids.masked_fill(to_mask, mask_token_id)
    masked = torch.where(to_random, random_tokens, masked)
    return masked, labels


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the picked positions (logits [K, V] and labels [K] already selected)."""
    return F.cross_entropy(logits.float(), labels)
