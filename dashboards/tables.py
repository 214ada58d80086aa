"""The study's tables as DataFrames, built from what dashboards.results reads.

Table 2: overall test metrics per arm; Table 3: per-class test recall per arm;
Table 4: melanoma operating points; Table 5: test figures with lesion-level intervals;
Table 6: calibration; subgroup rows per arm; Table 9: spread over training seeds; Table 10:
the external test set. The dashboard and the report both show these.
"""
from __future__ import annotations

import pandas as pd

from core.evaluation.bootstrap import interval_text
from core.evaluation.findings import FIGURE_NAMES
from core.labels import CLASSES
from core.results import HEADLINE
from dashboards.reference import study_table

OVERALL_COLUMNS = {
    "arm": "arm",
    "status": "status",
    "test_acc": "test acc",
    "test_macro_f1": "macro-F1",
    "test_balanced_acc": "bal. acc",
    "test_mel_recall": "mel recall",
    "test_mel_auc": "mel AUC",
    "wall_seconds": "wall s",
    "progress": "progress",
    "selected_epoch": "epoch",
    "select_on": "selects on",
}
# this sweep's column: the study's column beside it
STUDY_COLUMNS = {"test acc": "study test acc", "macro-F1": "study macro-F1", "mel recall": "study mel recall"}
POINT_COLUMNS = ("target_recall", "threshold", "precision", "recall", "specificity", "tp", "fp", "tn", "fn")
VARIANTS = {
    "chosen_on_val": "threshold chosen on validation, figures on test",
    "chosen_on_test": "threshold chosen on test: LEAKS test labels (the source study's method), comparison only",
}


def overall_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Table 2: one row per arm. `progress` counts the epochs run, `epoch` is the selected one."""
    table = summary.assign(progress=[_progress(done, total) for done, total in
                                     zip(summary["epochs_done"], summary["epochs"], strict=True)])
    table = table[list(OVERALL_COLUMNS)].rename(columns=OVERALL_COLUMNS)
    table["epoch"] = table["epoch"].astype("Int64")  # blank while an arm runs
    # every arm selects on validation; blank while it runs
    table["selects on"] = table["selects on"].map(lambda s: s.removeprefix("val_") if isinstance(s, str) else s)
    return table.reset_index(drop=True)


def study_comparison(summary: pd.DataFrame) -> pd.DataFrame:
    """Each arm's test accuracy, macro-F1 and melanoma recall, the source study's figure beside each.

    Only meaningful for a sweep on the real HAM10000: callers show it for no other data.
    """
    table = overall_table(summary)[["arm", *STUDY_COLUMNS]].merge(study_table(), on="arm", how="left")
    return table[["arm", *(c for pair in STUDY_COLUMNS.items() for c in pair)]]


def _progress(done, total) -> str:
    return f"{int(done)}/{int(total)}" if pd.notna(total) else str(int(done))


SEED_FIGURES = {key: OVERALL_COLUMNS[key] for key in HEADLINE}  # the same labels as Table 2


SEED_NOTE = ("Mean ± sample standard deviation over the training seeds, on the same split and test images: "
             "what retraining alone changes. The other tables show each arm's first seed.")


def seed_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Table 9: mean ± standard deviation over the training seeds of each arm run with two or more."""
    several = summary[pd.to_numeric(summary.get("seeds"), errors="coerce").fillna(0) > 1]
    return pd.DataFrame([{"arm": row["arm"], "seeds": int(row["seeds"]),
                          **{label: f"{row[f'{key}_mean']:.3f} ± {row[f'{key}_std']:.3f}"
                             for key, label in SEED_FIGURES.items()}}
                         for _, row in several.iterrows()], columns=["arm", "seeds", *SEED_FIGURES.values()])


def recall_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Table 3: test recall of each class (columns) for each arm (rows)."""
    table = summary[["arm", *(f"recall_{c}" for c in CLASSES)]]
    return table.rename(columns={f"recall_{c}": c for c in CLASSES}).reset_index(drop=True)


def operating_point_rows(metrics: dict, variant: str = "chosen_on_val",
                         points: str = "mel_operating_points") -> pd.DataFrame:
    """One row per target recall (0.85, 0.90, 0.95): threshold and test figures of one arm, on the
    plain probabilities or (`points="mel_operating_points_calibrated"`) the temperature-scaled ones."""
    rows = metrics[points][variant]
    return pd.DataFrame([{k: row.get(k) for k in POINT_COLUMNS} for row in rows], columns=list(POINT_COLUMNS))


def operating_points_by_arm(metrics_by_arm: dict[str, dict | None], variant: str = "chosen_on_val") -> pd.DataFrame:
    """Table 4: one row per arm; for each target recall ("0.85" ...): threshold t, precision P,
    recall R and specificity spec.

    An arm without metrics (running, failed) keeps its row, empty.
    """
    records = []
    for arm, metrics in metrics_by_arm.items():
        record = {"arm": arm}
        if metrics is not None:
            for row in operating_point_rows(metrics, variant).itertuples():
                at = f"{row.target_recall:.2f}"
                record.update({f"{at} t": row.threshold, f"{at} P": row.precision,
                               f"{at} R": row.recall, f"{at} spec": row.specificity})
        records.append(record)
    return pd.DataFrame(records)


def split_counts(splits: pd.DataFrame) -> pd.DataFrame:
    """Images per class (rows) in each split (columns), with totals."""
    table = pd.crosstab(splits["dx"], splits["split"], margins=True, margins_name="total")
    order = [s for s in ("train", "val", "test") if s in table.columns] + ["total"]
    return table.reindex(index=[*CLASSES, "total"], columns=order, fill_value=0).rename_axis(
        index="dx", columns=None).reset_index()


INTERVAL_FIGURES = {"accuracy": "test acc", "balanced_accuracy": "bal. acc", "macro_f1": "macro-F1",
                    "recall_mel": "mel recall", "mel_auc": "mel AUC"}


def _rows_by_arm(metrics_by_arm: dict[str, dict | None], key: str, cells) -> pd.DataFrame:
    """One row per arm: `cells(metrics[key])` where the arm's metrics have `key`, else the arm alone."""
    return pd.DataFrame([{"arm": arm, **(cells(metrics[key]) if metrics and metrics.get(key) else {})}
                         for arm, metrics in metrics_by_arm.items()])


