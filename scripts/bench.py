"""`make bench`: run every benchmark, each in its own process, then print the table.

Benchmarks: ``scripts/bench_<name>.py`` with a ``main(argv)``; each records its figures through
``t2v2t.tools.benchlog.record``. ``--only name,name`` runs a subset.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from t2v2t.errors import ArgumentParser, cli
from t2v2t.tools.benchlog import BENCH_DIR

SCRIPTS = Path(__file__).resolve().parent
ORDER = ["shards", "driver", "mixing", "loader", "rerank", "train"]


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        epilog="example: python scripts/bench.py --only shards  (make bench)", description=__doc__
    )
    parser.add_argument("--only", default="", help="comma-separated subset of " + ",".join(ORDER))
    args = parser.parse_args(argv)
    chosen = [b for b in ORDER if not args.only or b in args.only.split(",")]
    failed = []
    for name in chosen:
        script = SCRIPTS / f"bench_{name}.py"
        if not script.is_file():
            print(f"[bench] {name}: {script.name} not found, skipped")
            continue
        print(f"[bench] {name} ...", flush=True)
        if subprocess.call([sys.executable, str(script)]) != 0:
            failed.append(name)
    readme = BENCH_DIR / "README.md"
    if readme.is_file():
        print(readme.read_text())
    if failed:
        print(f"[bench] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli(main))
