"""`python -m kdbench.report.page [RESULTS_DIR]`: rewrite RESULTS_DIR/index.html (default: results) from its
leaderboard.json and runs, without recomputing the leaderboard (`python -m kdbench report` does both)."""

import sys

from kdbench.errors import KdbenchError
from kdbench.report.page import write_page

try:
    print(f"wrote {write_page(sys.argv[1] if len(sys.argv) > 1 else 'results')}")
except KdbenchError as exc:
    print(f"kdbench: error: {exc}", file=sys.stderr)
    sys.exit(2)
