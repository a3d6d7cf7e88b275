"""`t2v2t train` (`make pretrain` / `make finetune-<dataset>`): train with a recipe from
``t2v2t/configs``.

    t2v2t train --task pretrain|finetune-<msrvtt|didemo|anet|folder|vindlu>
                     [--preset base|tiny] [--ckpt PATH] [--run DIR] [--resume] [--sources A,B]
                     [--resume-from RUN_DIR|CKPT] [key=value ...]

Run with ``torchrun ... -m t2v2t.train`` for several GPUs or nodes (use ``--run-dir``: torchrun
rejects ``--run``).
``--resume`` continues ``<run>/last.pt`` exactly; ``RESUME=<run dir or .pt>`` in the environment
(the Makefile's ``RESUME=`` is exported) or ``--resume-from`` names another run.
A bad config is one ``error:`` line and exit status 2. A stop signal (``train.stop_signals``:
SIGTERM, SIGUSR1) ends the run after its current step with ``last.pt`` written and exit status
75 (:data:`t2v2t.interrupts.PREEMPTED_EXIT`): run the same command with ``RESUME=1``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from t2v2t.data.shards import warn_if_synthetic
from t2v2t.errors import ArgumentParser, cli
from t2v2t.interrupts import PREEMPTED_EXIT, install
from t2v2t.training.config import TASKS, ConfigError, load_config
from t2v2t.training.preflight import check_files
from t2v2t.training.select import check_select


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(
        description="Pre-train or fine-tune T2V2T with the paper's recipe.",
        epilog="overrides: dotted key=value, e.g. optim.lr=3e-5 train.max_steps=100. "
        "example: t2v2t train --task pretrain --preset tiny train.max_steps=100 "
        "(make pretrain PRESET=tiny ARGS='train.max_steps=100')",
    )
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument(
        "--preset",
        default="base",
        choices=("base", "tiny"),
        help="model preset: base (paper) or tiny (CPU)",
    )
    parser.add_argument(
        "--ckpt",
        default=None,
        help="weights to start from (fine-tuning default: runs/pretrain/last.pt)",
    )
    # --run-dir: under torchrun, "--run" is an ambiguous prefix of torchrun's own --run-path and
    # torchrun's argument parser rejects it even after the script name.
    parser.add_argument(
        "--run", "--run-dir", dest="run", default=None, help="run directory (default runs/<task>)"
    )
    # A flag, not an optional value: the Makefile puts key=value overrides right after it.
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue <run>/last.pt; RESUME=<run dir or .pt> in the env picks one",
    )
    parser.add_argument(
        "--resume-from",
        default=None,
        metavar="RUN_DIR|CKPT",
        help="continue this run directory or checkpoint (implies --resume)",
    )
    parser.add_argument(
        "--sources",
        default=None,
        help="comma-separated subset of the recipe's data.sources (SOURCES=webvid: WebVid alone)",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    return parser.parse_args(argv)


def resume_target(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """(run dir, checkpoint) named by --resume-from or RESUME=<dir or .pt>; (None, None) if neither."""
    where = args.resume_from
    if where is None and args.resume:
        where = os.environ.get("RESUME", "")
    if not where or where.lower() in ("1", "true", "yes"):
        return None, None
    path = Path(where)
    if path.suffix == ".pt":
        return path.parent, path
    return path, path / "last.pt"


def init_override() -> list[str]:
    """``model.init=...`` from ``INIT`` (the Makefile exports it), over every other layer."""
    init = os.environ.get("INIT", "").strip()
    if init not in ("", "random", "pretrained"):
        raise ConfigError(f"INIT={init!r} is not one of random, pretrained")
    return [f"model.init={init}"] if init else []


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:  # a setting, a shard or weights the user fixes: errors.cli prints its one line
        overrides = list(args.overrides)
        if args.ckpt:
            overrides.append(f"train.init_checkpoint={args.ckpt}")
        overrides += init_override()
        sources = [s.strip() for s in args.sources.split(",")] if args.sources else None
        cfg = load_config(args.task, args.preset, overrides, sources=sources)
        install(cfg.train.stop_signals)  # from here a stop signal waits for the first step
        run_from_resume, ckpt = resume_target(args)
        run_dir = Path(args.run or run_from_resume or Path("runs") / args.task)
        resume_from = None
        if args.resume or args.resume_from:
            resume_from = ckpt or run_dir / "last.pt"
        check_files(cfg, resume_from=resume_from)  # before the slow imports: fail fast
        check_select(cfg)
        warn_if_synthetic([src.dir for src in cfg.data.sources.values()], "training")
        from t2v2t.training.loop import train  # torch + transformers: only for a good config

        result = train(cfg, run_dir, resume_from=resume_from)
    except KeyboardInterrupt:
        print("interrupted; continue with --resume (make ... RESUME=1)", file=sys.stderr)
        return 130
    from t2v2t.dist import is_main  # lazily like the loop above (already loaded by now)

    if result.preempted is not None:
        if is_main():
            print(
                f"preempted ({result.preempted}) at step {result.step}: "
                f"{result.last_checkpoint} holds the position; "
                "continue with the same command and RESUME=1",
                file=sys.stderr,
            )
        return PREEMPTED_EXIT
    if is_main():
        best = f", best T2V Avg {result.best_metric:.2f}" if result.best_metric is not None else ""
        print(f"done: {result.step} steps, checkpoint {result.last_checkpoint}{best}")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
