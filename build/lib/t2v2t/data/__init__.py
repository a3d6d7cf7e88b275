"""From shard files to batches: shard format and reading, the epoch plan, frame choice,
augmentation, caption choice, and the streaming loaders (docs/architecture.md).

The loaders are re-exported lazily, so that the shard builder, which imports
``t2v2t.data.schema`` and ``t2v2t.data.frames``, does not pay for importing torch.
"""

import importlib
from typing import Any

_LOADER_NAMES = {
    "TrainSource": "loader",
    "make_train_loader": "loader",
    "EvalTexts": "eval_loader",
    "eval_texts": "eval_loader",
    "make_eval_loader": "eval_loader",
}
__all__ = list(_LOADER_NAMES)


def __getattr__(name: str) -> Any:
    if name in _LOADER_NAMES:
        return getattr(importlib.import_module(f"t2v2t.data.{_LOADER_NAMES[name]}"), name)
    raise AttributeError(f"module 't2v2t.data' has no attribute {name!r}")
