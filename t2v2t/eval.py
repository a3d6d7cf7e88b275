"""`t2v2t eval` (`make eval-<dataset>`): two-stage retrieval with the three fusions on one checkpoint.

Prints the chosen fusion's text->video row in the paper's format (R1 R5 R10 Avg) and a table of
all fusions; writes ``<dataset>_<split>.json``, ``<dataset>_<split>_scores.npz`` and the visual
report ``<dataset>_<split>.html`` (open it in a browser) into the
checkpoint's ``eval/`` folder (or ``<RUN>/eval``). Options after the flags are ``key=value``:
``eval.k=64 eval.batch_size=16 eval.rerank=none eval.tau=0.5``. Works under torchrun (videos and
candidate pairs are split across ranks; rank 0 prints and writes): ``torchrun ... -m t2v2t.eval``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch.distributed as dist

from t2v2t import storage
from t2v2t.data.shards import warn_if_synthetic
from t2v2t.dist import init_distributed, is_main
from t2v2t.errors import ArgumentParser, cli
from t2v2t.retrieval.evaluate import write_eval_outputs
from t2v2t.retrieval.fusion import FUSIONS
from t2v2t.retrieval.report import eval_summary
from t2v2t.retrieval.run import (
    DATASETS,
    ConfigError,
    UsageError,
    check_inputs,
    command_settings,
    default_checkpoint,
    evaluate_dataset,
    output_dir,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(
        epilog="example: t2v2t eval --dataset msrvtt --preset tiny --ckpt runs/finetune-msrvtt/best.pt  (make eval-msrvtt PRESET=tiny)",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument(
        "--preset",
        default="base",
        choices=("base", "tiny"),
        help="model preset (the checkpoint's wins)",
    )
    p.add_argument("--ckpt", default=None, help="default runs/finetune-<dataset>/best.pt")
    p.add_argument(
        "--run",
        "--run-dir",
        dest="run",
        default=None,
        help="write into RUN/eval instead of the ckpt's folder",
    )
    p.add_argument("--fusion", default="t2v2t", choices=FUSIONS, help="the fusion shown first")
    p.add_argument("--shards", default="shards", help="shard root (default shards)")
    p.add_argument("--k", type=int, default=None, help="candidates per query (default 128)")
    p.add_argument("--rerank", choices=("vtm", "none"), default=None, help="none: stage 1 only")
    p.add_argument("options", nargs="*", help="eval.<key>=value overrides")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        extra = [f"eval.k={args.k}"] if args.k is not None else []
        extra += [f"eval.rerank={args.rerank}"] if args.rerank else []
        settings = command_settings([*args.options, *extra], args.dataset, args.shards)
        ckpt = Path(args.ckpt) if args.ckpt else default_checkpoint(args.dataset)
        shards = storage.location(str(settings.shards))  # a URL stays one
        check_inputs(args.dataset, ckpt, shards, ckpt_given=args.ckpt is not None)
        warn_if_synthetic([shards], "evaluation")
        init_distributed()
        main_rank = is_main()
        say = print if main_rank else (lambda _m: None)
        result = evaluate_dataset(settings, preset=args.preset, ckpt=ckpt, say=say)
    except (UsageError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if main_rank:
        json_path, npz_path = write_eval_outputs(result, None, output_dir(ckpt, args.run))
        print()
        print(eval_summary(result, args.fusion))
        html_path = json_path.with_suffix(".html")
        print(f"\nwrote {json_path}, {npz_path} and the visual report {html_path}")
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # rank 0 has written before anyone exits
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
