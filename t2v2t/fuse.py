"""Every post-hoc fusion side by side on any retriever's saved scores (docs/evaluation.md,
"Which fusion?").

``--scores S.npz``: ``sims`` [texts, videos] float and ``gt`` (the int video index of each text,
or a bool [texts, videos] matrix for several positives); optionally ``bank`` [bank texts,
videos] (training captions against the test videos) and ``video_bank`` [bank videos, texts]
(training videos against the test texts), there or in ``--bank B.npz``. Prints, per protocol
(``batch``: all queries at once; ``single``: one query with the bank alone) and direction, every
method's R@1/5/10, Avg, MdR, MnR with the R@1 interval and the paired difference vs ``none``, and
the 10x duplication stress; ``--json`` writes all of it with every metric's interval.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from t2v2t.errors import ArgumentParser, UsageError, cli
from t2v2t.retrieval.compare import compare, comparison_table, load_inputs, read_params
from t2v2t.retrieval.posthoc import METHODS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
        epilog="example: t2v2t fuse --scores sims.npz --bank bank.npz --json out.json",
    )
    p.add_argument("--scores", required=True, help="npz with sims, gt [, bank, video_bank]")
    p.add_argument("--bank", default=None, help="npz with bank [, video_bank]")
    p.add_argument("--json", default=None, help="write the full comparison here")
    p.add_argument("--params", default=None, help="fusion_params.json (from make tune-fusion)")
    p.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated subset (default: all)"
    )
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (2000)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or "none" not in methods:
        raise UsageError(
            f"--methods: {unknown or 'none missing'}; choose from {', '.join(METHODS)}"
        )
    params = read_params(args.params)
    inputs = load_inputs(args.scores, args.bank)
    result = compare(inputs, params, methods=methods, resamples=args.resamples)
    result["scores"] = str(args.scores)
    result["bank_file"] = args.bank
    print(
        f"{result['num_texts']} texts x {result['num_videos']} videos; bank: "
        f"{result['bank_texts'] or 0} captions, {result['bank_videos'] or 0} videos"
    )
    print(comparison_table(result))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.replace(out)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
