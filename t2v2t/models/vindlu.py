"""The VindLU model: video encoder, text encoder, fusion encoder and the heads."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertForMaskedLM

from t2v2t.data.augment import normalize
from t2v2t.models.config import ModelConfig
from t2v2t.models.text import FusionEncoder, TextEncoder
from t2v2t.models.vision import VideoEncoder
from t2v2t.training import losses


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
        text_embeds = self.text(input_ids, attention_mask)
        if self.config.text_pool == "mean":
            mask = attention_mask.unsqueeze(-1).to(text_embeds.dtype)
            pooled = (text_embeds * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        else:
            pooled = text_embeds[:, 0]
        text_feat = F.normalize(self.text_proj(pooled), dim=-1)
        return text_embeds, text_feat

    def similarity(self, text_feat: torch.Tensor, video_feat: torch.Tensor) -> torch.Tensor:
        """[Nt, Nv]: mean over frames of the cosine similarities, divided by the temperature.
        The mean of per-frame cosines equals the cosine with the frame-mean feature."""
        with torch.autocast(text_feat.device.type, enabled=False):  # fp32 under bf16 autocast
            return text_feat.float() @ video_feat.float().mean(1).t() / self.temperature()

    def cross_encode(
        self,
        text_embeds: torch.Tensor,
        text_mask: torch.Tensor,
        video_embeds: torch.Tensor,
        video_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Text tokens [B, L, D] through the fusion layers, cross-attending to video i (or
        video_index[i]) -> fused tokens [B, L, D]."""
        return self.fusion(text_embeds, text_mask, video_embeds, video_index)

    def itm_logits(
        self,
        text_embeds: torch.Tensor,
        text_mask: torch.Tensor,
        video_embeds: torch.Tensor,
        video_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[B, 2] match logits of the pairs (text i, video i), or (text i, video_index[i])."""
        fused = self.cross_encode(text_embeds, text_mask, video_embeds, video_index)
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
        return self.itm_logits(text_embeds, text_mask, video_embeds, video_index)[:, 1]

    # ---- training forward -----------------------------------------------------------------
    def forward(
        self,
        frames: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        video_ids: torch.Tensor,
        weights: Any = None,
    ) -> dict[str, torch.Tensor]:
        """All enabled losses for one batch: {"loss", "vtc", "vtm", "mlm"} (parts detached)."""
        w = losses.LossWeights.from_any(weights)
        if self.training:
            with torch.no_grad():  # VindLU clamps the parameter itself so it cannot drift away
                self.temp.clamp_(self.config.temp_min, self.config.temp_max)
        b = frames.shape[0]
        n_rev = w.reversed_count(b, frames.shape[1]) if (w.vtc or w.vtm) else 0
        if n_rev:
            # The first n_rev videos again with their frames in reverse order, in the same
            # encoder batch: order-blind features score a video and its reversal equally.
            frames = torch.cat([frames, frames[:n_rev].flip(1)])
        video_embeds, video_feat = self.encode_video(frames)
        text_embeds, text_feat = self.encode_text(input_ids, attention_mask)
        temp = self.temperature()
        zero = video_feat.new_zeros((), dtype=torch.float32)
        parts = {"vtc": zero, "vtm": zero, "mlm": zero}
        video_mean = video_feat.mean(1)
        reversed_mean = video_mean[b:] if n_rev else None
        if w.vtc:
            parts["vtc"] = losses.vtc_loss(
                text_feat, video_mean[:b], video_ids, temp, negative_videos=reversed_mean
            )
        if w.vtm:
            parts["vtm"] = self._vtm(
                text_embeds, attention_mask, video_embeds, text_feat, video_mean, video_ids, temp
            )
        video_embeds = video_embeds[:b]
        if w.mlm:
            parts["mlm"] = self._mlm(input_ids, attention_mask, video_embeds)
        total = w.vtc * parts["vtc"] + w.vtm * parts["vtm"] + w.mlm * parts["mlm"]
        return {"loss": total, **{k: v.detach() for k, v in parts.items()}}

    def _vtm(self, text_embeds, text_mask, video_embeds, text_feat, video_mean, ids, temp):
        """Positives + one hard negative video per text and one hard negative text per video
        (local batch, sampled from the VTC softmax, same-video entries excluded). Videos past
        the batch size are time reversals of the first ones: each is one more negative of its
        original's caption."""
        b = text_embeds.shape[0]
        with torch.no_grad(), torch.autocast(text_feat.device.type, enabled=False):
            sim = text_feat.float() @ video_mean[:b].float().t() / temp
            pos = losses.positive_mask(ids, ids)
            neg_video, ok_t = losses.sample_hard_negatives(sim, pos)
            neg_text, ok_v = losses.sample_hard_negatives(sim.t(), pos)
        rows = torch.arange(b, device=text_embeds.device)
        t_rows, v_rows = rows[ok_t], rows[ok_v]
        n_rev = video_embeds.shape[0] - b
        t_idx = torch.cat([rows, t_rows, neg_text[ok_v], rows[:n_rev]])
        v_idx = torch.cat([rows, neg_video[ok_t], v_rows, b + rows[:n_rev]])
        logits = self.itm_logits(text_embeds[t_idx], text_mask[t_idx], video_embeds, v_idx)
        labels = torch.zeros(len(t_idx), dtype=torch.long, device=logits.device)
        labels[:b] = 1
        return losses.vtm_loss(logits, labels)

    def _mlm(self, input_ids, attention_mask, video_embeds):
        """Masked tokens predicted through the text and fusion encoders with the video."""
        c = self.config
        masked, labels = losses.mask_tokens(
            input_ids,
            attention_mask,
            mask_prob=c.mlm_prob,
            mask_token_id=c.mask_token_id,
            vocab_size=c.vocab_size,
            special_ids=c.special_token_ids,
        )
        hidden = self.cross_encode(self.text(masked, attention_mask), attention_mask, video_embeds)
        picked = labels != -100
        if not picked.any():
            return hidden.sum() * 0.0  # keeps the graph (DDP) when nothing was masked
        # The vocabulary projection only for the picked positions (about half at p=0.5).
        return losses.mlm_loss(self.mlm_head(hidden[picked]), labels[picked])

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
