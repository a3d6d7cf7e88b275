"""`t2v2t shards` (`make shards DATASET=...`): annotation files + videos -> shards/<dataset>/<split>_<N>f/.

Builds every split of the paper's recipe, or the one asked. A data folder without the dataset's
annotation files is one error naming the files looked for: nothing is generated or written
unless ``--synthetic`` (``make shards SYNTHETIC=1``) asks for a synthetic corpus
(docs/data.md, "Synthetic corpora").
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from preprocessing.adapters import (
    LOOKED_FOR,
    TAKES_ANNOTATIONS,
    check_url_data,
    has_annotations,
    load_records,
    sliced_source,
)
from preprocessing.job import build_shards
from preprocessing.mixing import MIXINGS
from preprocessing.publish import check_target
from preprocessing.recipes import RECIPES, SPLITS, SplitRecipe, recipe
from preprocessing.records import VideoRecord
from preprocessing.remote import Location, is_file, join, location
from preprocessing.slices import CsvSource, SlicedSource
from preprocessing.spec import (
    DEFAULT_SAMPLES_PER_SHARD,
    DEFAULT_SHARD_BYTES,
    ShardSpec,
    parse_bytes,
    spec_default,
)
from preprocessing.synthetic import (
    ATTRIBUTES_FILE,
    DEFAULTS,
    INCOMPLETE_FLAG,
    generate,
    is_complete,
)
from preprocessing.wds_input import TarSource
from t2v2t.data.frames import FRAME_RULES, MIDDLE_MODES
from t2v2t.data.shards import shard_dir
from t2v2t.errors import ArgumentParser, UsageError, cli
from t2v2t.storage import is_url


def _synthetic_options(p: argparse.ArgumentParser) -> None:
    """--synthetic and the generated corpus' sizes (docs/data.md, "Synthetic corpora")."""
    p.add_argument(
        "--synthetic-size",
        type=int,
        default=None,
        help="training videos of a generated synthetic corpus (dataset default)",
    )
    p.add_argument(
        "--synthetic-test-size",
        type=int,
        default=None,
        help="evaluation-split videos of a generated synthetic corpus (default: a quarter of "
        "--synthetic-size, at most the dataset default)",
    )
    p.add_argument(
        "--synthetic-near-duplicates",
        type=float,
        default=0.0,
        help="fraction of the synthetic evaluation split made of near-duplicate distractors "
        "(one of direction, speed, size changed; docs/data.md, 'Synthetic corpora')",
    )
    p.add_argument(
        "--synthetic",
        action="store_true",
        help="generate this dataset's synthetic corpus into --data (default "
        "runs/synthetic/<dataset>; a new or empty folder) and shard it",
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(
        epilog="example: t2v2t shards --dataset msrvtt --data runs/data/msrvtt --synthetic --out runs/shards  (make shards DATASET=msrvtt DATA=runs/data/msrvtt SYNTHETIC=1)",
        description=__doc__,
    )
    p.add_argument("--dataset", required=True, choices=sorted(RECIPES))
    p.add_argument("--data", default=None, help="data root (default data/<dataset>)")
    p.add_argument("--out", default="shards", help="shard root (default shards)")
    p.add_argument(
        "--split",
        default=None,
        help="one split (default: the recipe's); known: "
        + "; ".join(f"{d}: {', '.join(s)}" for d, s in sorted(SPLITS.items())),
    )
    p.add_argument("--frames", type=int, default=None, help="frames per video (recipe default)")
    p.add_argument("--workers", type=int, default=2, help="local Dask worker processes (0: none)")
    p.add_argument("--scheduler", default=None, help="an existing Dask cluster, tcp://host:port")
    p.add_argument("--short-side", type=int, default=spec_default("short_side"))
    p.add_argument("--jpeg-quality", type=int, default=spec_default("jpeg_quality"))
    p.add_argument(
        "--samples-per-shard",
        type=int,
        default=None,
        help="inputs per shard and per task; wins over --shard-bytes (default: "
        f"{DEFAULT_SAMPLES_PER_SHARD} for a synthetic corpus, else from --shard-bytes)",
    )
    p.add_argument(
        "--shard-bytes",
        default=None,
        help="shard size target, e.g. 300MB: turned into samples per shard from the frames, "
        "candidates, short side and JPEG quality alone (default: "
        f"{DEFAULT_SHARD_BYTES // 10**6}MB for real data; docs/data.md, 'Shards at scale')",
    )
    p.add_argument(
        "--window", type=int, default=0, help="tasks in flight at once (0: 4 per worker)"
    )
    _synthetic_options(p)
    p.add_argument(
        "--annotations",
        default=None,
        help="the annotation file (webvid CSV, folder captions.csv) instead of the default name",
    )
    p.add_argument(
        "--seed", type=int, default=spec_default("seed"), help="frame sampling (and synthetic) seed"
    )
    p.add_argument(
        "--frame-rule",
        choices=("project", "vindlu"),
        default="project",
        help="evaluation splits' middle frame: project ((a+b)//2 of [a, b)) or vindlu "
        "(VindLU's (a+b-1)//2; recorded in the manifest as mode vindlu_middle)",
    )
    p.add_argument(
        "--mixing",
        choices=MIXINGS,
        default=None,
        help="blocks: each shard gathers rows from the whole annotation (default for training "
        "splits read in slices: WebVid's CSV, input tars); none: shard i holds rows "
        "[i*n, (i+1)*n) (docs/data.md, 'Mixing')",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="sample frames from each clip's first seconds only (default: the recipe's, "
        "DiDeMo 30 as VindLU; 0: the whole clip)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def mixing_for(given: str | None, r: SplitRecipe, inputs: object) -> str:
    """``--mixing``, else ``blocks`` for a training split its workers read in slices (WebVid's
    CSV, input tars: the corpora at scale, docs/data.md, "Mixing"), else ``none``."""
    if given is not None:
        return given
    sliced = isinstance(inputs, (CsvSource, TarSource))
    return "blocks" if sliced and r.mode not in MIDDLE_MODES else "none"


def _synthetic_hint(dataset: str) -> str:
    return (
        f"`make shards DATASET={dataset} SYNTHETIC=1` (t2v2t shards --dataset {dataset} "
        f"--synthetic) makes a synthetic corpus under runs/synthetic/{dataset}"
    )


def prepare_synthetic(args: argparse.Namespace, data: Path) -> None:
    """Generate the synthetic corpus into ``data`` unless a finished one is there already.

    Only into a new or empty folder, or one holding an earlier synthetic corpus: never among
    a user's own files.
    """
    if args.dataset not in DEFAULTS:
        raise UsageError(
            f"no synthetic corpus for {args.dataset} (DATASET={args.dataset}): one of "
            f"{', '.join(DEFAULTS)} has one"
        )
    ours = (data / ATTRIBUTES_FILE).exists() or (data / INCOMPLETE_FLAG).exists()
    if ours and is_complete(data):
        return
    if data.exists() and not ours and any(data.iterdir()):
        raise UsageError(
            f"{data} holds other files (DATA={data}): a synthetic corpus goes into a new or "
            f"empty folder, e.g. DATA=runs/synthetic/{args.dataset}"
        )
    why = f"{data} was left incomplete" if ours else "--synthetic"
    t0 = time.perf_counter()
    if not 0.0 <= args.synthetic_near_duplicates < 1.0 or (args.synthetic_test_size or 1) < 1:
        raise UsageError(
            f"--synthetic-near-duplicates must be in [0, 1) and --synthetic-test-size >= 1 (got "
            f"{args.synthetic_near_duplicates}, {args.synthetic_test_size}): e.g. 0.3 and 300"
        )
    attrs = generate(
        args.dataset, data, size=args.synthetic_size, test_size=args.synthetic_test_size,
        seed=args.seed, near_duplicates=args.synthetic_near_duplicates,
    )  # fmt: skip
    print(
        f"[shards] {why}: generated the synthetic {args.dataset} corpus in {data} "
        f"({len(attrs)} items, {time.perf_counter() - t0:.1f} s)",
        flush=True,
    )


def check_annotations(args: argparse.Namespace, data: Location, splits: list[str]) -> None:
    """One error naming the files looked for, before anything is written anywhere."""
    check_url_data(args.dataset, data)
    # A URL prefix need not exist as a folder (object stores, http): its files are looked for.
    local = not is_url(data)
    if local and not Path(data).is_dir() and not (args.dataset == "vindlu" and is_file(data)):
        raise UsageError(
            f"data folder {data} does not exist (DATA=): check the path, or "
            f"{_synthetic_hint(args.dataset)}"
        )
    if local and not is_complete(Path(data)):
        raise UsageError(
            f"{data} is a synthetic corpus whose generation was interrupted (DATA={data}): "
            "re-run with SYNTHETIC=1 (--synthetic) to finish it"
        )
    if args.annotations:
        return  # load_records checks the named file
    for split in splits:
        if not has_annotations(args.dataset, data, split):
            names = ", ".join(LOOKED_FOR[args.dataset](split))
            raise UsageError(
                f"no {args.dataset} annotations for split {split} in {data} (looked for "
                f"{names}): point DATA= at the folder that holds them"
                + (
                    ", or name the file with ANNOTATIONS="
                    if args.dataset in TAKES_ANNOTATIONS
                    else ""
                )
                + f"; or {_synthetic_hint(args.dataset)}"
            )


def inputs(
    args: argparse.Namespace, data: Location, split: str
) -> list[VideoRecord] | SlicedSource:
    """The build's inputs: WebVid's CSV or webdataset tars as a sliced source (workers read their
    own rows), other datasets (small fine-tuning sets, image folders) as a list (docs/data.md,
    "Shards at scale")."""
    annotations = location(args.annotations) if args.annotations else None
    source = sliced_source(args.dataset, data, split, annotations)
    return source if source is not None else load_records(args.dataset, data, split, annotations)


def _sizing(m: dict) -> str:
    """How the shards were sized (read back from the manifest), and how big the full ones are."""
    spec = ShardSpec.from_manifest(m)
    full = [s["bytes"] for s in m["shards"] if s["samples"] == spec.samples_per_shard]
    got = f"{sum(full) / len(full) / 1e6:.1f} MB each" if full else "none full"
    if spec.shard_bytes is None:
        return f"{spec.samples_per_shard} samples per shard, {got}"
    return (
        f"{spec.samples_per_shard} samples per shard for a {spec.shard_bytes / 1e6:g} MB "
        f"target, {got}"
    )


def clip_seconds(args: argparse.Namespace) -> float | None:
    """``--max-seconds``: the recipe's when not given (DiDeMo 30), none for 0."""
    seconds = getattr(args, "max_seconds", None)
    if seconds is None:
        return RECIPES[args.dataset].max_seconds
    if seconds < 0:
        raise UsageError(
            f"max seconds per clip must be >= 0 (MAX_SECONDS={seconds}); 0: the whole clip"
        )
    return seconds or None


def spec_for(args: argparse.Namespace, r: SplitRecipe, synthetic: bool) -> ShardSpec:
    """One split's settings. Shard size: ``--samples-per-shard`` when given, else the byte
    target when given, else the demo's small shards for a synthetic corpus, else the default
    byte target (docs/data.md, "Shards at scale")."""
    spec = ShardSpec(
        dataset=args.dataset,
        split=r.split,
        num_frames=r.num_frames,
        mode=FRAME_RULES[args.frame_rule] if r.mode == "middle" else r.mode,
        candidates=r.candidates,
        seed=args.seed,
        short_side=args.short_side,
        jpeg_quality=args.jpeg_quality,
        samples_per_shard=args.samples_per_shard or DEFAULT_SAMPLES_PER_SHARD,
        synthetic=synthetic,
        max_seconds=clip_seconds(args),
    )
    if args.samples_per_shard is not None:
        return spec
    if args.shard_bytes is not None:
        return spec.sized_by_bytes(parse_bytes(args.shard_bytes))
    return spec if synthetic else spec.sized_by_bytes(DEFAULT_SHARD_BYTES)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = location(args.data or f"{'runs/synthetic' if args.synthetic else 'data'}/{args.dataset}")
    recipes = recipe(args.dataset, args.split, args.frames)  # refuses bad values first
    if args.samples_per_shard is not None and args.samples_per_shard < 1:
        raise UsageError(f"samples per shard must be >= 1 (SHARD_SIZE={args.samples_per_shard})")
    if args.shard_bytes is not None:
        parse_bytes(args.shard_bytes)
    if args.workers < 0:
        raise UsageError(f"workers must be >= 0 (WORKERS={args.workers}): 0 builds in this process")
    if is_url(args.out):
        check_target(args.out)  # read-only scheme, missing bucket: before anything is read
    if args.synthetic:
        if is_url(data):
            raise UsageError(f"--synthetic generates into a local folder, not DATA={data}")
        prepare_synthetic(args, Path(data))
    check_annotations(args, data, [r.split for r in recipes])
    # A corpus this project generated stays marked as such in its shards' manifest.
    synthetic = args.synthetic or is_file(join(data, ATTRIBUTES_FILE))
    for r in recipes:
        records = inputs(args, data, r.split)
        out = shard_dir(args.out, args.dataset, r.split, r.num_frames)
        t0 = time.perf_counter()
        spec = replace(spec_for(args, r, synthetic), mixing=mixing_for(args.mixing, r, records))
        m = build_shards(
            records,
            out,
            spec,
            workers=args.workers,
            scheduler=args.scheduler,
            progress=not args.quiet,
            window=args.window,
        )
        print(
            f"[shards] {out}: {m['num_samples']} samples in {len(m['shards'])} shards "
            f"({_sizing(m)}), {m['num_failed']} failed (see failures.jsonl), "
            f"{time.perf_counter() - t0:.1f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
