"""The installed ``t2v2t`` command: ``t2v2t <command> [options]`` (README.md, "Commands").

Each command is a module of this package with ``main(argv) -> int``, also runnable as
``python -m t2v2t.<module>`` (and so ``torchrun -m t2v2t.train``); ``python scripts/<name>.py``
is a thin shim onto the same ``main``. A new command is one line in :data:`COMMANDS`. The
command's module is imported only once it is chosen, so ``t2v2t --help`` and a bad training
config answer before torch loads.
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import PackageNotFoundError, version

from t2v2t.errors import cli

# name -> (module, one line for the listing). Keep in the order a user meets them.
COMMANDS: dict[str, tuple[str, str]] = {
    "shards": ("t2v2t.shards", "build frame shards from annotation files and videos"),
    "verify-shards": ("t2v2t.verify_shards", "check shard folders against their manifests"),
    "train": ("t2v2t.train", "pre-train or fine-tune with the paper's recipe (torchrun -m)"),
    "eval": ("t2v2t.eval", "two-stage retrieval evaluation with the three fusions"),
    "ablation": ("t2v2t.ablation", "the paper's ablation table over the three fusions"),
    "search": ("t2v2t.search", "search a folder of videos with text queries"),
    "export": ("t2v2t.export", "export a checkpoint as a plain safetensors folder"),
    "convert-vindlu": ("t2v2t.convert_vindlu", "convert a VindLU .pth into a project .pt"),
    "inspect-stream": ("t2v2t.inspect_stream", "print a shard folder's training stream"),
    "tune-fusion": ("t2v2t.tune_fusion", "post-hoc fusions' parameters on held-out train captions"),
    "fuse": ("t2v2t.fuse", "every post-hoc fusion side by side on any retriever's saved scores"),
}

EXAMPLE = """example:
  t2v2t shards --dataset msrvtt --synthetic --data runs/data/msrvtt --out runs/shards
  t2v2t verify-shards runs/shards/msrvtt/test_12f
  t2v2t train --help"""


def _version() -> str:
    try:
        return version("t2v2t")
    except PackageNotFoundError:  # a checkout on PYTHONPATH, not installed
        return "unknown (not installed)"


def usage() -> str:
    """The listing ``t2v2t --help`` prints: every command, its module, what it does."""
    width = max(map(len, COMMANDS))
    rows = [f"  {n:<{width}}  {doc}" for n, (_, doc) in COMMANDS.items()]
    return (
        "usage: t2v2t <command> [options]   (t2v2t <command> --help for its options)\n\n"
        "commands (each also python -m t2v2t.<name with - as _>, e.g. python -m "
        "t2v2t.verify_shards; torchrun -m t2v2t.train):\n" + "\n".join(rows) + "\n\n" + EXAMPLE
    )


def main(argv: list[str] | None = None) -> int:
    """Run ``t2v2t <command> ...``: the command's own ``main`` with the rest of the line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"t2v2t {_version()}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(
            f"error: unknown command {name!r} (t2v2t): choose one of {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    # argparse names the program after argv[0]: usage lines and errors then say "t2v2t train".
    sys.argv[0] = f"t2v2t {name}"
    return cli(lambda: module.main(rest))
