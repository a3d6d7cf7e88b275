"""Import a checkpoint saved by VindLU's own code (a ``.pth`` with ``model`` and an EasyDict
``config``) into the project's VindLU model.

The file is read with the allow-list unpickler of :mod:`t2v2t.models.safe_pickle`. Sizes come
from the tensors, frames / fusion layer / temporal settings from the checkpoint's config (checked
against the tensors); settings the project does not implement are refused in one line naming
them. Both layouts are read: fine-tuned (``text_encoder.*``, no MLM head: built fresh, unused by
retrieval) and pre-trained (``text_encoder.bert.*`` and ``text_encoder.cls.*``). docs/evaluation.md,
"Importing VindLU checkpoints", describes the mapping report.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from t2v2t.models.config import ModelConfig, preset_config
from t2v2t.models.vindlu import VindLU

VISION = "vision_encoder."
BEIT_NAME = "beit_base_patch16_224.in22k_ft_in22k"
PATCH = 16


class VindluImportError(ValueError):
    """A VindLU checkpoint the project cannot import as it is (one line says why)."""


def is_vindlu_checkpoint(obj: Any) -> bool:
    """VindLU's save dict: ``model`` with its ``vision_encoder.`` / ``text_encoder.`` keys."""
    state = obj.get("model") if isinstance(obj, Mapping) else None
    return isinstance(state, Mapping) and any(
        str(k).startswith((VISION, "text_encoder.")) for k in state
    )


def _get(cfg: Any, dotted: str, default: Any = None) -> Any:
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def check_settings(cfg: Mapping[str, Any]) -> list[str]:
    """``key=value`` for every setting of VindLU's config that the project does not implement."""
    bad: list[str] = []

    def want(key: str, ok: Callable[[Any], bool], default: Any = None) -> None:
        value = _get(cfg, key, default)
        if not ok(value):
            bad.append(f"{key}={value!r}")

    want("model.vision_encoder.name", lambda v: v is None or "beit" in str(v))
    want("model.text_encoder.name", lambda v: v is None or "bert" in str(v))
    tm = "model.temporal_modeling."
    want(tm + "temporal_model_block", lambda v: v in (None, "timesformer"))
    want(tm + "temporal_model_position", lambda v: v in (None, "last"))
    want(tm + "add_k_prompts", lambda v: not v)
    extra = set(_get(cfg, tm + "temporal_model_config", {}) or {}) - {"input_dim", "droppath_rate"}
    if extra:
        bad.append(f"{tm}temporal_model_config keys {sorted(extra)}")
    want("model.vit_add_ln", lambda v: v in (None, True))
    want("model.multimodal.enable", lambda v: v in (None, True))
    return bad


def _layer_ids(state: Mapping[str, Any], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in state if (m := rx.match(k))})


def _text_prefix(state: Mapping[str, Any]) -> str:
    # Pre-trained checkpoints nest BERT under text_encoder.bert. (beside the MLM head's .cls.).
    if any(k.startswith("text_encoder.bert.") for k in state):
        return "text_encoder.bert."
    return "text_encoder."


def _sizes(state: Mapping[str, torch.Tensor], bert: str, where: str) -> dict[str, Any]:
    """The architecture's sizes, read off the tensors."""
    try:
        return dict(
            width=state[VISION + "embeddings.cls_token"].shape[-1],
            patch=state[VISION + "embeddings.patch_embeddings.projection.weight"].shape[-1],
            depth=len(_layer_ids(state, r"vision_encoder\.encoder\.layer\.(\d+)\.")),
            table=state[
                VISION + "encoder.layer.0.attention.attention.relative_position_bias."
                "relative_position_bias_table"
            ].shape[0],
            mlp=state[VISION + "encoder.layer.0.intermediate.dense.weight"].shape[0],
            words=tuple(state[bert + "embeddings.word_embeddings.weight"].shape),
            positions=state[bert + "embeddings.position_embeddings.weight"].shape[0],
            types=state[bert + "embeddings.token_type_embeddings.weight"].shape[0],
            text_layers=len(_layer_ids(state, re.escape(bert) + r"encoder\.layer\.(\d+)\.")),
            text_mlp=state[bert + "encoder.layer.0.intermediate.dense.weight"].shape[0],
            embed_dim=state["vision_proj.weight"].shape[0],
            temp=float(state["temp"]),
        )
    except KeyError as e:
        raise VindluImportError(f"{where}: not a complete VindLU model, key {e} missing") from None


