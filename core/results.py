"""The sweep-level results files: one summary row per arm, and sweep.json.

RESULTS/<sweep>/summary.csv and sweep.json are what the dashboard and the report read
first; each arm's own folder holds the run files `core.train` writes.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from core import io
from core.labels import CLASSES

STATUSES = ("pending", "running", "finished", "failed")
SUMMARY_COLUMNS = ("arm", "status", "test_acc", "test_macro_f1", "test_balanced_acc", "test_mel_recall",
                   "test_mel_auc", *(f"recall_{c}" for c in CLASSES), "selected_epoch", "select_on",
                   "epochs_run", "wall_seconds", "synthetic_data")


def summary_row(arm: str, run_dir: str | Path, status: str, wall_seconds: float | None = None) -> dict:
    """One summary.csv row from an arm's run folder (metrics.json when it exists)."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {STATUSES}")
    row = dict.fromkeys(SUMMARY_COLUMNS)
    row.update(arm=arm, status=status, wall_seconds=wall_seconds)
    metrics_file = Path(run_dir) / "metrics.json"
    if metrics_file.exists():
        metrics = json.loads(metrics_file.read_text())
        test = metrics["test"]
        row.update(test_acc=test["accuracy"], test_macro_f1=test["macro_f1"],
                   test_balanced_acc=test["balanced_accuracy"], test_mel_recall=test["per_class"]["mel"]["recall"],
                   test_mel_auc=test["mel_auc"], selected_epoch=metrics["selected_epoch"],
                   select_on=metrics["select_on"], epochs_run=metrics["epochs_run"],
                   synthetic_data=metrics["synthetic_data"],
                   **{f"recall_{c}": test["per_class"][c]["recall"] for c in CLASSES})
    return row


def write_summary(sweep_dir: str | Path, rows: list[dict]) -> Path:
    return io.write_csv(Path(sweep_dir) / "summary.csv", pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS)))
