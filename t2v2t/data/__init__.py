"""From shard files to batches: shard format and reading, the epoch plan, frame choice,
augmentation, caption choice, and the streaming loaders (docs/architecture.md).

The loaders are re-exported lazily, so that the shard builder, which imports
``t2v2t.data.schema`` and ``t2v2t.data.frames``, does not pay for importing torch.
"""

_LOADER_NAMES = ("TrainSource", "eval_texts", "make_eval_loader", "make_train_loader")
__all__ = list(_LOADER_NAMES)


def __getattr__(name: str):
    if name in _LOADER_NAMES:
        from t2v2t.data import loader

        return getattr(loader, name)
    raise AttributeError(f"module 't2v2t.data' has no attribute {name!r}")
