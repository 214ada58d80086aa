"""The results contract: every file name, and one writer and one reader for each file.

docs/results-contract.md describes every file and field. A run folder is what `core.train` writes
for one run; a sweep folder holds a run folder per arm (`<arm>/`) beside summary.csv,
splits.csv and sweep.json. An arm trained with several seeds keeps its first seed's run
in its folder and the others under `seeds/`; one sampled several times keeps its best
sample there and the others under `samples/`. Readers return None for a file not
written yet: every write is atomic (core/io.py), so a file is whole or absent.
"""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from core import io
from core.labels import CLASS_INDEX, CLASSES, PROB_COLUMNS

# A run folder
CONFIG = "config.json"
HISTORY = "history.csv"
METRICS = "metrics.json"  # written last: its presence marks the run finished
CHECKPOINT = "best.pt"
OOD = "ood.npz"  # the out-of-distribution warning's statistic (core/ood.py)
RESUME = "last.pt"
SPLITS = "splits.csv"
EXCLUDED = "excluded.csv"
EXTERNAL = "external"  # the split name of the external test set
EXTERNAL_PREDICTIONS = "predictions_external.csv"
EXTERNAL_METRICS = "metrics_external.json"
PREDICTION_COLUMNS = ("image_id", "dx", *PROB_COLUMNS)  # predictions_*.csv
# A sweep folder
SUMMARY = "summary.csv"
SWEEP_RECORD = "sweep.json"
SEEDS_DIR = "seeds"  # <arm>/seeds/<name>/: the runs of an arm's other training seeds
SAMPLES_DIR = "samples"  # <arm>/samples/<trial_id>/: an arm's other hyperparameter samples


def predictions_name(split: str, suffix: str = "") -> str:
    """predictions_val.csv, predictions_test.csv; suffix "_tta" for the TTA predictions."""
    return f"predictions_{split}{suffix}.csv"


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def write_config(run_dir: Path, config: dict) -> Path:
    return io.write_json(Path(run_dir) / CONFIG, config)


def read_config(run_dir: Path) -> dict | None:
    return read_json(Path(run_dir) / CONFIG)


def write_history(run_dir: Path, rows: list[dict]) -> Path:
    return io.write_csv(Path(run_dir) / HISTORY, pd.DataFrame(rows))


def read_history(run_dir: Path) -> pd.DataFrame | None:
    path = Path(run_dir) / HISTORY
    return pd.read_csv(path) if path.is_file() else None


def write_metrics(run_dir: Path, metrics: dict) -> Path:
    return io.write_json(Path(run_dir) / METRICS, metrics)


def read_metrics(run_dir: Path) -> dict | None:
    return read_json(Path(run_dir) / METRICS)


def write_external_metrics(run_dir: Path, metrics: dict) -> Path:
    return io.write_json(Path(run_dir) / EXTERNAL_METRICS, metrics)


def read_external_metrics(run_dir: Path) -> dict | None:
    """metrics_external.json (`python -m core.evaluate --external`), None when the run was not scored."""
    return read_json(Path(run_dir) / EXTERNAL_METRICS)


def write_predictions(run_dir: Path, split: str, frame: pd.DataFrame, suffix: str = "") -> Path:
    return io.write_csv(Path(run_dir) / predictions_name(split, suffix), frame)


def predictions_path(run_dir: Path, split: str, suffix: str = "") -> Path:
    """Read it with read_predictions, which validates the columns."""
    return Path(run_dir) / predictions_name(split, suffix)


def predictions_frame(image_ids, y_true: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    """The predictions_*.csv table: image_id, dx (class name), p_akiec .. p_vasc."""
    frame = pd.DataFrame(np.asarray(probs, dtype=float), columns=list(PROB_COLUMNS))
    frame.insert(0, "dx", [CLASSES[i] for i in np.asarray(y_true, dtype=int)])
    frame.insert(0, "image_id", list(image_ids))
    return frame


def read_predictions(path: str | Path) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Read and validate a predictions file; return (y_true, probs, frame)."""
    frame = pd.read_csv(path, dtype={"image_id": str})
    y_true, probs = prediction_arrays(frame, str(path))
    return y_true, probs, frame


def prediction_arrays(frame: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, probs) of a predictions frame, or ValueError saying what is wrong."""
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: missing columns {missing}; expected {list(PREDICTION_COLUMNS)}")
    if frame.empty:
        raise ValueError(f"{source}: no rows")
    unknown = sorted(set(frame["dx"].astype(str)) - set(CLASSES))
    if unknown:
        raise ValueError(f"{source}: unknown dx values {unknown}; expected one of {list(CLASSES)}")
    probs = frame[list(PROB_COLUMNS)].to_numpy(dtype=float)
    if not np.isfinite(probs).all() or (probs < 0).any() or (probs > 1).any():
        raise ValueError(f"{source}: probabilities must be finite and in [0, 1]")
    sums = probs.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1) > 1e-3)
    if len(bad):
        i = bad[0]
        raise ValueError(
            f"{source}: probabilities of {len(bad)} rows do not sum to 1 "
            f"(first: row {i}, image_id {frame['image_id'].iloc[i]!r}, sum {sums[i]:.4f})"
        )
    y_true = frame["dx"].map(CLASS_INDEX).to_numpy(dtype=int)
    return y_true, probs