def _check_architecture(z: dict[str, Any], where: str) -> None:
    problems = []
    if z["patch"] != PATCH:
        problems.append(f"patch size {z['patch']} (only {PATCH})")
    if z["mlp"] != 4 * z["width"]:
        problems.append(f"BEiT MLP width {z['mlp']} (only 4 x {z['width']})")
    if z["width"] % 64 or z["words"][1] % 64:
        problems.append(f"widths {z['width']}/{z['words'][1]} (head width 64 assumed)")
    if problems:
        raise VindluImportError(f"{where}: architecture T2V2T does not implement: {problems}")


def _settings(
    state: Mapping[str, torch.Tensor], cfg: Mapping[str, Any], bert: str, z: dict[str, Any],
    where: str,
) -> dict[str, int]:  # fmt: skip
    """Image size, fusion layer and frames from the config, checked against the tensors."""
    cross = _layer_ids(state, re.escape(bert) + r"encoder\.layer\.(\d+)\.crossattention\.")
    window = int(round(((z["table"] - 3) ** 0.5 + 1) / 2))
    image_size = int(_get(cfg, "inputs.image_res", window * PATCH))
    fusion = int(
        _get(cfg, "model.text_encoder.fusion_layer", cross[0] if cross else z["text_layers"])
    )
    tpe = state.get(VISION + "embeddings.temporal_position_embeddings")
    frames = _get(cfg, "model.temporal_modeling.num_frames", _get(cfg, "num_frames"))
    frames = int(frames if frames is not None else (tpe.shape[1] if tpe is not None else 4))
    mismatch = []
    if image_size != window * PATCH:
        mismatch.append(f"inputs.image_res={image_size} but the bias tables fit {window * PATCH}")
    if not cross or cross[0] != fusion:
        mismatch.append(f"fusion_layer={fusion} but cross-attention starts at layer {cross[:1]}")
    if tpe is not None and tpe.shape[1] != frames:
        mismatch.append(f"num_frames={frames} but the temporal embedding has {tpe.shape[1]} rows")
    if mismatch:
        raise VindluImportError(f"{where}: config and tensors disagree: {'; '.join(mismatch)}")
    max_len = _get(cfg, "max_txt_l", 32)
    if isinstance(max_len, Mapping):
        max_len = max_len.get("video", 32)
    return dict(image_size=image_size, fusion=fusion, frames=frames, max_len=int(max_len))


def model_config_for(
    state: Mapping[str, torch.Tensor], cfg: Mapping[str, Any], where: str
) -> ModelConfig:
    """The project ModelConfig of VindLU's architecture as saved (sizes from the tensors)."""
    bad = check_settings(cfg)
    if bad:
        raise VindluImportError(
            f"{where}: VindLU settings T2V2T does not implement: {'; '.join(bad)}"
        )
    bert = _text_prefix(state)
    z = _sizes(state, bert, where)
    _check_architecture(z, where)
    c = _settings(state, cfg, bert, z, where)
    vocab, hidden = z["words"]
    overrides: dict[str, Any] = dict(
        vision_model=BEIT_NAME,
        vision_depth=z["depth"],
        vision_width=z["width"],
        vision_heads=z["width"] // 64,
        image_size=c["image_size"],
        num_frames=c["frames"],
        mean=(0.5, 0.5, 0.5),  # VindLU normalises BEiT input to [-1, 1]
        std=(0.5, 0.5, 0.5),
        text_model="bert-base-uncased",
        text_config=dict(
            hidden_size=hidden,
            num_hidden_layers=z["text_layers"],
            num_attention_heads=hidden // 64,
            intermediate_size=z["text_mlp"],
            max_position_embeddings=z["positions"],
            type_vocab_size=z["types"],
            vocab_size=vocab,
        ),
        fusion_layer=c["fusion"],
        text_pool="cls",
        embed_dim=z["embed_dim"],
        max_text_len=c["max_len"],
        temp_init=z["temp"],
        vocab_size=vocab,
    )
    return preset_config("base", overrides)


