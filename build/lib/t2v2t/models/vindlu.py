"""The VindLU model: video encoder, text encoder, fusion encoder and the heads.

The model computes features and head outputs only; the training losses, their weights and the
sampling they need (hard negatives, MLM masks, reversed videos) belong to
:class:`t2v2t.training.objective.Objective`, which calls the methods below.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertForMaskedLM

from t2v2t.data.augment import normalize
from t2v2t.models.config import ModelConfig
from t2v2t.models.text import FusionEncoder, TextEncoder
from t2v2t.models.vision import VideoEncoder


def is_pretrained_text(name: str) -> bool:
    """Parameter names holding pre-trained BERT weights: the text encoder and the fusion layers'
    own BERT parts (their cross-attention is new). The optimiser's ``text_lr_scale`` uses it."""
    return name.startswith("text.") or (name.startswith("fusion.") and "crossattention" not in name)


def is_temporal(name: str) -> bool:
    """Parameter names of the video encoder's temporal attention and temporal position embedding:
    new, zero-initialised, the only parts that see frame order (``temporal_lr_scale``)."""
    return name.startswith("vision.temporal")


class VindLU(nn.Module):
    def __init__(self, config: ModelConfig, vision: VideoEncoder, bert: BertForMaskedLM) -> None:
        super().__init__()
        self.config = config
        layers = list(bert.bert.encoder.layer)
        if not 0 < config.fusion_layer < len(layers):
            raise ValueError(
                f"fusion_layer={config.fusion_layer} must be in 1..{len(layers) - 1} "
                f"(the text model has {len(layers)} layers)"
            )
        width, vw = bert.config.hidden_size, vision.width
        self.vision = vision
        # New LayerNorm on the tokens the fusion encoder reads (VindLU's vision_layernorm).
        self.vision_ln = nn.LayerNorm(vw, eps=1e-12)
        self.text = TextEncoder(bert.bert.embeddings, layers[: config.fusion_layer])
        self.fusion = FusionEncoder(layers[config.fusion_layer :], vw)
        # MLM head; its decoder shares the word-embedding matrix (BERT's weight tying).
        bert.cls.predictions.decoder.weight = bert.bert.embeddings.word_embeddings.weight
        self.mlm_head = bert.cls
        self.vision_proj = nn.Linear(vw, config.embed_dim)
        self.text_proj = nn.Linear(width, config.embed_dim)
        self.itm_head = nn.Linear(width, 2)
        self.temp = nn.Parameter(torch.tensor(float(config.temp_init)))
        self.set_grad_checkpointing(config.grad_checkpointing)

    # ---- switches -------------------------------------------------------------------------
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.config.grad_checkpointing = enable
        for part in (self.vision, self.text, self.fusion):
            part.grad_checkpointing = enable

    def temperature(self) -> torch.Tensor:
        return self.temp.clamp(self.config.temp_min, self.config.temp_max)

    @torch.no_grad()
    def clamp_temperature_(self) -> None:
        """Clamp the parameter itself before a training step, as VindLU does, so that it
        cannot drift beyond the range where :meth:`temperature` stops passing gradients."""
        self.temp.clamp_(self.config.temp_min, self.config.temp_max)

    # ---- encoders -------------------------------------------------------------------------
    def _float_frames(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dtype == torch.uint8:  # convenience: the loaders' own normalisation
            return normalize(frames, self.config.mean, self.config.std)
        return frames

    def encode_video(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames [B, T, 3, H, W] -> (video_embeds [B, T*(N+1), Dv], video_feat [B, T, E])."""
        tokens, pooled = self.vision(self._float_frames(frames))
        video_embeds = self.vision_ln(tokens.flatten(1, 2))
        video_feat = F.normalize(self.vision_proj(pooled), dim=-1)
        return video_embeds, video_feat

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (text_embeds [B, L, D] from the text-only layers, text_feat [B, E] from CLS or the
        mean of real tokens, per ``config.text_pool``)."""
        text_embeds = self.text_tokens(input_ids, attention_mask)
        if self.config.text_pool == "mean":
            mask = attention_mask.unsqueeze(-1).to(text_embeds.dtype)
            pooled = (text_embeds * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        else:
            pooled = text_embeds[:, 0]
        text_feat = F.normalize(self.text_proj(pooled), dim=-1)
        return text_embeds, text_feat

    def text_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, L, D]: the text-only layers' token states (what the fusion layers read)."""
        return self.text(input_ids, attention_mask)

    def similarity(self, text_feat: torch.Tensor, video_feat: torch.Tensor) -> torch.Tensor:
        """[Nt, Nv]: mean over frames of the cosine similarities, divided by the temperature.
        The mean of per-frame cosines equals the cosine with the frame-mean feature."""
        with torch.autocast(text_feat.device.type, enabled=False):  # fp32 under bf16 autocast
            return text_feat.float() @ video_feat.float().mean(1).t() / self.temperature()

    def cross_encode(
        self,
        text_tokens: torch.Tensor,
        text_mask: torch.Tensor,
        video_tokens: torch.Tensor,
        video_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Text tokens [B, L, D] through the fusion layers, row i cross-attending to video i's
        tokens (or video video_index[i]'s) -> fused tokens [B, L, D]."""
        return self.fusion(text_tokens, text_mask, video_tokens, video_index)

    def itm_logits(self, fused: torch.Tensor) -> torch.Tensor:
        """[B, 2] match logits of fused pairs: the ITM head on each pair's [CLS] token."""
        return self.itm_head(fused[:, 0])

    def vtm_logits(
        self,
        text_embeds: torch.Tensor,
        text_mask: torch.Tensor,
        video_embeds: torch.Tensor,
        video_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[B]: the class-1 ("match") logit, the re-ranking score. Row i pairs text i with
        video i; with video_index [B], video_embeds holds distinct videos and row i pairs text i
        with video video_index[i] (each video's keys/values are then projected only once)."""
        fused = self.cross_encode(text_embeds, text_mask, video_embeds, video_index)
        return self.itm_logits(fused)[:, 1]

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., V] vocabulary logits of fused token states (the MLM head, tied embeddings)."""
        return self.mlm_head(hidden)

    # ---- reporting ------------------------------------------------------------------------
    def param_counts(self) -> dict[str, int]:
        """Parameters per part (shared tensors counted once) and the total."""
        parts = {
            "vision": [self.vision.backbone],
            "temporal": [self.vision.temporal, [self.vision.temporal_pos]],
            "text": [self.text],
            "fusion": [self.fusion],
            "heads": [
                self.vision_ln,
                self.vision_proj,
                self.text_proj,
                self.itm_head,
                self.mlm_head,
                [self.temp],
            ],
        }
        seen: set[int] = set()
        counts: dict[str, int] = {}
        for name, mods in parts.items():
            n = 0
            for m in mods:
                params = m.parameters() if isinstance(m, nn.Module) else m
                for p in params:
                    if id(p) not in seen:
                        seen.add(id(p))
                        n += p.numel()
            counts[name] = n
        counts["total"] = sum(counts.values())
        return counts