def write_splits(folder: Path, splits: pd.DataFrame) -> Path:
    return io.write_csv(Path(folder) / SPLITS, splits)


def read_splits(folder: Path) -> pd.DataFrame | None:
    path = Path(folder) / SPLITS
    return pd.read_csv(path, dtype=str) if path.is_file() else None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def sweep_started(record: dict, **run: object) -> dict:
    """sweep.json at a start or a --resume: running, not ended, one more entry in `runs`.

    `record` holds the sweep's own fields (profile, data_root, data_fingerprint, arms, ...);
    `started` is set on the first start only."""
    record = {**record, "status": "running", "ended": None}
    record.setdefault("started", now())
    record["runs"] = [*record.get("runs", []), {"started": now(), "ended": None, **run}]
    return record


def sweep_ended(record: dict, status: str) -> dict:
    """sweep.json when a run of the sweep ends: its status and end time, on the record and its last run."""
    ended = now()
    runs = [*record["runs"][:-1], {**record["runs"][-1], "ended": ended}]
    return {**record, "status": status, "ended": ended, "runs": runs}


def write_sweep_record(sweep_dir: Path, record: dict) -> Path:
    return io.write_json(Path(sweep_dir) / SWEEP_RECORD, record)


def read_sweep_record(sweep_dir: Path) -> dict | None:
    return read_json(Path(sweep_dir) / SWEEP_RECORD)


STATUSES = ("pending", "running", "finished", "failed")
HEADLINE = ("test_acc", "test_macro_f1", "test_balanced_acc", "test_mel_recall", "test_mel_auc")
SEED_COLUMNS = ("seeds", *(f"{name}_{stat}" for name in HEADLINE for stat in ("mean", "std")))
SUMMARY_COLUMNS = ("arm", "status", *HEADLINE, *(f"recall_{c}" for c in CLASSES), "selected_epoch", "select_on",
                   "epochs_run", "wall_seconds", "synthetic_data", *SEED_COLUMNS,
                   "error")  # a failed arm's error that no retry could fix (ray_jobs/permanent.py)


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


def summary_row(arm: str, status: str, metrics: dict | None = None, seed_metrics: list[dict] = (),
                wall_seconds: float | None = None) -> dict:
    """One summary.csv row: a pure function of the arm's metrics.json (None while it has none)
    and those of its other training seeds."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {STATUSES}")
    row = dict.fromkeys(SUMMARY_COLUMNS)
    row.update(arm=arm, status=status, wall_seconds=wall_seconds)
    headlines = [headline(m) for m in ([metrics] if metrics else []) + list(seed_metrics)]
    if metrics:
        row.update(**headlines[0], selected_epoch=metrics["selected_epoch"],
                   select_on=metrics["select_on"], epochs_run=metrics["epochs_run"],
                   synthetic_data=metrics["synthetic_data"],
                   **{f"recall_{c}": metrics["test"]["per_class"][c]["recall"] for c in CLASSES})
    row.update(seed_statistics(headlines))
    return row


def seed_runs(arm_dir: str | Path) -> list[Path]:
    """An arm's finished runs, one per training seed: its own folder first, then those under seeds/
    (in name order); a run counts once its metrics.json is written."""
    arm_dir = Path(arm_dir)
    return [run for run in [arm_dir, *sorted(arm_dir.glob(f"{SEEDS_DIR}/*"))] if (run / METRICS).is_file()]


def run_summary_row(arm: str, run_dir: str | Path, status: str, wall_seconds: float | None = None) -> dict:
    """summary_row of a local run folder (its metrics.json and its seeds/ runs' ones)."""
    seeds = [read_metrics(folder) for folder in sorted(Path(run_dir).glob(f"{SEEDS_DIR}/*"))]
    return summary_row(arm, status, read_metrics(run_dir), [m for m in seeds if m], wall_seconds)


def write_summary(sweep_dir: str | Path, rows: list[dict]) -> Path:
    return io.write_csv(Path(sweep_dir) / SUMMARY, pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS)))


def read_summary(sweep_dir: str | Path) -> pd.DataFrame | None:
    path = Path(sweep_dir) / SUMMARY
    return pd.read_csv(path, dtype={"arm": str}) if path.is_file() else None


def write_ood(run_dir: Path, arrays: dict) -> Path:
    """ood.npz: the out-of-distribution statistic's arrays (core/ood.py)."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to the temporary name
            np.savez(f, **arrays)

    return io.atomic_write(Path(run_dir) / OOD, write)


def read_ood(run_dir: Path) -> dict | None:
    """ood.npz as plain arrays (allow_pickle=False: nothing in it can run code); None for older runs."""
    path = Path(run_dir) / OOD
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as arrays:
        return {k: arrays[k] for k in arrays.files}
