"""The sweep-level results files: one summary row per arm, and sweep.json.

RESULTS/<sweep>/summary.csv and sweep.json are what the dashboard and the report read
first; each arm's own folder holds the run files `core.train` writes. An arm trained with
several seeds (`run_all.py --seeds N`) keeps its first seed's run in its folder and the
others under `seeds/`; its row adds the mean and standard deviation over all of them.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from core import io
from core.labels import CLASSES

STATUSES = ("pending", "running", "finished", "failed")
HEADLINE = ("test_acc", "test_macro_f1", "test_balanced_acc", "test_mel_recall", "test_mel_auc")
SEED_COLUMNS = ("seeds", *(f"{name}_{stat}" for name in HEADLINE for stat in ("mean", "std")))
SUMMARY_COLUMNS = ("arm", "status", *HEADLINE, *(f"recall_{c}" for c in CLASSES), "selected_epoch", "select_on",
                   "epochs_run", "wall_seconds", "synthetic_data", *SEED_COLUMNS)
SEEDS_DIR = "seeds"  # <arm>/seeds/<name>/: the runs of an arm's other training seeds


def headline(metrics: dict) -> dict:
    """The summary's test figures of one run's metrics.json."""
    test = metrics["test"]
    return {"test_acc": test["accuracy"], "test_macro_f1": test["macro_f1"],
            "test_balanced_acc": test["balanced_accuracy"], "test_mel_recall": test["per_class"]["mel"]["recall"],
            "test_mel_auc": test["mel_auc"]}


def seed_statistics(headlines: list[dict]) -> dict:
    """`seeds` (the finished runs' count) and, over two or more, the mean and sample standard
    deviation (ddof 1) of each headline figure."""
    runs = pd.DataFrame(headlines, columns=list(HEADLINE))
    stats = {"seeds": len(runs)}
    if len(runs) > 1:
        for name in HEADLINE:
            values = runs[name].astype(float)
            stats.update({f"{name}_mean": values.mean(), f"{name}_std": values.std(ddof=1)})
    return stats


def summary_row(arm: str, run_dir: str | Path, status: str, wall_seconds: float | None = None) -> dict:
    """One summary.csv row from an arm's run folder (metrics.json when it exists)."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {STATUSES}")
    row = dict.fromkeys(SUMMARY_COLUMNS)
    row.update(arm=arm, status=status, wall_seconds=wall_seconds)
    metrics_file = Path(run_dir) / "metrics.json"
    headlines = []
    if metrics_file.exists():
        metrics = json.loads(metrics_file.read_text())
        headlines.append(headline(metrics))
        row.update(**headlines[0], selected_epoch=metrics["selected_epoch"],
                   select_on=metrics["select_on"], epochs_run=metrics["epochs_run"],
                   synthetic_data=metrics["synthetic_data"],
                   **{f"recall_{c}": metrics["test"]["per_class"][c]["recall"] for c in CLASSES})
    # the arm's other training seeds (run_all.py --seeds N)
    seed_files = sorted(Path(run_dir).glob(f"{SEEDS_DIR}/*/metrics.json"))
    headlines += [headline(json.loads(f.read_text())) for f in seed_files]
    row.update(seed_statistics(headlines))
    return row


def write_summary(sweep_dir: str | Path, rows: list[dict]) -> Path:
    return io.write_csv(Path(sweep_dir) / "summary.csv", pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS)))
