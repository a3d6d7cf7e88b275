"""Export a checkpoint as a plain folder (docs/evaluation.md, "Export"): ``model.safetensors``
(weights, no pickle), ``config.json`` (the architecture, where it came from, its evaluation
preprocessing) and the tokenizer files. :func:`load_export` reads it back without unpickling.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EXPORT_FORMAT = "t2v2t-export/1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class ExportError(RuntimeError):
    """An exported folder that cannot be read; one line saying why."""


def export_checkpoint(loaded: Any, tokenizer: Any, out_dir: str | Path, preprocess: str) -> Path:
    """Write ``loaded`` (a :class:`~t2v2t.models.loading.LoadedCheckpoint`) into ``out_dir``,
    recording ``preprocess``, the evaluation preprocessing it expects (the caller's choice:
    ``t2v2t.retrieval.preprocess.default_preprocess``)."""
    from safetensors.torch import save_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # save_model drops the duplicate names of tied tensors (the MLM decoder shares the word
    # embeddings), which plain save_file refuses; load_model restores the ties.
    save_model(loaded.model, str(out / WEIGHTS))
    config = {
        "format": EXPORT_FORMAT,
        "preset": loaded.preset,
        "model_config": loaded.config.to_dict(),
        "exported_from": {"source": loaded.source, "path": str(loaded.path)},
        "preprocess": preprocess,
    }
    (out / CONFIG).write_text(json.dumps(config, indent=1) + "\n")
    tokenizer.save_pretrained(str(out))
    return out


def read_export_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    cfg_path, weights = path / CONFIG, path / WEIGHTS
    for f in (cfg_path, weights):
        if not f.is_file():
            raise ExportError(
                f"a folder without {f.name}; pass an exported folder "
                "(python scripts/export.py CKPT OUT_DIR) or a checkpoint file"
            )
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise ExportError(f"{cfg_path}: not readable JSON ({e})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != EXPORT_FORMAT:
        got = cfg.get("format") if isinstance(cfg, dict) else type(cfg).__name__
        raise ExportError(f"{cfg_path}: format {got!r}, expected {EXPORT_FORMAT!r}")
    if not isinstance(cfg.get("model_config"), dict):
        raise ExportError(f"{cfg_path}: no model_config object")
    return cfg


def load_export(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """(model in eval mode, config.json) from an exported folder; nothing is unpickled."""
    from safetensors.torch import load_model

    from t2v2t.models.build import build_model_from_config

    path = Path(path)
    cfg = read_export_config(path)
    try:
        model = build_model_from_config(cfg["model_config"], init="random")
    except (KeyError, TypeError, ValueError) as e:
        raise ExportError(f"{path / CONFIG}: model_config does not build ({e})") from None
    try:
        load_model(model, str(path / WEIGHTS), strict=True)
    except (RuntimeError, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ExportError(f"{path / WEIGHTS}: does not match its config.json ({first})") from None
    return model.eval(), cfg


__all__ = ["EXPORT_FORMAT", "ExportError", "export_checkpoint", "load_export", "read_export_config"]
