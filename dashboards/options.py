"""The dashboard's command-line options, shared by `python -m dashboards` and `panel serve dashboards/app.py`.
Standard library only, so `--help` answers before Panel loads."""
from __future__ import annotations

import argparse
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dashboards", description="dermablate results dashboard")
    parser.add_argument("--results", type=Path, default=Path("results"), help="results root: one folder per sweep")
    parser.add_argument("--refresh", type=float, default=5.0, help="seconds between re-reads of the sweep's files")
    return parser
