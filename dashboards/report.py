"""A sweep's report: report.md and PNG figures reproducing the source study's tables and figures.

    python -m dashboards.report --sweep RESULTS/SWEEP --out DIR [--gradcam-examples 4]

Table 2: overall test metrics per arm; Table 3: per-class test recall per arm; Table 4:
melanoma operating points per arm (thresholds chosen on validation, and, labelled as
leaking, chosen on test); Table 5: test figures with lesion-level bootstrap intervals;
Table 6: calibration (temperature fitted on validation); Table 7: flagged subgroups;
Table 8: each arm minus baseline, paired. Figures: reliability diagrams, confusion matrices, training
curves, threshold curves, Grad-CAM examples, dataset figures. Synthetic data is labelled at the top.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from core import io
from core.log import add_verbosity_flags, setup_logging

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", type=Path, required=True, help="a sweep folder: RESULTS/<sweep>")
    parser.add_argument("--out", type=Path, required=True, help="folder for report.md and figures/")
    parser.add_argument("--gradcam-examples", type=int, default=4, help="Grad-CAM images per arm (0: none)")
    args = add_verbosity_flags(parser).parse_args(argv)
    setup_logging(args)
    from dashboards.reporting import build_report
    from dashboards.results import is_sweep

    if not is_sweep(args.sweep):
        print(f"error: {args.sweep} is not a sweep folder (no sweep.json or summary.csv)", file=sys.stderr)
        return 2
    try:
        log.info("wrote %s", build_report(args.sweep, args.out, args.gradcam_examples))
    except io.DiskFull as e:  # each file is written whole or not at all: the last report's stay
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
