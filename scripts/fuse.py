"""`python scripts/fuse.py ...`: the same command as `t2v2t fuse` (t2v2t/fuse.py), kept for
job scripts written against the checkout; same options, output and exit status."""

import sys

from t2v2t.errors import cli
from t2v2t.fuse import main

if __name__ == "__main__":
    sys.exit(cli(main))
