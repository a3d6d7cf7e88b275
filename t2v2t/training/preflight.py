"""Start-up checks on disk of a training config: every shard folder has its manifest, the
checkpoint to start or resume from exists. Apart from the value checks of
``t2v2t/training/config.py`` because they touch files (and object storage)."""

from __future__ import annotations

from pathlib import Path

from t2v2t.storage import ShardFolder
from t2v2t.training.config import Config
from t2v2t.typed_yaml import ConfigError


def check_shard_dir(key: str, path: str, make_hint: str) -> None:
    folder = ShardFolder.of(path)
    if folder.remote:  # an object store has no folders, only the manifest's object
        if not folder.has("manifest.json"):
            raise ConfigError(
                f"{key}: {path} has no manifest.json (not built or unfinished); build it with "
                f"{make_hint} OUT=<the URL's root>"
            )
        return
    if not folder.exists():
        raise ConfigError(f"{key}: shard folder {path} does not exist; build it with {make_hint}")
    if not folder.has("manifest.json"):
        raise ConfigError(
            f"{key}: {path} has no manifest.json (unfinished build?); rebuild with {make_hint}"
        )


def _make_hint(path: str) -> str:
    parts = Path(path).parts
    dataset = parts[-2] if len(parts) >= 2 else "<dataset>"
    return f"`make shards DATASET={dataset}`"


def check_files(cfg: Config, *, resume_from: str | Path | None = None) -> None:
    """Start-up checks on disk: every shard folder has its manifest, checkpoints exist."""
    for name, src in cfg.data.sources.items():
        check_shard_dir(f"data.sources.{name}.dir", src.dir, _make_hint(src.dir))
    if cfg.train.eval_every_epoch and cfg.eval.shards:
        check_shard_dir("eval.shards", cfg.eval.shards, _make_hint(cfg.eval.shards))
    if resume_from is None and cfg.train.init_checkpoint:
        ckpt = Path(cfg.train.init_checkpoint)
        if not ckpt.exists():  # a file, or an exported folder
            hint = (
                "run `make pretrain` first or pass CKPT=path/to/checkpoint.pt"
                if cfg.task.startswith("finetune")
                else "pass CKPT=path/to/checkpoint.pt"
            )
            raise ConfigError(f"checkpoint {ckpt} does not exist; {hint}")
    if resume_from is not None and not Path(resume_from).is_file():
        raise ConfigError(f"cannot resume: {resume_from} does not exist (no checkpoint saved yet)")
