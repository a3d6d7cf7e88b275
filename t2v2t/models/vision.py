"""Video encoder: a timm image backbone (BEiT or ViT) with VindLU's temporal modules.

The timm model is kept whole (its state_dict keys stay timm's, so pre-trained image weights load
as they are); the temporal attention of each block and the temporal position embedding live
beside it. As in VindLU's released models (docs/evaluation.md, "Importing VindLU checkpoints"), the
temporal attention runs after each block, the last one included, as a residual
``x + scale * attn(LN(x))`` over the frames of every token, with one scalar ``scale`` per block.
Both are zero-initialised, so a fresh model computes exactly the image backbone's features
frame by frame.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.layers import DropPath
from timm.models.beit import Beit
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.utils.checkpoint import checkpoint

# VindLU's layer-norm epsilon (its BEiT, temporal modules and vision_layernorm).
LN_EPS = 1e-12


def temporal_heads(dim: int, fallback: int) -> int:
    """VindLU's temporal attention uses 64-wide heads; other widths keep the backbone's count."""
    return dim // 64 if dim % 64 == 0 else fallback


class TemporalAttention(nn.Module):
    """Self-attention across frames for each token position, scaled by a zero-init scalar.

    ``qkv`` holds query, key and value projections stacked in that order (the layout of
    ``nn.MultiheadAttention.in_proj_weight``), ``proj`` the output projection."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        # Zero-init scalar scale: a fresh block is the image block (VindLU's init value 0).
        self.scale = nn.Parameter(torch.zeros(()))
        # Stochastic depth on the residual branch, per video (training only; set_drop_path).
        self.drop_path: nn.Module = nn.Identity()

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x: [B*T, N, D] frame-major tokens -> same shape with x + scale * attn_over_T."""
        bt, n, d = x.shape
        b = bt // num_frames
        # [B, T, N, D] -> [B*N, T, D]: each token position becomes a sequence over time.
        y = x.view(b, num_frames, n, d).transpose(1, 2).reshape(b * n, num_frames, d)
        qkv = self.qkv(self.norm(y)).view(b * n, num_frames, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B*N, H, T, hd]
        y = F.scaled_dot_product_attention(q, k, v)
        y = self.proj(y.transpose(1, 2).reshape(b * n, num_frames, d))
        # [B, N, T, D]: the first axis is the video, so a drop removes a whole video's branch
        # (VindLU's DropPath acts on [B, T, L, C]).
        y = self.drop_path(y.view(b, n, num_frames, d))
        y = y.transpose(1, 2).reshape(bt, n, d)
        return x + self.scale * y


def fit_temporal_rows(pos: torch.Tensor, num_frames: int) -> torch.Tensor:
    """[T, D] -> [num_frames, D] as VindLU's checkpoint loader fits a temporal position
    embedding to a model built for another frame count: rows past T are zeros (a pre-training
    embedding for 4 frames starts fine-tuning at 12 frames with 8 zero rows), surplus rows are
    cut. Not interpolation: that is only for inputs longer than the model's frame count."""
    if num_frames <= pos.shape[0]:
        return pos[:num_frames].clone()
    out = pos.new_zeros(num_frames, pos.shape[1])
    out[: pos.shape[0]] = pos
    return out