def intervals_by_arm(metrics_by_arm: dict[str, dict | None]) -> pd.DataFrame:
    """Table 5: each arm's test figures with their 95% lesion-level bootstrap intervals."""
    return _rows_by_arm(metrics_by_arm, "test_intervals", lambda intervals: {
        **{label: interval_text(intervals["figures"].get(key)) for key, label in INTERVAL_FIGURES.items()},
        "lesions": intervals["lesions"], "replicates": intervals["replicates"]})


def calibration_by_arm(metrics_by_arm: dict[str, dict | None]) -> pd.DataFrame:
    """Table 6: temperature fitted on validation; test ECE, NLL and Brier before and after it."""
    return _rows_by_arm(metrics_by_arm, "calibration", lambda calibration: {
        "T": calibration["temperature"],
        **{f"{label} {when}": calibration["test"][when][name]
           for name, label in (("ece", "ECE"), ("nll", "NLL"), ("brier", "Brier")) for when in ("before", "after")}})


SUBGROUP_COLUMNS = ("attribute", "group", "n_images", "n_mel", "accuracy", "mel_recall", "mel_recall_lo",
                    "mel_recall_hi", "flagged")


def subgroup_rows(metrics: dict | None, flagged_only: bool = False) -> pd.DataFrame:
    """An arm's test figures per subgroup (sex, age band, localization, dataset, dx_type)."""
    rows = ((metrics or {}).get("subgroups") or {}).get("rows", [])
    table = pd.DataFrame(rows, columns=list(SUBGROUP_COLUMNS)) if rows else pd.DataFrame(columns=SUBGROUP_COLUMNS)
    return table[table["flagged"]].reset_index(drop=True) if flagged_only else table


EXTERNAL_NOTE = ("The ISIC 2018 Task 3 test set (`python -m core.evaluate --external`): held out from "
                 "HAM10000 but mostly from the same sources, so new images from familiar clinics, not another "
                 "population. Balanced accuracy is the challenge's metric (balanced multiclass accuracy); melanoma "
                 "thresholds stay the ones chosen on validation. Estimate [95% bootstrap interval].")


EXTERNAL_FIGURES = {"accuracy": "external acc", "macro_f1": "external macro-F1", "recall_mel": "external mel recall",
                    "mel_auc": "external mel AUC"}


def external_by_arm(results_by_arm: dict[str, dict | None]) -> pd.DataFrame:
    """Table 10: the internal test balanced accuracy beside the external figures, for the arms scored."""
    rows = []
    for arm, result in results_by_arm.items():
        if result is None:
            continue
        figures = result["intervals"]["figures"]
        rows.append({"arm": arm, "images": result["external_data"]["images"],
                     "internal bal. acc": f"{result['internal_test']['balanced_accuracy']:.3f}",
                     "external bal. acc": interval_text(result["balanced_multiclass_accuracy"]),
                     **{label: interval_text(figures.get(key)) for key, label in EXTERNAL_FIGURES.items()}})
    return pd.DataFrame(rows)


FINDINGS_NOTE = ("Each difference is arm minus reference on the same test images, over every training seed of "
                 "both arms: a t-interval on the seed means (Welch-Satterthwaite degrees of freedom) combined with a "
                 "lesion-level bootstrap of the shared test set. P(arm > ref) is the probability that a seed of the "
                 "arm beats a seed of the reference; `seeds` counts the reference's x the arm's. The verdict uses the "
                 "p-values adjusted over every comparison (Benjamini-Hochberg); an arm with one training seed is "
                 "`one run`, never separated.")


def findings_frame(found: dict) -> pd.DataFrame:
    """One row per finding of findings.json: the comparison, the figure, the difference and its interval,
    P(arm > reference), the adjusted p-value and the verdict (the forest plots draw these rows)."""
    rows = [{"comparison": f"{e['arm']} - {e['reference']}", "figure": FIGURE_NAMES[e["metric"]],
             "seeds": " x ".join(map(str, e["seeds"])), "estimate": e["estimate"], "low": e["low"],
             "high": e["high"], "P(arm > ref)": e["p_improvement"], "adjusted p": e["p_adjusted"],
             "verdict": e["verdict"]} for e in found["findings"]]
    return pd.DataFrame(rows, columns=["comparison", "figure", "seeds", "estimate", "low", "high", "P(arm > ref)",
                                       "adjusted p", "verdict"])
