"""An ensemble of arms: the mean of their probabilities, evaluated like any run.

    python -m core.evaluation.ensemble --sweep RESULTS/SWEEP --arms baseline sampler b2_mel_select [--name NAME]

Writes RESULTS/SWEEP/<name>/ (default `ensemble_<arm>+<arm>...`) with predictions_val.csv,
predictions_test.csv, splits.csv, config.json (the members) and metrics.json (everything a
run's has: intervals, calibration, operating points chosen on validation; subgroups when
the sweep's data root is readable), and adds its row to summary.csv, so the dashboard and
the report show it beside the arms. The members must share the sweep's split.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.log import add_verbosity_flags, setup_logging

if TYPE_CHECKING:
    import pandas as pd

SPLITS = ("val", "test")


def mean_predictions(run_dirs: list[Path], split: str) -> pd.DataFrame:
    """The members' predictions on one split, averaged image by image (aligned by image_id)."""
    from core import results

    y, first, frame = results.read_predictions(results.predictions_path(run_dirs[0], split))
    ids = frame["image_id"]
    total = first.copy()
    for run in run_dirs[1:]:
        _, probs, other = results.read_predictions(results.predictions_path(run, split))
        order = other.set_index("image_id").index.get_indexer(ids)
        if len(other) != len(ids) or (order < 0).any():
            raise ValueError(f"{run.name} and {run_dirs[0].name} were evaluated on different {split} images: "
                             "ensemble arms of one sweep")
        total += probs[order]
    return results.predictions_frame(ids, y, total / len(run_dirs))


def test_info(sweep: Path, splits: pd.DataFrame) -> pd.DataFrame:
    """The test images' lesion ids, with the sweep's metadata columns when its data root is readable."""
    from core import results
    from core.data.metadata import DatasetError, find_metadata, read_metadata

    info = splits.set_index("image_id")[["lesion_id"]]
    try:
        data_root = (results.read_sweep_record(sweep) or {}).get("data_root")
        if not data_root:
            return info
        meta = read_metadata(find_metadata(data_root)).set_index("image_id")
    except (OSError, ValueError, DatasetError):
        return info
    return info.join(meta.drop(columns=["lesion_id", "dx"], errors="ignore"))


def build_ensemble(sweep: Path, arms: list[str], name: str | None = None) -> Path:
    from core import results
    from core.evaluation import evaluate_run

    if len(arms) < 2:
        raise ValueError("an ensemble needs at least two arms")
    runs = [sweep / arm for arm in arms]
    member_metrics = [results.read_metrics(r) for r in runs]
    missing = [r.name for r, m in zip(runs, member_metrics, strict=True) if m is None]
    if missing:
        raise ValueError(f"arm(s) without results in {sweep}: {', '.join(missing)} (finished arms only)")
    out = sweep / (name or "ensemble_" + "+".join(arms))
    frames = {split: mean_predictions(runs, split) for split in SPLITS}
    for split, frame in frames.items():
        results.write_predictions(out, split, frame)
    splits = results.read_splits(runs[0])
    results.write_splits(out, splits)
    member_configs = [results.read_config(r) for r in runs]
    replicates = min(c.get("bootstrap_replicates", 1000) for c in member_configs)
    metrics = evaluate_run(frames["val"], frames["test"], test_info(sweep, splits), replicates,
                           member_configs[0].get("seed", 0))
    metrics.update(members=arms, selected_epoch=None, select_on="ensemble (mean probability)", epochs_run=None,
                   synthetic_data=any(m["synthetic_data"] for m in member_metrics),
                   data_fingerprint=member_metrics[0].get("data_fingerprint"))
    results.write_config(out, {"name": out.name, "ensemble_of": arms, "members": member_configs})
    results.write_metrics(out, metrics)
    _add_summary_row(sweep, out.name, metrics)
    return out


def _add_summary_row(sweep: Path, name: str, metrics: dict) -> None:
    from core import results

    summary = results.read_summary(sweep)
    rows = summary[summary["arm"] != name].to_dict("records") + [results.summary_row(name, "finished", metrics)]
    results.write_summary(sweep, rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.evaluation.ensemble", description=__doc__.split("\n\n")[0])
    p.add_argument("--sweep", type=Path, required=True, help="RESULTS/SWEEP, a finished (or partly finished) sweep")
    p.add_argument("--arms", nargs="+", required=True, help="two or more finished arms")
    p.add_argument("--name", help="the ensemble's folder name (default ensemble_<arm>+<arm>...)")
    args = add_verbosity_flags(p).parse_args(argv)
    setup_logging(args)
    try:
        out = build_ensemble(args.sweep, args.arms, args.name)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from core import results

    test = results.read_metrics(out)["test"]
    print(f"{out.name}: test acc {test['accuracy']:.4f} macro-F1 {test['macro_f1']:.4f} balanced acc "
          f"{test['balanced_accuracy']:.4f} mel recall {test['per_class']['mel']['recall']:.4f} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
