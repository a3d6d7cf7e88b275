"""`python scripts/ablation.py ...`: the same command as `t2v2t ablation` (t2v2t/ablation.py), kept for
job scripts written against the checkout; same options, output and exit status."""

import sys

from t2v2t.ablation import main
from t2v2t.errors import cli

if __name__ == "__main__":
    sys.exit(cli(main))
