"""`t2v2t ablation` (`make ablation`): the paper's ablation table — VindLU / naïve T2V2T / T2V2T on each dataset.

For every dataset whose checkpoint and eval shards exist, reuses the evaluation JSON already
written for that checkpoint (by `make eval-<dataset>` or an earlier ablation) when its settings
match, else evaluates; then prints the table (R1 R5 R10 Avg per dataset, Total Avg) and writes it
as Markdown to ``runs/ablation.md`` (or ``<RUN>/ablation.md``; every post-hoc method x dataset
also as ``ablation.html``). Datasets without a checkpoint or
shards are listed under the table, not fatal. Options: ``eval.<key>=value`` as for ``t2v2t eval``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from t2v2t import storage
from t2v2t.errors import ArgumentParser, cli
from t2v2t.recipes import PAPER_EVAL
from t2v2t.retrieval.evaluate import load_scores, write_eval_outputs
from t2v2t.retrieval.fusion import FUSIONS
from t2v2t.retrieval.html_report import write_ablation_html
from t2v2t.retrieval.metrics import best_ranks
from t2v2t.retrieval.report import ablation_markdown, posthoc_markdown
from t2v2t.retrieval.run import (
    DATASETS,
    ConfigError,
    EvalConfig,
    UsageError,
    check_inputs,
    command_settings,
    default_checkpoint,
    evaluate_dataset,
    for_dataset,
    output_dir,
)
from t2v2t.retrieval.stats import statistics_from_scores


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(
        epilog="example: t2v2t ablation --preset tiny --run runs/demo  (make ablation PRESET=tiny)",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument(
        "--preset",
        default="base",
        choices=("base", "tiny"),
        help="model preset (each checkpoint's wins)",
    )
    p.add_argument("--run", default=None, help="write RUN/ablation.md and RUN/eval/*.json")
    p.add_argument(
        "--datasets",
        default=",".join(PAPER_EVAL),
        help="comma-separated (default: the paper's three; any evaluation dataset works)",
    )
    p.add_argument("--shards", default="shards", help="shard root (default shards)")
    p.add_argument("--force", action="store_true", help="re-evaluate even when a JSON matches")
    for d in DATASETS:
        p.add_argument(f"--ckpt-{d}", default=None, help=f"default {default_checkpoint(d)}")
        p.add_argument(
            f"--options-{d}",
            default="",
            help=f"eval.<key>=value overrides for {d} only, space-separated (e.g. "
            "'eval.bank=train' where only this dataset has train shards)",
        )
    p.add_argument("options", nargs="*", help="eval.<key>=value overrides")
    return p.parse_args(argv)


def reusable(path: Path, ckpt: Path, opts: EvalConfig) -> dict[str, Any] | None:
    """The JSON at ``path`` when it is this checkpoint's, no older than it, with the same settings."""
    if not path.is_file() or path.stat().st_mtime < ckpt.stat().st_mtime:
        return None
    try:
        res = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    same = (
        res.get("checkpoint") == str(ckpt)
        and res.get("k") == opts.k
        and res.get("rerank", True) == opts.rerank
        and res.get("tau") == opts.tau
        and res.get("lam") == opts.lam
        and _same_posthoc(res.get("posthoc"), opts)
        and (opts.num_frames is None or res.get("num_frames") == opts.num_frames)
        and (opts.max_text_len is None or res.get("max_text_len") == opts.max_text_len)
        # auto resolves the same way for the same file; JSONs older than the option say none.
        and (
            res.get("preprocess") == opts.preprocess
            or (opts.preprocess == "auto" and "preprocess" in res)
        )
    )
    return res if same and "results" in res else None


def _same_posthoc(post: dict[str, Any] | None, opts: EvalConfig) -> bool:
    """The JSON's post-hoc section was made with these options (or both have none)."""
    if not opts.posthoc or post is None:
        return not opts.posthoc and post is None
    wants_bank = opts.bank not in (None, "", "none")
    return post.get("fusion_params") == opts.fusion_params and (post.get("bank") is not None) == (
        wants_bank
    )


def load_ranks(results: dict[str, dict[str, Any]], paths: dict[str, Path]):
    """Per-query text->video ranks from each JSON's scores ``.npz`` (for Total Avg's interval);
    fills ``statistics`` into JSONs written before they carried it. None when an npz is missing."""
    ranks = {}
    for d, res in results.items():
        npz = paths[d].with_name(paths[d].name.removesuffix(".json") + "_scores.npz")
        if not npz.is_file():
            return None
        arrays, gt = load_scores(npz)
        ranks[d] = {f: best_ranks(arrays[f"t2v_{f}"], gt) for f in FUSIONS}
        if "statistics" not in res:
            res["statistics"] = statistics_from_scores(arrays, gt)
    return ranks


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
        unknown = [d for d in datasets if d not in DATASETS]
        if unknown:
            raise UsageError(f"unknown datasets {unknown}; choose from {', '.join(DATASETS)}")
        per_dataset = {
            d: command_settings([*args.options, *shlex.split(getattr(args, f"options_{d}"))])
            for d in datasets
        }
    except (UsageError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results: dict[str, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    paths: dict[str, Path] = {}
    for d in datasets:
        given = getattr(args, f"ckpt_{d}")
        ckpt = Path(given) if given else default_checkpoint(d)
        opts = per_dataset[d]
        settings = for_dataset(opts, d, args.shards)
        shards = storage.location(str(settings.shards))  # a URL stays one
        try:
            check_inputs(d, ckpt, shards, ckpt_given=given is not None)
        except UsageError as e:
            missing[d] = str(e)
            print(f"[ablation] {d}: skipped: {e}")
            continue
        out = output_dir(ckpt, args.run)
        name = f"{d}_{settings.split}.json"
        # The run's own folder first, then where `make eval-<dataset>` writes by default.
        for candidate in dict.fromkeys([out / name, output_dir(ckpt, None) / name]):
            found = None if args.force else reusable(candidate, ckpt, opts)
            if found:
                results[d] = found
                paths[d] = candidate
                print(f"[ablation] {d}: reused {candidate}")
                break
        else:
            try:
                res = evaluate_dataset(settings, preset=args.preset, ckpt=ckpt)
            except (UsageError, ConfigError) as e:
                missing[d] = str(e)
                print(f"[ablation] {d}: failed: {e}")
                continue
            json_path, _ = write_eval_outputs(res, None, out)
            print(f"[ablation] {d}: wrote {json_path}")
            results[d] = dict(res)
            paths[d] = json_path
    ranks = load_ranks(results, paths)
    table = ablation_markdown(results, datasets, missing, ranks=ranks)
    posthoc = posthoc_markdown(results, datasets)
    if posthoc:
        table += "\n## Every post-hoc method (docs/evaluation.md#which-fusion)\n\n" + posthoc
    path = Path(args.run or "runs") / "ablation.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Ablation: fusion of text->video and video->text scores\n\n" + table)
    page = write_ablation_html(results, path.with_suffix(".html"))
    print()
    print(table)
    print(f"wrote {path} and {page}")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
