"""`make verify-shards DIR=...`: check shard folders against their manifests; exit 1 on failure."""

from __future__ import annotations

import argparse
import sys

from preprocessing.verify import verdict


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("dirs", nargs="+", help="shard folders, e.g. shards/webvid/train_4f")
    args = p.parse_args(argv)
    ok_all = True
    for d in args.dirs:
        ok, line = verdict(d)
        print(line)
        ok_all &= ok
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
