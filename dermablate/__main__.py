"""`python -m dermablate SUBCOMMAND [ARGS...]`: the same as the `dermablate` console script."""
from __future__ import annotations

import sys

from dermablate.cli import main

if __name__ == "__main__":
    sys.exit(main())