# VindLU (HF-style BEiT) -> timm Beit names inside one block.
_BEIT_BLOCK = {
    "lambda_1": "gamma_1",
    "lambda_2": "gamma_2",
    "attention.attention.query.bias": "attn.q_bias",
    "attention.attention.value.bias": "attn.v_bias",
    "attention.attention.relative_position_bias.relative_position_bias_table": (
        "attn.relative_position_bias_table"
    ),
    "attention.output.dense.weight": "attn.proj.weight",
    "attention.output.dense.bias": "attn.proj.bias",
    "layernorm_before.weight": "norm1.weight",
    "layernorm_before.bias": "norm1.bias",
    "layernorm_after.weight": "norm2.weight",
    "layernorm_after.bias": "norm2.bias",
    "intermediate.dense.weight": "mlp.fc1.weight",
    "intermediate.dense.bias": "mlp.fc1.bias",
    "output.dense.weight": "mlp.fc2.weight",
    "output.dense.bias": "mlp.fc2.bias",
}
_TEMPORAL = {
    "temporal_attn.in_proj_weight": "qkv.weight",
    "temporal_attn.in_proj_bias": "qkv.bias",
    "temporal_attn.out_proj.weight": "proj.weight",
    "temporal_attn.out_proj.bias": "proj.bias",
    "norm.weight": "norm.weight",
    "norm.bias": "norm.bias",
    "scale": "scale",
}
_TOP = {
    VISION + "embeddings.cls_token": "vision.backbone.cls_token",
    VISION
    + "embeddings.patch_embeddings.projection.weight": "vision.backbone.patch_embed.proj.weight",
    VISION + "embeddings.patch_embeddings.projection.bias": "vision.backbone.patch_embed.proj.bias",
    VISION + "pooler.layernorm.weight": "vision.backbone.fc_norm.weight",
    VISION + "pooler.layernorm.bias": "vision.backbone.fc_norm.bias",
    "vision_layernorm.weight": "vision_ln.weight",
    "vision_layernorm.bias": "vision_ln.bias",
}
_HEADS = ("vision_proj.", "text_proj.", "itm_head.")


def _map_key(key: str, fusion: int, bert: str) -> tuple[str | None, str]:
    """(project key or None, the reason it is dropped / the part it belongs to)."""
    if key in _TOP:
        return _TOP[key], "vision"
    if key == VISION + "embeddings.temporal_position_embeddings":
        return "vision.temporal_pos", "temporal"
    if key == "temp" or key.startswith(_HEADS):
        return key, "heads"
    m = re.match(r"vision_encoder\.encoder\.layer\.(\d+)\.(.+)$", key)
    if m:
        i, rest = int(m.group(1)), m.group(2)
        if rest.startswith("temp_model."):
            sub = rest[len("temp_model.") :]
            if sub in _TEMPORAL:
                return f"vision.temporal.{i}.{_TEMPORAL[sub]}", "temporal"
            if sub.startswith("linear."):
                return None, "temp_model.linear (built by VindLU's TemporalAttention, unused)"
            return None, "unknown temporal weight"
        if rest in _BEIT_BLOCK:
            return f"vision.backbone.blocks.{i}.{_BEIT_BLOCK[rest]}", "vision"
        if rest.endswith("relative_position_index"):
            return None, "relative_position_index (a buffer, recomputed)"
        if rest.startswith("attention.attention.") and rest.endswith(".weight"):
            return f"vision.backbone.blocks.{i}.attn.qkv.weight", "vision"  # joined below
        return None, "unknown BEiT weight"
    if key.startswith(bert + "embeddings."):
        rest = key[len(bert) :]
        if rest == "embeddings.position_ids":
            return None, "position_ids (a buffer, recomputed)"
        return f"text.{rest}", "text"
    m = re.match(re.escape(bert) + r"encoder\.layer\.(\d+)\.(.+)$", key)
    if m:
        i, rest = int(m.group(1)), m.group(2)
        if i < fusion:
            return f"text.layers.{i}.{rest}", "text"
        rest = re.sub(r"^crossattention\.(self|output)\.", "crossattention.", rest)
        return f"fusion.layers.{i - fusion}.{rest}", "fusion"
    if key.startswith("text_encoder.cls."):
        return "mlm_head." + key[len("text_encoder.cls.") :], "mlm head"
    if key.startswith(bert + "pooler."):
        return None, "BERT pooler (VindLU builds none; unused)"
    return None, "not part of VindLU's retrieval model"


def _examples(keys: list[str], n: int = 2) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... (+{len(keys) - n})" if len(keys) > n else "")


