"""An ensemble of arms: the mean of their probabilities, evaluated like any run.

    python -m core.ensemble --sweep RESULTS/SWEEP --arms baseline sampler b2_mel_select [--name NAME]

Writes RESULTS/SWEEP/<name>/ (default `ensemble_<arm>+<arm>...`) with predictions_val.csv,
predictions_test.csv, splits.csv, config.json (the members) and metrics.json (everything a
run's has: intervals, calibration, operating points chosen on validation; subgroups when
the sweep's data root is readable), and adds its row to summary.csv, so the dashboard and
the report show it beside the arms. The members must share the sweep's split.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from core import io
from core.data.metadata import DatasetError, find_metadata, read_metadata
from core.metrics import evaluate_run, predictions_frame, read_predictions
from core.results import summary_row

SPLITS = ("val", "test")


def mean_predictions(run_dirs: list[Path], split: str) -> pd.DataFrame:
    """The members' predictions on one split, averaged image by image (aligned by image_id)."""
    y, first, frame = read_predictions(run_dirs[0] / f"predictions_{split}.csv")
    ids = frame["image_id"]
    total = first.copy()
    for run in run_dirs[1:]:
        _, probs, other = read_predictions(run / f"predictions_{split}.csv")
        order = other.set_index("image_id").index.get_indexer(ids)
        if len(other) != len(ids) or (order < 0).any():
            raise ValueError(f"{run.name} and {run_dirs[0].name} were evaluated on different {split} images: "
                             "ensemble arms of one sweep")
        total += probs[order]
    return predictions_frame(ids, y, total / len(run_dirs))


def test_info(sweep: Path, splits: pd.DataFrame) -> pd.DataFrame:
    """The test images' lesion ids, with the sweep's metadata columns when its data root is readable."""
    info = splits.set_index("image_id")[["lesion_id"]]
    try:
        data_root = json.loads((sweep / "sweep.json").read_text()).get("data_root")
        if not data_root:
            return info
        meta = read_metadata(find_metadata(data_root)).set_index("image_id")
    except (OSError, ValueError, DatasetError):
        return info
    return info.join(meta.drop(columns=["lesion_id", "dx"], errors="ignore"))


def build_ensemble(sweep: Path, arms: list[str], name: str | None = None) -> Path:
    if len(arms) < 2:
        raise ValueError("an ensemble needs at least two arms")
    runs = [sweep / arm for arm in arms]
    missing = [r.name for r in runs if not (r / "metrics.json").is_file()]
    if missing:
        raise ValueError(f"arm(s) without results in {sweep}: {', '.join(missing)} (finished arms only)")
    out = sweep / (name or "ensemble_" + "+".join(arms))
    frames = {split: mean_predictions(runs, split) for split in SPLITS}
    for split, frame in frames.items():
        io.write_csv(out / f"predictions_{split}.csv", frame)
    shutil.copy(runs[0] / "splits.csv", out / "splits.csv")
    splits = pd.read_csv(out / "splits.csv", dtype=str)
    member_configs = [json.loads((r / "config.json").read_text()) for r in runs]
    member_metrics = [json.loads((r / "metrics.json").read_text()) for r in runs]
    replicates = min(c.get("bootstrap_replicates", 1000) for c in member_configs)
    metrics = evaluate_run(frames["val"], frames["test"], test_info(sweep, splits), replicates,
                           member_configs[0].get("seed", 0))
    metrics.update(members=arms, selected_epoch=None, select_on="ensemble (mean probability)", epochs_run=None,
                   synthetic_data=any(m["synthetic_data"] for m in member_metrics),
                   data_fingerprint=member_metrics[0].get("data_fingerprint"))
    io.write_json(out / "config.json", {"name": out.name, "ensemble_of": arms, "members": member_configs})
    io.write_json(out / "metrics.json", metrics)
    _add_summary_row(sweep, out)
    return out


def _add_summary_row(sweep: Path, out: Path) -> None:
    summary = pd.read_csv(sweep / "summary.csv")
    row = pd.DataFrame([summary_row(out.name, out, "finished")])
    summary = pd.concat([summary[summary["arm"] != out.name], row], ignore_index=True)
    io.write_csv(sweep / "summary.csv", summary)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.ensemble", description=__doc__.split("\n\n")[0])
    p.add_argument("--sweep", type=Path, required=True, help="RESULTS/SWEEP, a finished (or partly finished) sweep")
    p.add_argument("--arms", nargs="+", required=True, help="two or more finished arms")
    p.add_argument("--name", help="the ensemble's folder name (default ensemble_<arm>+<arm>...)")
    args = p.parse_args(argv)
    try:
        out = build_ensemble(args.sweep, args.arms, args.name)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    test = json.loads((out / "metrics.json").read_text())["test"]
    print(f"{out.name}: test acc {test['accuracy']:.4f} macro-F1 {test['macro_f1']:.4f} balanced acc "
          f"{test['balanced_accuracy']:.4f} mel recall {test['per_class']['mel']['recall']:.4f} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
