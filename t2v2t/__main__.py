"""``python -m t2v2t <command> ...``: the same as the installed ``t2v2t`` command."""

import sys

from t2v2t.commands import main

sys.exit(main())
