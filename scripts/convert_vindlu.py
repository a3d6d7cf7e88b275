"""`python scripts/convert_vindlu.py ...`: the same command as `t2v2t convert-vindlu` (t2v2t/convert_vindlu.py), kept for
job scripts written against the checkout; same options, output and exit status."""

import sys

from t2v2t.convert_vindlu import main
from t2v2t.errors import cli

if __name__ == "__main__":
    sys.exit(cli(main))
