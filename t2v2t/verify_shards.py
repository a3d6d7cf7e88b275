"""`t2v2t verify-shards` (`make verify-shards DIR=...`): check shard folders against their manifests; exit 1 on failure."""

from __future__ import annotations

import sys

from preprocessing.verify import verdict
from t2v2t.errors import ArgumentParser, UsageError, cli


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(
        epilog="example: t2v2t verify-shards shards/webvid/train_4f  (make verify-shards DIR=shards/webvid/train_4f)",
        description=__doc__,
    )
    p.add_argument(
        "dirs",
        nargs="+",
        help="shard folders or URLs, e.g. shards/webvid/train_4f, s3://bucket/shards/webvid/train_4f",
    )
    p.add_argument(
        "--workers", type=int, default=0, help="local Dask worker processes (0: this process)"
    )
    p.add_argument("--scheduler", default=None, help="an existing Dask cluster, tcp://host:port")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.workers < 0:
        raise UsageError(f"workers must be >= 0 (WORKERS={args.workers}): 0 checks in this process")
    ok_all = True
    for d in args.dirs:
        ok, line = verdict(
            d, workers=args.workers, scheduler=args.scheduler, progress=not args.quiet
        )
        print(line)
        ok_all &= ok
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(cli(main))
