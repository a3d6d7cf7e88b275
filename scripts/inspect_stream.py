"""`python scripts/inspect_stream.py ...`: the same command as `t2v2t inspect-stream` (t2v2t/inspect_stream.py), kept for
job scripts written against the checkout; same options, output and exit status."""

import sys

from t2v2t.errors import cli
from t2v2t.inspect_stream import main

if __name__ == "__main__":
    sys.exit(cli(main))
