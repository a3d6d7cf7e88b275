"""VindLU's training objective over a model's encoders and heads (open_clip's ``task`` style).

The model computes features (encode video, encode text, cross-encode pairs, the ITM and MLM
heads); this module owns everything else a training step needs: which losses count and how much
(:class:`LossWeights`), the time-reversed negatives, the VTM hard-negative sampling and the MLM
masking. A batch goes model -> objective once; the formulas themselves are the plain functions
of :mod:`t2v2t.training.losses`. The objective is an ``nn.Module`` holding the model, so that
DistributedDataParallel wraps it whole (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from t2v2t.dist import VTC_GATHERS
from t2v2t.training.losses import (
    LossWeights,
    mask_tokens,
    mlm_loss,
    positive_mask,
    sample_hard_negatives,
    vtc_loss,
    vtm_loss,
)


class Objective(nn.Module):
    """VTC + VTM (hard negatives) + MLM of one batch, weighted; ``reverse``: the share of each
    batch's videos also encoded with their frames in reverse order, as negatives of their own
    captions in VTC (text->video) and VTM (0 = off, as in VindLU); ``vtc_gather``: how VTC's
    features gathered across ranks send their gradient back (``local``, VindLU's, or
    ``global``; docs/training.md)."""

    def __init__(
        self,
        model: nn.Module,
        weights: LossWeights | None = None,
        reverse: float = 0.0,
        vtc_gather: str = "local",
    ) -> None:
        super().__init__()
        if not 0 <= reverse <= 1:
            raise ValueError(f"reverse: a share of the batch in [0, 1], got {reverse}")
        if vtc_gather not in VTC_GATHERS:
            raise ValueError(f"vtc_gather: {vtc_gather!r} is not one of {', '.join(VTC_GATHERS)}")
        self.model = model
        self.weights = weights or LossWeights()
        self.reverse = float(reverse)
        self.vtc_gather = vtc_gather

    @classmethod
    def from_config(cls, model: nn.Module, loss: Any = None) -> Objective:
        """From the config's ``loss`` section (weights ``vtc``/``vtm``/``mlm``, the ``reverse``
        share, ``vtc_gather``), a mapping with those keys, or None (every loss at 1, no
        reversal, VindLU's gather)."""
        if isinstance(loss, Mapping):
            loss = dict(loss)
            reverse = loss.pop("reverse", 0.0)
            gather = loss.pop("vtc_gather", "local")
        else:
            reverse = getattr(loss, "reverse", 0.0)
            gather = getattr(loss, "vtc_gather", "local")
        return cls(model, LossWeights.from_any(loss), float(reverse), gather)

    def reversed_count(self, batch: int, num_frames: int) -> int:
        """How many of a batch's videos get a time-reversed negative (none for still images,
        none when neither VTC nor VTM counts)."""
        w = self.weights
        if num_frames < 2 or self.reverse <= 0 or not (w.vtc or w.vtm):
            return 0
        return min(batch, max(1, round(self.reverse * batch)))

    def forward(
        self,
        frames: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        video_ids: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """All enabled losses for one batch: {"loss", "vtc", "vtm", "mlm"} (parts detached)."""
        m, w = self.model, self.weights
        if m.training:
            m.clamp_temperature_()
        b = frames.shape[0]
        n_rev = self.reversed_count(b, frames.shape[1])
        if n_rev:
            # The first n_rev videos again with their frames in reverse order, in the same
            # encoder batch: order-blind features score a video and its reversal equally.
            frames = torch.cat([frames, frames[:n_rev].flip(1)])
        video_embeds, video_feat = m.encode_video(frames)
        text_embeds, text_feat = m.encode_text(input_ids, attention_mask)
        temp = m.temperature()
        zero = video_feat.new_zeros((), dtype=torch.float32)
        parts = {"vtc": zero, "vtm": zero, "mlm": zero}
        video_mean = video_feat.mean(1)
        if w.vtc:
            reversed_mean = video_mean[b:] if n_rev else None
            parts["vtc"] = vtc_loss(
                text_feat,
                video_mean[:b],
                video_ids,
                temp,
                negative_videos=reversed_mean,
                gather_grad=self.vtc_gather,
            )
        if w.vtm:
            parts["vtm"] = self.vtm(
                text_embeds, attention_mask, video_embeds, text_feat, video_mean, video_ids, temp
            )
        if w.mlm:
            parts["mlm"] = self.mlm(input_ids, attention_mask, video_embeds[:b])
        total = w.vtc * parts["vtc"] + w.vtm * parts["vtm"] + w.mlm * parts["mlm"]
        return {"loss": total, **{k: v.detach() for k, v in parts.items()}}

    def vtm(
        self,
        text_embeds: torch.Tensor,
        text_mask: torch.Tensor,
        video_embeds: torch.Tensor,
        text_feat: torch.Tensor,
        video_mean: torch.Tensor,
        video_ids: torch.Tensor,
        temp: torch.Tensor,
    ) -> torch.Tensor:
        """Positives + one hard negative video per text and one hard negative text per video
        (local batch, sampled from the VTC softmax, same-video entries excluded). Videos past
        the batch size are time reversals of the first ones: each is one more negative of its
        original's caption."""
        b = text_embeds.shape[0]
        neg_video, ok_t, neg_text, ok_v = hard_negatives(text_feat, video_mean[:b], video_ids, temp)
        rows = torch.arange(b, device=text_embeds.device)
        n_rev = video_embeds.shape[0] - b
        t_idx = torch.cat([rows, rows[ok_t], neg_text[ok_v], rows[:n_rev]])
        v_idx = torch.cat([rows, neg_video[ok_t], rows[ok_v], b + rows[:n_rev]])
        fused = self.model.cross_encode(text_embeds[t_idx], text_mask[t_idx], video_embeds, v_idx)
        logits = self.model.itm_logits(fused)
        labels = torch.zeros(len(t_idx), dtype=torch.long, device=logits.device)
        labels[:b] = 1
        return vtm_loss(logits, labels)

    def mlm(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, video_embeds: torch.Tensor
    ) -> torch.Tensor:
        """Masked tokens predicted through the text and fusion encoders with the video."""
        m = self.model
        c = m.config
        masked, labels = mask_tokens(
            input_ids,
            attention_mask,
            mask_prob=c.mlm_prob,
            mask_token_id=c.mask_token_id,
            vocab_size=c.vocab_size,
            special_ids=mlm_never_masked(c),
        )
        hidden = m.cross_encode(m.text_tokens(masked, attention_mask), attention_mask, video_embeds)
        picked = labels != -100
        if not picked.any():
            return hidden.sum() * 0.0  # keeps the graph (DDP) when nothing was masked
        # The vocabulary projection only for the picked positions (about half at p=0.5).
        return mlm_loss(m.mlm_logits(hidden[picked]), labels[picked])


def mlm_never_masked(config: Any) -> tuple[int, int]:
    """The tokens MLM never picks: padding and [CLS], as VindLU's MLMLoss.mask ([SEP] and the
    other special tokens of a caption can be masked)."""
    return (int(config.pad_token_id), int(config.cls_token_id))


def hard_negatives(
    text_feat: torch.Tensor, video_mean: torch.Tensor, video_ids: torch.Tensor, temp: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(negative video per text, its validity, negative text per video, its validity), drawn
    from the fp32 VTC similarities with every same-video entry excluded."""
    with torch.no_grad(), torch.autocast(text_feat.device.type, enabled=False):
        sim = text_feat.float() @ video_mean.float().t() / temp
        pos = positive_mask(video_ids, video_ids)
        neg_video, ok_t = sample_hard_negatives(sim, pos)
        neg_text, ok_v = sample_hard_negatives(sim.t(), pos)
    return neg_video, ok_t, neg_text, ok_v
