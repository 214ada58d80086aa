"""Paired comparison of two runs on the same test set: `python -m core.evaluation.compare RUN_A RUN_B`.

Prints (or writes with --out) B minus A for accuracy, balanced accuracy, macro-F1, per-class
recall and melanoma AUC, each with a lesion-level paired bootstrap 95% interval, and
McNemar's exact test on top-1 correctness. Both runs must hold predictions for the same
test images (as every arm of one sweep does: they share the sweep's split).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.config import RunConfig
from core.log import add_verbosity_flags, setup_logging

REPLICATES = RunConfig.bootstrap_replicates


def compare_runs(run_a: str | Path, run_b: str | Path, replicates: int = REPLICATES, seed: int = 0) -> dict:
    from core import results
    from core.evaluation.bootstrap import paired_comparison

    run_a, run_b = Path(run_a), Path(run_b)
    y_a, probs_a, frame_a = results.read_predictions(results.predictions_path(run_a, "test"))
    _, probs_b, frame_b = results.read_predictions(results.predictions_path(run_b, "test"))
    order = frame_b.set_index("image_id").index.get_indexer(frame_a["image_id"])
    if len(frame_a) != len(frame_b) or (order < 0).any():
        raise ValueError(f"{run_a.name} and {run_b.name} were tested on different images: "
                         "compare arms of one sweep (they share its split)")
    lesions = results.read_splits(run_a).set_index("image_id")["lesion_id"]
    result = paired_comparison(y_a, probs_a, probs_b[order], lesions.loc[frame_a["image_id"]].to_numpy(),
                               replicates, seed)
    return {"a": run_a.name, "b": run_b.name, **result}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.evaluation.compare", description=__doc__.split("\n\n")[0])
    p.add_argument("run_a", type=Path, help="the reference run folder (e.g. RESULTS/<sweep>/baseline)")
    p.add_argument("run_b", type=Path, help="the run compared with it")
    p.add_argument("--replicates", type=int, default=REPLICATES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write the comparison as JSON here")
    args = add_verbosity_flags(p).parse_args(argv)
    setup_logging(args)
    try:
        result = compare_runs(args.run_a, args.run_b, args.replicates, args.seed)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out:
        from core import io

        io.write_json(args.out, result)
    print(f"{result['b']} minus {result['a']} (95% lesion-level paired bootstrap, {args.replicates} replicates):")
    for name, figure in result["figures"].items():
        if figure["difference"] is not None and figure["lo"] is not None:
            print(f"  {name:20s} {figure['difference']:+.4f}  [{figure['lo']:+.4f}, {figure['hi']:+.4f}]")
    print(f"  McNemar (top-1): {json.dumps(result['mcnemar'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
