"""`t2v2t convert-vindlu`: convert a checkpoint saved by VindLU's own code into a project checkpoint (once).

Reads IN.pth with an allow-list unpickler (a pickle naming any other global is refused and
nothing in it runs), maps its keys onto the project's VindLU model, prints the mapping report
(mapped / dropped and why / built fresh) and writes OUT, a project ``.pt`` that every command
accepts (``CKPT=OUT``). Converting is optional: ``CKPT=IN.pth`` works directly too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from t2v2t.errors import ArgumentParser, cli

EXAMPLE = """example:
  t2v2t convert-vindlu ckpt_best.pth runs/vindlu-msrvtt/vindlu.pt
  make eval-msrvtt PRESET=base CKPT=runs/vindlu-msrvtt/vindlu.pt"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(
        description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("input", type=Path, help="VindLU checkpoint (.pth, e.g. ckpt_best.pth)")
    p.add_argument("output", type=Path, help="project checkpoint to write (.pt)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from t2v2t.models.loading import CheckpointError, load_any_checkpoint
    from t2v2t.training.checkpoint import git_commit, save_checkpoint

    try:
        loaded = load_any_checkpoint(args.input, say=print)
    except (CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if loaded.source != "vindlu":
        print(f"error: {args.input} is a {loaded.source} checkpoint, not VindLU's", file=sys.stderr)
        return 2
    model = loaded.model
    save_checkpoint(
        args.output,
        {
            "model": model.state_dict(),
            "preset": loaded.preset,
            "model_config": model.config.to_dict(),
            "imported_from": {
                "path": str(args.input),
                "format": "vindlu",
                "report": loaded.report,
                "vindlu_config": loaded.extra.get("vindlu_config", {}),
            },
            "git_commit": git_commit(),
        },
    )
    print(f"wrote {args.output} (preset {loaded.preset}; use it as CKPT={args.output})")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
