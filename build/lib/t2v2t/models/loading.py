"""One entry point for every command that accepts a checkpoint: recognise it by its content.

- ``project``: a ``.pt`` written by this project's training (``model``, ``preset``,
  ``model_config``), read with ``torch.load(weights_only=True)``;
- ``vindlu``: a ``.pth`` written by VindLU's own code, read with the allow-list unpickler and
  converted (:mod:`t2v2t.models.vindlu_import`);
- ``export``: a folder written by ``scripts/export.py``.

Nothing that would run code from the file is ever called: a pickle that names any other global
is refused with one line naming it (docs/evaluation.md, "Importing VindLU checkpoints").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from t2v2t.errors import CheckpointError  # a UsageError: one line, 'cannot load checkpoint'
from t2v2t.models.config import ModelConfig
from t2v2t.models.vindlu import VindLU

SOURCES = ("project", "vindlu", "export")


@dataclass
class LoadedCheckpoint:
    """A loaded checkpoint: the model (CPU, eval mode) and where it came from."""

    model: VindLU
    source: str  # one of SOURCES
    report: list[str]
    config: ModelConfig
    path: Path
    preset: str
    # The raw file's other entries (project: step, config, ...; VindLU: its config as a dict).
    extra: dict[str, Any] = field(default_factory=dict)


def _plain(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def sniff_checkpoint(path: str | Path) -> str:
    """ "export" for a folder, else "pickle" (the content decides project vs vindlu)."""
    path = Path(path)
    if path.is_dir():
        return "export"
    if not path.is_file():
        raise CheckpointError(f"cannot load checkpoint {path}: it does not exist")
    return "pickle"


def _load_export(path: Path, preset: str | None, say: Callable[[str], None]) -> LoadedCheckpoint:
    # model.safetensors + config.json + tokenizer files: no pickle anywhere (docs/evaluation.md,
    # "Export").
    from t2v2t.models.export import ExportError, load_export

    try:
        model, cfg = load_export(path)
    except ExportError as e:
        raise CheckpointError(f"cannot load checkpoint {path}: {e}") from None
    origin = cfg.get("exported_from") or {}
    report = [f"exported folder (from a {origin.get('source', '?')} checkpoint)"]
    say(f"[load] {report[0]}: {path}")
    extra = {"preprocess": cfg.get("preprocess"), "exported_from": origin}
    return LoadedCheckpoint(
        model,
        "export",
        report,
        model.config,
        path,
        str(cfg.get("preset") or model.config.preset),
        extra,
    )


def _project(
    state: Mapping[str, Any], path: Path, preset: str | None, say: Callable[[str], None]
) -> LoadedCheckpoint:
    from t2v2t.models.build import WeightsMismatchError, build_model, load_weights

    overrides: dict[str, Any] = {}
    saved_preset = state.get("preset")
    if isinstance(saved_preset, str):
        if preset and saved_preset != preset:
            say(f"[load] {path} was trained with preset {saved_preset!r}; using it")
        preset = saved_preset
        saved = state.get("model_config") or {}
        # Rebuild the exact architecture saved with it (image size, frames, sizes, ...).
        keep = (
            "image_size",
            "num_frames",
            "vision_model",
            "vision_depth",
            "vision_width",
            "vision_heads",
            "fusion_layer",
            "embed_dim",
            "text_config",
        )
        overrides = {k: saved[k] for k in keep if saved.get(k) is not None}
        for k in ("mean", "std"):
            if saved.get(k) is not None:
                overrides[k] = tuple(saved[k])
    if not preset:
        raise CheckpointError(
            f"cannot load checkpoint {path}: it does not say its preset; pass PRESET=tiny|base"
        )
    # Every weight comes from the checkpoint: no pre-trained files needed.
    model = build_model(preset, "random", overrides=overrides or None)
    try:
        load_weights(model, state)
    except WeightsMismatchError as e:
        raise CheckpointError(f"cannot load checkpoint: {e} (PRESET={preset})") from None
    model.eval()
    extra = {k: v for k, v in state.items() if k != "model"}
    return LoadedCheckpoint(
        model,
        "project",
        [f"project checkpoint, preset {preset}"],
        model.config,
        path,
        preset,
        extra,
    )


def load_any_checkpoint(
    path: str | Path, preset: str | None = None, say: Callable[[str], None] = print
) -> LoadedCheckpoint:
    """Load a project ``.pt``, a VindLU ``.pth`` or an exported folder, recognised by content.

    ``preset`` is a fallback for files that do not record theirs; a VindLU file's architecture
    is read from it. The report (also passed line by line to ``say``) lists for a VindLU file
    the keys mapped, dropped (with why) and built fresh. Raises :class:`CheckpointError` with
    one line for a file that cannot be loaded, including a pickle naming a refused global.
    """
    from t2v2t.models.safe_pickle import UnsafeCheckpointError, load_checkpoint_file
    from t2v2t.models.vindlu_import import VindluImportError, import_vindlu, is_vindlu_checkpoint

    path = Path(path)
    if sniff_checkpoint(path) == "export":
        return _load_export(path, preset, say)
    try:
        # Project files load with torch's own safe reader; anything it refuses (VindLU's
        # EasyDict config, or a hostile global) goes to the allow-list reader, which names it.
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - every failure here means "try the other reader"
        try:
            state = load_checkpoint_file(path)
        except UnsafeCheckpointError as e:
            raise CheckpointError(f"cannot load checkpoint {e}") from None
        except Exception as e:  # noqa: BLE001 - damaged files fail in many ways; all unusable
            reason = next((s.strip() for s in str(e).splitlines() if s.strip()), "")
            raise CheckpointError(
                f"cannot load checkpoint {path} ({type(e).__name__}: {reason[:200]}): it is "
                "truncated or not a checkpoint; use another file"
            ) from None
    if is_vindlu_checkpoint(state):
        try:
            model, report = import_vindlu(state, path)
        except VindluImportError as e:
            raise CheckpointError(f"cannot load checkpoint {e}") from None
        for line in report:
            say(f"[import] {line}")
        extra = {"vindlu_config": _plain(state.get("config") or {}), "epoch": state.get("epoch")}
        return LoadedCheckpoint(model, "vindlu", report, model.config, path, "base", extra)
    if isinstance(state, Mapping):
        return _project(state, path, preset, say)
    raise CheckpointError(f"cannot load checkpoint {path}: neither a project nor a VindLU file")


def tokenizer_for(loaded: LoadedCheckpoint) -> Any:
    """The tokenizer that goes with a loaded checkpoint: an exported folder's own files, else
    the preset's (docs/evaluation.md, "Export")."""
    from t2v2t.models import build_tokenizer

    if loaded.source == "export":
        from transformers import BertTokenizerFast

        return BertTokenizerFast.from_pretrained(str(loaded.path))
    return build_tokenizer(loaded.preset)


__all__ = [
    "SOURCES",
    "CheckpointError",
    "LoadedCheckpoint",
    "load_any_checkpoint",
    "tokenizer_for",
]
