"""Write a checkpoint laid out and pickled the way VindLU saves one, with random weights.

VindLU's ``torch.save`` dict holds ``model`` (its ``state_dict``: HF-style BEiT keys under
``vision_encoder.``, xbert keys under ``text_encoder.``), optimizer/scheduler/scaler states, and
``config``: an ``EasyDict`` whose class lives in VindLU's ``utils.easydict`` module. The class
written here pickles under that same name, so the file reads like a released one.

Every parameter is random (temporal scales non-zero in every block including the last; bias
tables, layer norms and the temporal position embedding too): a wrong key mapping or a wrong
formula changes the outputs.
"""

from __future__ import annotations

import contextlib
import sys
import types
from pathlib import Path
from typing import Any

import torch

SIZES: dict[str, dict[str, int]] = {
    # A few-MB model for the fast suite (head width 64 as in VindLU's base and large models).
    "small": dict(
        vision_width=128,
        vision_depth=2,
        image_size=32,
        text_width=128,
        text_layers=3,
        fusion_layer=2,
        embed_dim=64,
    ),
    # BEiT-B/16 + BERT-base split at layer 9, VindLU's released architecture.
    "base": dict(
        vision_width=768,
        vision_depth=12,
        image_size=224,
        text_width=768,
        text_layers=12,
        fusion_layer=9,
        embed_dim=256,
    ),
}
PATCH = 16
VOCAB = 30522
MAX_POSITIONS = 512


class EasyDict(dict):
    """Like VindLU's EasyDict: items are also attributes, nested dicts become EasyDicts."""

    def __init__(self, d: dict | None = None, **kwargs: Any) -> None:
        super().__init__()
        for k, v in {**(d or {}), **kwargs}.items():
            setattr(self, k, v)

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, dict) and not isinstance(value, EasyDict):
            value = EasyDict(value)
        elif isinstance(value, (list, tuple)):
            value = [EasyDict(x) if isinstance(x, dict) else x for x in value]
        super().__setattr__(name, value)
        super().__setitem__(name, value)

    __setitem__ = __setattr__


EasyDict.__module__ = "utils.easydict"
EasyDict.__qualname__ = "EasyDict"


