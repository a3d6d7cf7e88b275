"""Text and fusion encoders built from a transformers BERT, split at `fusion_layer`.

The BERT layers' own modules (and so their pre-trained weights and state_dict names) are reused;
only the forward is ours, so attention always goes through `scaled_dot_product_attention` and
does not depend on transformers' internal dispatch. Fusion layers add a new cross-attention from
text tokens to the video tokens between BERT's self-attention and feed-forward (ALBEF/VindLU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.models.bert.modeling_bert import BertLayer


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    b, n, d = x.shape
    return x.view(b, n, num_heads, d // num_heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, h, n, hd = x.shape
    return x.transpose(1, 2).reshape(b, n, h * hd)


class BertBlock(nn.Module):
    """One BERT layer (self-attention + FFN) using the modules of a transformers BertLayer."""

    def __init__(self, layer: BertLayer) -> None:
        super().__init__()
        self.attention = layer.attention
        self.intermediate = layer.intermediate
        self.output = layer.output
        self.num_heads = layer.attention.self.num_attention_heads

    def self_attention(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        att = self.attention.self
        q, k, v = (_heads(lin(x), self.num_heads) for lin in (att.query, att.key, att.value))
        p = att.dropout.p if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.attention.output(_merge(y), x)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.intermediate(x), x)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.feed_forward(self.self_attention(x, mask))


class CrossAttention(nn.Module):
    """Text queries attend to video tokens of another width (BERT's crossattention layout)."""

    def __init__(self, dim: int, kv_dim: int, num_heads: int, dropout: float, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.attn_dropout = nn.Dropout(dropout)  # its p is read by SDPA (settable like BERT's)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(kv_dim, dim)
        self.value = nn.Linear(kv_dim, dim)
        self.dense = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.LayerNorm = nn.LayerNorm(dim, eps=eps)
        for lin in (self.query, self.key, self.value, self.dense):
            nn.init.normal_(lin.weight, std=0.02)  # BERT's initializer_range
            nn.init.zeros_(lin.bias)

    def forward(
        self, x: torch.Tensor, kv: torch.Tensor, kv_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """kv_index [B] (optional): row i attends to kv[kv_index[i]]. Keys and values are then
        projected once per distinct video, not once per pair (most of the re-ranking cost)."""
        q = _heads(self.query(x), self.num_heads)
        k, v = _heads(self.key(kv), self.num_heads), _heads(self.value(kv), self.num_heads)
        if kv_index is not None:
            k, v = k[kv_index], v[kv_index]
        p = self.attn_dropout.p if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.LayerNorm(self.dropout(self.dense(_merge(y))) + x)


class FusionBlock(BertBlock):
    """BERT layer with cross-attention to the video inserted after self-attention."""

    def __init__(self, layer: BertLayer, video_width: int) -> None:
        super().__init__(layer)
        cfg = layer.attention.self.config
        self.crossattention = CrossAttention(
            cfg.hidden_size,
            video_width,
            cfg.num_attention_heads,
            cfg.attention_probs_dropout_prob,
            cfg.layer_norm_eps,
        )

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        video: torch.Tensor,
        video_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.self_attention(x, mask)
        return self.feed_forward(self.crossattention(x, video, video_index))


def attention_bias(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, L] 1/0 mask -> boolean [B, 1, 1, L] for SDPA (True = may attend)."""
    return attention_mask.bool()[:, None, None, :]


def _run(blocks: nn.ModuleList, x: torch.Tensor, use_ckpt: bool, *args: torch.Tensor | None):
    for blk in blocks:
        if use_ckpt:
            x = checkpoint(blk, x, *args, use_reentrant=False)
        else:
            x = blk(x, *args)
    return x


class TextEncoder(nn.Module):
    """BERT embeddings + layers [0, fusion_layer): text alone."""

    def __init__(self, embeddings: nn.Module, layers: list[BertLayer]) -> None:
        super().__init__()
        self.embeddings = embeddings
        self.layers = nn.ModuleList(BertBlock(layer) for layer in layers)
        self.grad_checkpointing = False

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(input_ids=input_ids)
        ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        return _run(self.layers, x, ckpt, attention_bias(attention_mask))


class FusionEncoder(nn.Module):
    """BERT layers [fusion_layer, end) with cross-attention to all frames' tokens."""

    def __init__(self, layers: list[BertLayer], video_width: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(FusionBlock(layer, video_width) for layer in layers)
        self.grad_checkpointing = False

    def forward(
        self,
        text_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        video_embeds: torch.Tensor,
        video_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Row i of the text attends to video_embeds[i], or video_embeds[video_index[i]]."""
        ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        bias = attention_bias(attention_mask)
        return _run(self.layers, text_embeds, ckpt, bias, video_embeds, video_index)