def convert_state(
    state: Mapping[str, torch.Tensor], model: VindLU, where: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The project state_dict for ``model`` from VindLU's ``state``, and the mapping report."""
    cfg = model.config
    bert = (
        "text_encoder.bert."
        if any(k.startswith("text_encoder.bert.") for k in state)
        else ("text_encoder.")
    )
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    parts: dict[str, int] = defaultdict(int)
    dropped: dict[str, list[str]] = defaultdict(list)
    qkv: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, value in state.items():
        new, why = _map_key(key, cfg.fusion_layer, bert)
        if new is None:
            dropped[why].append(key)
            continue
        if not torch.is_tensor(value):
            raise VindluImportError(f"{where}: {key} is not a tensor")
        if new.endswith("attn.qkv.weight") and new.startswith("vision.backbone"):
            i = int(key.split(".")[3])
            qkv[i][key.rsplit(".", 2)[-2]] = value
            parts[why] += 1
            continue
        if new == "vision.temporal_pos":
            value = value.reshape(value.shape[1], value.shape[-1])
        out[new] = value
        parts[why] += 1
    for i, w in qkv.items():
        # timm's Beit keeps query, key and value as one matrix (key without a bias).
        out[f"vision.backbone.blocks.{i}.attn.qkv.weight"] = torch.cat(
            [w["query"], w["key"], w["value"]]
        )
    if "vision.temporal_pos" not in out:  # use_temporal_position_embedding=False: adds nothing
        out["vision.temporal_pos"] = torch.zeros_like(own["vision.temporal_pos"])
    fresh = sorted(set(own) - set(out))
    if fresh and all(k.startswith("mlm_head.") for k in fresh):
        decoder = "mlm_head.predictions.decoder.weight"
        if decoder in fresh:  # tied to the word embeddings, as BERT's MLM head is
            out[decoder] = out["text.embeddings.word_embeddings.weight"]
        for k in fresh:
            out.setdefault(k, own[k])
    elif fresh:
        raise VindluImportError(
            f"{where}: the VindLU checkpoint lacks weights for {_examples(fresh, 4)}"
        )
    shapes = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in out.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    unknown = sorted(set(out) - set(own))
    if shapes or unknown:
        raise VindluImportError(
            f"{where}: mapped weights do not fit: {_examples(shapes + unknown, 4)}"
        )
    total = sum(parts.values())
    report = [
        f"mapped {total} tensors: "
        + ", ".join(f"{n} {part}" for part, n in sorted(parts.items(), key=lambda p: -p[1]))
    ]
    for why, keys in sorted(dropped.items()):
        report.append(f"dropped {len(keys)}: {why}: {_examples(keys)}")
    fresh_mlm = [k for k in fresh if k != "mlm_head.predictions.decoder.weight"]
    if fresh_mlm:
        report.append(
            f"built fresh {len(fresh_mlm)}: the MLM head (the fine-tuned layout has none; "
            "unused by retrieval, only pre-training's MLM loss reads it; decoder tied to the "
            "word embeddings)"
        )
    return out, report


def import_vindlu(
    obj: Mapping[str, Any], where: str | Path = "checkpoint"
) -> tuple[VindLU, list[str]]:
    """(the project's VindLU model holding the checkpoint's weights, eval mode; report lines)."""
    from t2v2t.models.build import build_model_from_config

    where = str(where)
    if not is_vindlu_checkpoint(obj):
        raise VindluImportError(f"{where}: no VindLU 'model' state_dict in it")
    state = obj["model"]
    cfg = obj.get("config") or {}
    layout = (
        "pre-trained" if any(k.startswith("text_encoder.bert.") for k in state) else ("fine-tuned")
    )
    model_cfg = model_config_for(state, cfg, where)
    model = build_model_from_config(model_cfg, init="random")
    new_state, report = convert_state(state, model, where)
    model.load_state_dict(new_state, strict=True)
    model.eval()
    tm = _get(cfg, "model.temporal_modeling", {}) or {}
    epoch = obj.get("epoch")
    head = (
        f"VindLU {layout} checkpoint{f' (epoch {epoch})' if epoch is not None else ''}: "
        f"{model_cfg.num_frames} frames, {model_cfg.image_size} px, "
        f"fusion layer {model_cfg.fusion_layer}, temporal "
        f"{tm.get('temporal_model_block', 'timesformer')} after each of "
        f"{model_cfg.vision_depth} BEiT blocks"
    )
    if not tm.get("use_temporal_position_embedding", True):
        head += " (no temporal position embedding: zeros)"
    return model, [head, *report]


__all__ = [
    "VindluImportError",
    "check_settings",
    "convert_state",
    "import_vindlu",
    "is_vindlu_checkpoint",
    "model_config_for",
]
