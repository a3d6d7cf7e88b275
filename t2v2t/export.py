"""`t2v2t export`: export a checkpoint (a project .pt, a VindLU .pth, or an exported folder) as a plain folder:
model.safetensors, config.json and the tokenizer files. Every command that takes CKPT= accepts
the folder, and loading it unpickles nothing (docs/evaluation.md, "Export")."""

from __future__ import annotations

import sys
from pathlib import Path

from t2v2t.errors import ArgumentParser, cli


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(
        description=__doc__,
        epilog="example: t2v2t export vindlu_msrvtt.pth exports/msrvtt  "
        "(then make eval-msrvtt CKPT=exports/msrvtt)",
    )
    p.add_argument("ckpt", help="checkpoint file or exported folder")
    p.add_argument("out_dir", help="folder to write (created)")
    p.add_argument("--preset", default=None, help="for project files that do not record one")
    args = p.parse_args(argv)

    from t2v2t.models.export import export_checkpoint
    from t2v2t.retrieval.preprocess import default_preprocess
    from t2v2t.retrieval.run import UsageError, load_checkpoint

    try:
        loaded, tokenizer = load_checkpoint(Path(args.ckpt), args.preset or "")
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    preprocess = default_preprocess(loaded.source, loaded.extra)
    out = export_checkpoint(loaded, tokenizer, args.out_dir, preprocess)
    print(f"wrote {out}/model.safetensors, config.json and the tokenizer ({loaded.source} source)")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
