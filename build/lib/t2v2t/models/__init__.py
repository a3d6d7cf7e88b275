"""VindLU model: build presets, tokenizer, strict weight loading."""

from t2v2t.models.build import (
    WeightsMismatchError,
    WeightsUnavailableError,
    build_model,
    build_model_from_config,
    build_tokenizer,
    load_weights,
)
from t2v2t.models.config import ModelConfig, preset_config
from t2v2t.models.vindlu import VindLU

__all__ = [
    "ModelConfig",
    "VindLU",
    "WeightsMismatchError",
    "WeightsUnavailableError",
    "build_model",
    "build_model_from_config",
    "build_tokenizer",
    "load_weights",
    "preset_config",
]