@contextlib.contextmanager
def _vindlu_modules():
    """pickle checks that a class is importable under its name while saving: register VindLU's
    module name for the duration of the save only."""
    saved = {k: sys.modules.get(k) for k in ("utils", "utils.easydict")}
    pkg = types.ModuleType("utils")
    mod = types.ModuleType("utils.easydict")
    mod.EasyDict = EasyDict  # type: ignore[attr-defined]
    pkg.easydict = mod  # type: ignore[attr-defined]
    sys.modules["utils"], sys.modules["utils.easydict"] = pkg, mod
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def relative_position_index(window: int) -> torch.Tensor:
    """BEiT's index into the relative position bias table (3 extra entries for the CLS token)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    flat = coords.flatten(1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0) + (window - 1)
    rel[:, :, 0] *= 2 * window - 1
    n = (2 * window - 1) ** 2 + 3
    index = torch.zeros((window * window + 1,) * 2, dtype=torch.long)
    index[1:, 1:] = rel.sum(-1)
    index[0, 0:] = n - 3
    index[0:, 0] = n - 2
    index[0, 0] = n - 1
    return index


def vindlu_config(size: str, num_frames: int, layout: str) -> dict[str, Any]:
    s = SIZES[size]
    return {
        "model": {
            "vision_encoder": {
                "name": "beit_base",
                "pretrained": "microsoft/beit-base-patch16-224-pt22k-ft22k",
                "d_model": s["vision_width"],
            },
            "text_encoder": {
                "name": "bert_base",
                "pretrained": "bert-base-uncased",
                "config": "configs/config_bert.json",
                "d_model": s["text_width"],
                "fusion_layer": s["fusion_layer"],
            },
            "temporal_modeling": {
                "num_frames": num_frames,
                "temporal_model_block": "timesformer",
                "temporal_model_position": "last",
                "temporal_model_config": {"input_dim": s["vision_width"]},
                "use_temporal_position_embedding": True,
            },
            "vit_add_ln": True,
            "multimodal": {"enable": True},
            "embed_dim": s["embed_dim"],
            "temp": 0.07,
        },
        "inputs": {
            "image_res": s["image_size"],
            "video_input": {
                "num_frames": num_frames,
                "sample_type": "rand",
                "num_frames_test": num_frames,
                "sample_type_test": "middle",
                "random_aug": False,
            },
            "max_txt_l": {"image": 32, "video": 32},
        },
        "num_frames": num_frames,
        "num_frames_test": num_frames,
        "max_txt_l": 32,
        "criterion": {"loss_weight": {"vtc": 1.0, "mlm": 1.0 if layout == "pretrained" else 0.0}},
        "mode": "pt" if layout == "pretrained" else "ft",
        "evaluate": False,
        "fp16": True,
    }


def random_vindlu_state(
    layout: str = "finetuned", size: str = "small", num_frames: int = 4, seed: int = 0
) -> dict[str, torch.Tensor]:
    """VindLU's ``model.state_dict()`` keys and shapes, every value random."""
    if layout not in ("finetuned", "pretrained"):
        raise ValueError(f"layout={layout!r}: use finetuned or pretrained")
    s = SIZES[size]
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int, std: float = 1.0, mean: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std + mean

    def linear(prefix: str, out_dim: int, in_dim: int, bias: bool = True) -> None:
        sd[f"{prefix}.weight"] = randn(out_dim, in_dim, std=in_dim**-0.5)
        if bias:
            sd[f"{prefix}.bias"] = randn(out_dim, std=0.05)

    def norm(prefix: str, dim: int) -> None:
        sd[f"{prefix}.weight"] = randn(dim, std=0.1, mean=1.0)
        sd[f"{prefix}.bias"] = randn(dim, std=0.1)

    sd: dict[str, torch.Tensor] = {}
    c, h = s["vision_width"], s["text_width"]
    heads = c // 64
    window = s["image_size"] // PATCH
    v = "vision_encoder"
    sd[f"{v}.embeddings.cls_token"] = randn(1, 1, c, std=0.1)
    sd[f"{v}.embeddings.patch_embeddings.projection.weight"] = randn(
        c, 3, PATCH, PATCH, std=(3 * PATCH * PATCH) ** -0.5
    )
    sd[f"{v}.embeddings.patch_embeddings.projection.bias"] = randn(c, std=0.05)
    sd[f"{v}.embeddings.temporal_position_embeddings"] = randn(1, num_frames, 1, c, std=0.2)
    for i in range(s["vision_depth"]):
        p = f"{v}.encoder.layer.{i}"
        sd[f"{p}.lambda_1"] = randn(c, std=0.05, mean=0.3)
        sd[f"{p}.lambda_2"] = randn(c, std=0.05, mean=0.3)
        linear(f"{p}.attention.attention.query", c, c)
        linear(f"{p}.attention.attention.key", c, c, bias=False)
        linear(f"{p}.attention.attention.value", c, c)
        rel = f"{p}.attention.attention.relative_position_bias"
        sd[f"{rel}.relative_position_bias_table"] = randn((2 * window - 1) ** 2 + 3, heads)
        sd[f"{rel}.relative_position_index"] = relative_position_index(window)
        linear(f"{p}.attention.output.dense", c, c)
        norm(f"{p}.layernorm_before", c)
        norm(f"{p}.layernorm_after", c)
        linear(f"{p}.intermediate.dense", 4 * c, c)
        linear(f"{p}.output.dense", c, 4 * c)
        t = f"{p}.temp_model"
        sd[f"{t}.temporal_attn.in_proj_weight"] = randn(3 * c, c, std=c**-0.5)
        sd[f"{t}.temporal_attn.in_proj_bias"] = randn(3 * c, std=0.05)
        linear(f"{t}.temporal_attn.out_proj", c, c)
        norm(f"{t}.norm", c)
        linear(f"{t}.linear", c, c)  # built by VindLU's module, unused by its forward
        sign = 1.0 if i % 2 == 0 else -1.0
        sd[f"{t}.scale"] = torch.tensor(sign * (0.5 + 0.1 * i))
    norm(f"{v}.pooler.layernorm", c)
    norm("vision_layernorm", c)

    bert = "text_encoder.bert" if layout == "pretrained" else "text_encoder"
    sd[f"{bert}.embeddings.position_ids"] = torch.arange(MAX_POSITIONS)[None]
    sd[f"{bert}.embeddings.word_embeddings.weight"] = randn(VOCAB, h, std=0.5)
    sd[f"{bert}.embeddings.position_embeddings.weight"] = randn(MAX_POSITIONS, h, std=0.2)
    sd[f"{bert}.embeddings.token_type_embeddings.weight"] = randn(2, h, std=0.2)
    norm(f"{bert}.embeddings.LayerNorm", h)
    for i in range(s["text_layers"]):
        p = f"{bert}.encoder.layer.{i}"
        for part in ("query", "key", "value"):
            linear(f"{p}.attention.self.{part}", h, h)
        linear(f"{p}.attention.output.dense", h, h)
        norm(f"{p}.attention.output.LayerNorm", h)
        if i >= s["fusion_layer"]:
            linear(f"{p}.crossattention.self.query", h, h)
            linear(f"{p}.crossattention.self.key", h, c)
            linear(f"{p}.crossattention.self.value", h, c)
            linear(f"{p}.crossattention.output.dense", h, h)
            norm(f"{p}.crossattention.output.LayerNorm", h)
        linear(f"{p}.intermediate.dense", 4 * h, h)
        linear(f"{p}.output.dense", h, 4 * h)
        norm(f"{p}.output.LayerNorm", h)
    if layout == "pretrained":
        m = "text_encoder.cls.predictions"
        linear(f"{m}.transform.dense", h, h)
        norm(f"{m}.transform.LayerNorm", h)
        sd[f"{m}.bias"] = randn(VOCAB, std=0.05)
        # Tied in BERT: the decoder is the word-embedding matrix and the head's bias.
        sd[f"{m}.decoder.weight"] = sd[f"{bert}.embeddings.word_embeddings.weight"]
        sd[f"{m}.decoder.bias"] = sd[f"{m}.bias"]
    linear("vision_proj", s["embed_dim"], c)
    linear("text_proj", s["embed_dim"], h)
    linear("itm_head", 2, h)
    sd["temp"] = torch.tensor(0.05 + 0.01 * torch.rand((), generator=g).item())
    return sd


def write_vindlu_checkpoint(
    path: str | Path,
    layout: str = "finetuned",
    size: str = "small",
    num_frames: int = 4,
    seed: int = 0,
) -> dict[str, Any]:
    """Write a VindLU-format ``.pth`` at ``path``; returns {"model": state_dict, "config": the
    config as plain dicts, "sizes": the architecture numbers, "num_frames", "layout"}."""
    state = random_vindlu_state(layout, size, num_frames, seed)
    config = vindlu_config(size, num_frames, layout)
    save_obj = {
        "model": state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0, 1]}]},
        "scheduler": {"base_lrs": [1e-5], "last_epoch": 3, "lr_lambdas": [None]},
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 7},
        "config": EasyDict(config),
        "epoch": 4,
        "global_step": 1234,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with _vindlu_modules():
        torch.save(save_obj, path)
    return {
        "model": state,
        "config": config,
        "sizes": dict(SIZES[size], patch=PATCH, vocab=VOCAB, max_positions=MAX_POSITIONS),
        "num_frames": num_frames,
        "layout": layout,
    }