class VideoEncoder(nn.Module):
    """Frames [B, T, 3, H, W] -> per-frame tokens [B, T, N+1, D] and pooled features [B, T, D]."""

    def __init__(self, backbone: nn.Module, num_frames: int) -> None:
        super().__init__()
        if not isinstance(backbone, (Beit, VisionTransformer)):
            raise TypeError(
                f"vision backbone {type(backbone).__name__} is not supported; use a timm BEiT or "
                "VisionTransformer model name"
            )
        self.backbone = backbone
        self.is_beit = isinstance(backbone, Beit)
        dim = backbone.embed_dim
        heads = temporal_heads(dim, backbone.blocks[0].attn.num_heads)
        self.temporal = nn.ModuleList(TemporalAttention(dim, heads) for _ in backbone.blocks)
        self.temporal_pos = nn.Parameter(torch.zeros(num_frames, dim))
        self.num_frames = num_frames
        self.grad_checkpointing = False

    def set_num_frames(self, num_frames: int) -> None:
        """Refit the temporal position embedding to ``num_frames`` rows (fit_temporal_rows)."""
        with torch.no_grad():
            pos = fit_temporal_rows(self.temporal_pos.detach(), num_frames)
        self.temporal_pos = nn.Parameter(pos)
        self.num_frames = num_frames

    def set_drop_path(self, rate: float) -> None:
        """Stochastic depth as VindLU trains: block ``i`` of ``L`` drops each residual branch
        (attention, MLP) of a frame with probability ``rate * i / (L - 1)`` (linspace from 0),
        every temporal attention drops a video's branch with ``rate``. Only in ``train()`` mode;
        ``rate=0`` removes it. No parameters: checkpoints are unchanged."""

        def make(p: float) -> nn.Module:
            return DropPath(p) if p > 0 else nn.Identity()

        blocks = self.backbone.blocks
        rates = torch.linspace(0, rate, len(blocks)).tolist()
        for blk, p in zip(blocks, rates, strict=True):
            blk.drop_path1, blk.drop_path2 = make(p), make(p)
        for module in self.temporal:
            module.drop_path = make(rate)

    @property
    def width(self) -> int:
        return self.backbone.embed_dim

    def temporal_pos_for(self, num_frames: int) -> torch.Tensor:
        """[T, D]: VindLU's rule: the first T rows when T <= the learned count, else the
        learned embedding linearly interpolated to T."""
        pos = self.temporal_pos
        if num_frames <= pos.shape[0]:
            return pos[:num_frames]
        return F.interpolate(
            pos.t().unsqueeze(0), size=num_frames, mode="linear", align_corners=False
        )[0].t()

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        bb = self.backbone
        x = bb.patch_embed(x)
        if self.is_beit:
            x = torch.cat((bb.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
            if bb.pos_embed is not None:
                x = x + bb.pos_embed
            return bb.pos_drop(x)
        x = bb._pos_embed(x)
        x = bb.patch_drop(x)
        return bb.norm_pre(x)

    def _block(
        self, i: int, x: torch.Tensor, num_frames: int, rel_pos_bias: torch.Tensor | None
    ) -> torch.Tensor:
        blk = self.backbone.blocks[i]
        x = blk(x, shared_rel_pos_bias=rel_pos_bias) if self.is_beit else blk(x)
        # After the block (VindLU's temporal_model_position "last"); one frame: nothing to mix.
        return self.temporal[i](x, num_frames) if num_frames > 1 else x

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t = frames.shape[:2]
        # All frames go through the backbone as one batch of B*T images (no loop over frames).
        x = self._stem(frames.flatten(0, 1))
        if t > 1:
            x = (x.view(b, t, *x.shape[1:]) + self.temporal_pos_for(t)[None, :, None]).flatten(0, 1)
        elif self.training and torch.is_grad_enabled():
            # Image batches skip the temporal modules; DDP (without find_unused_parameters)
            # needs every parameter in each step's graph, so they join with a zero weight.
            x = x + 0.0 * sum(p.sum() for p in (self.temporal_pos, *self.temporal.parameters()))
        bb = self.backbone
        rel_pos_bias = None
        if self.is_beit and bb.rel_pos_bias is not None:
            rel_pos_bias = bb.rel_pos_bias()
        for i in range(len(bb.blocks)):
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(self._block, i, x, t, rel_pos_bias, use_reentrant=False)
            else:
                x = self._block(i, x, t, rel_pos_bias)
        x = bb.norm(x)
        pooled = bb.forward_head(x, pre_logits=True)  # timm's own pooling (BEiT: fc_norm(mean))
        return x.reshape(b, t, *x.shape[1:]), pooled.reshape(b, t, -1)


def create_backbone(
    name: str,
    *,
    image_size: int,
    depth: int | None = None,
    width: int | None = None,
    heads: int | None = None,
    pool: str | None = None,
    pretrained_file: str | None = None,
    pretrained_hub: bool = False,
) -> nn.Module:
    """A timm image model without classifier; weights from a local file, the hub, or random."""
    kwargs: dict[str, Any] = {"img_size": image_size, "num_classes": 0}
    if name.startswith("beit"):
        kwargs["norm_layer"] = partial(timm.layers.LayerNorm, eps=LN_EPS)
    for key, value in (
        ("depth", depth),
        ("embed_dim", width),
        ("num_heads", heads),
        ("global_pool", pool),
    ):
        if value is not None:
            kwargs[key] = value
    if pretrained_file:
        # timm's own filter fn adapts the file (head removal, pos-embed/rel-pos resizing).
        return timm.create_model(
            name, pretrained=True, pretrained_cfg_overlay={"file": pretrained_file}, **kwargs
        )
    return timm.create_model(name, pretrained=pretrained_hub, **kwargs)
