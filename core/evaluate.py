"""Score trained runs on the ISIC 2018 Task 3 test set (core/evaluation/external.py).

    python -m core.evaluate --external DIR (--run RUN_DIR [RUN_DIR ...] | --sweep SWEEP_DIR)
                            [--labels FILE] [--tta] [--batch-size N]

DIR holds ISIC2018_Task3_Test_GroundTruth.csv (HAM10000 metadata or the challenge's
one-hot format) and the images, unpacked or as ISIC2018_Task3_Test_Images.zip (what
`python -m core.data download` fetches). Writes predictions_external.csv and
metrics_external.json into each run folder and prints internal beside external figures.
Exit status 2 on bad input, 1 when a run failed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.log import add_verbosity_flags, setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--external", type=Path, required=True, metavar="DIR",
                        help="folder holding the ISIC 2018 Task 3 test images and ground truth")
    runs = parser.add_mutually_exclusive_group(required=True)
    runs.add_argument("--run", type=Path, nargs="+", metavar="RUN_DIR", help="finished run folder(s) (hold best.pt)")
    runs.add_argument("--sweep", type=Path, metavar="SWEEP_DIR", help="every arm of this sweep that holds best.pt")
    parser.add_argument("--labels", type=Path, metavar="FILE",
                        help="the ground-truth table, when it is not ISIC2018_Task3_Test_GroundTruth.csv under DIR")
    parser.add_argument("--tta", action="store_true",
                        help="also predict with 8-view flip/rot90 test-time augmentation (reported beside)")
    parser.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per batch (default 64)")
    return add_verbosity_flags(parser)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    from core import results
    from core.data.isic2018 import load_external
    from core.data.metadata import DatasetError
    from core.evaluation.external import TABLE_NOTE, sweep_runs

    try:
        run_dirs = sweep_runs(args.sweep) if args.sweep else args.run
        missing = [str(r) for r in run_dirs if not (r / results.CHECKPOINT).is_file()]
        if missing:
            raise DatasetError(f"no {results.CHECKPOINT} in {', '.join(missing)}: not finished run folder(s)")
        external = load_external(args.external, args.labels)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info = external.ground_truth
    print(f"external: {len(info.frame)} images from {info.path} ({info.format}); {info.lesion_note()}")
    print(TABLE_NOTE)
    failed = [run for run in run_dirs if not _evaluate_one(run, external, args.batch_size, args.tta)]
    if failed:
        print(f"error: {len(failed)} run(s) failed: {', '.join(str(r) for r in failed)}", file=sys.stderr)
    return 1 if failed else 0


def _evaluate_one(run_dir: Path, external, batch_size: int, tta: bool) -> bool:
    from core import results
    from core.evaluation.external import comparison_table, evaluate_external
    from core.inference import load_run

    try:
        trained = load_run(run_dir)
        result = evaluate_external(run_dir, trained, external, batch_size, tta)
    except (OSError, ValueError, KeyError) as e:  # DatasetError and ImageError are ValueErrors
        print(f"error: {run_dir}: {e}", file=sys.stderr)
        return False
    print(f"\n{run_dir}" + ("  [trained on SYNTHETIC demo data]" if result["synthetic_training_data"] else "")
          + ("  [external set is SYNTHETIC]" if result["external_data"]["synthetic"] else ""))
    print(comparison_table(result))
    print(f"  -> {run_dir / results.EXTERNAL_METRICS}")
    return True


if __name__ == "__main__":
    sys.exit(main())
