"""A sweep's report: report.md and PNG figures reproducing the source study's tables and figures.

    build_report(sweep_dir, out)        (python -m dashboards.report, its command line)

Table 2: overall test metrics per arm; Table 3: per-class test recall per arm; Table 4:
melanoma operating points per arm (thresholds chosen on validation, and, labelled as
leaking, chosen on test); Table 5: test figures with lesion-level bootstrap intervals;
Table 6: calibration (temperature fitted on validation); Table 7: flagged subgroups;
Findings (findings.json beside report.md, a forest plot) and Table 8: every comparison of the design,
seed-aware (core/evaluation/findings.py). Figures: reliability diagrams, confusion matrices, training
curves, threshold curves, Grad-CAM examples, dataset figures. Synthetic data is labelled at the top.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from core import io
from core.evaluation.findings import findings_markdown, interval
from core.evaluation.metrics import threshold_curve
from core.explain import cam_mass_on_lesions, cam_mass_summary
from core.log import progress
from core.results import CHECKPOINT, read_external_metrics, read_history, read_metrics
from dashboards import figures
from dashboards.cams import cam_images, outcome_table, report_examples, trained_model
from dashboards.datasets import dataset, write_dataset_figures
from dashboards.reference import STUDY_OPERATING_POINT
from dashboards.results import SweepView, arm_images, load_predictions, load_sweep, sweep_findings_of
from dashboards.tables import (
    EXTERNAL_NOTE,
    FINDINGS_NOTE,
    SEED_NOTE,
    SUBGROUP_COLUMNS,
    VARIANTS,
    calibration_by_arm,
    external_by_arm,
    findings_frame,
    intervals_by_arm,
    operating_points_by_arm,
    overall_table,
    recall_table,
    seed_table,
    study_comparison,
    subgroup_rows,
)

log = logging.getLogger(__name__)

SYNTHETIC_BANNER = ("> **SYNTHETIC demo data.** This sweep ran on the built-in synthetic dataset, not HAM10000. "
                    "No figure in this report is a HAM10000 result or says anything about skin lesions.")
UNKNOWN_BANNER = "> **Data origin unknown**: neither sweep.json nor any arm says whether the data was synthetic."
INFO_KEYS = ("profile", "status", "label", "card", "runner", "data_root", "data_fingerprint", "split_seed",
             "git_commit", "started", "ended")


FINDINGS_FILE = "findings.json"
VERDICT_MARKS = ("higher", "lower")
PAIRED_FIGURES = {"accuracy": "Δ test acc", "balanced_accuracy": "Δ bal. acc", "macro_f1": "Δ macro-F1",
                  "recall_mel": "Δ mel recall", "mel_auc": "Δ mel AUC"}

def markdown_table(frame: pd.DataFrame, digits: dict[str, int] | None = None) -> str:
    """A GitHub-flavoured Markdown table; floats with 4 decimals (or `digits[column]`), blanks as '-'."""
    digits = digits or {}

    def cell(column: str, value) -> str:
        if pd.isna(value):  # None, NaN, or pd.NA of a nullable integer column
            return "-"
        if isinstance(value, float):
            return f"{value:.{digits.get(column, 4)}f}"
        return str(value)

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(frame[c]) else "---" for c in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(c, v) for c, v in zip(frame.columns, row, strict=True)) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


class Report:
    """Collects Markdown lines and writes figures beside them."""

    def __init__(self, sweep: SweepView, out: Path):
        self.sweep, self.out, self.lines = sweep, out, []
        (out / "figures").mkdir(parents=True, exist_ok=True)

    def add(self, *blocks: str) -> None:
        """Paragraphs, lists or tables, each followed by a blank line."""
        for block in blocks:
            self.lines += [block, ""]

    def figure(self, fig: Figure, name: str, caption: str) -> None:
        path = self.out / "figures" / name
        io.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
        self.add(f"![{caption}](figures/{name})")

    def title(self, text: str) -> str:
        return figures.titled(text, self.sweep.synthetic)

    def write(self) -> Path:
        return io.write_text(self.out / "report.md", "\n".join(self.lines))


def build_report(sweep_dir: Path, out: Path, gradcam_examples: int = 4) -> Path:
    """Write out/report.md and out/figures/*.png for the sweep in `sweep_dir`; return report.md."""
    sweep = load_sweep(sweep_dir)
    report = Report(sweep, out)
    metrics = {arm: read_metrics(sweep.arm_dir(arm)) for arm in sweep.arms}
    _header(report)
    if not metrics:
        report.add("The sweep has no arms yet.")
        return report.write()
    _findings(report)
    _tables(report, metrics)
    _seeds(report)
    _external(report)
    for arm in progress(sweep.arms, desc="report: arm figures", unit="arm"):
        _arm_figures(report, arm, metrics[arm])
    _threshold_curves(report, metrics)
    _gradcam(report, metrics, gradcam_examples)
    _dataset(report)
    return report.write()


def _header(report: Report) -> None:
    sweep = report.sweep
    report.add(f"# dermablate report: sweep `{sweep.name}`")
    if sweep.synthetic is not False:
        report.add(SYNTHETIC_BANNER if sweep.synthetic else UNKNOWN_BANNER)
    report.add("\n".join(f"- **{key}**: `{sweep.info[key]}`" for key in INFO_KEYS if sweep.info.get(key) is not None))
    counts = sweep.summary["status"].value_counts()
    if len(counts):
        report.add("Arms: " + ", ".join(f"{n} {status}" for status, n in counts.items()) + ". Figures are on the "
                   "test set at each arm's selected checkpoint unless said otherwise.")


def _tables(report: Report, metrics: dict[str, dict | None]) -> None:
    sweep = report.sweep
    real = sweep.synthetic is False
    report.add("## Table 2: overall test metrics per arm",
               "`progress` counts the epochs run; `epoch` is the selected checkpoint's, chosen on the "
               "validation metric in `selects on`.",
               markdown_table(overall_table(sweep.summary), {"wall s": 1}))
    same = sweep.info.get("same_run_as") or {}
    if same:
        pairs = "; ".join(f"`{arm}` is the same run as `{first}`" for arm, first in same.items())
        report.add(f"On this profile {pairs}: their configs differ in name only (the profile overrides what sets "
                   "them apart), so their rows are the same.")
    if real:
        report.add("### Table 2b: beside the source study",
                   "The `study` columns are the source study's test figures on real HAM10000.",
                   markdown_table(study_comparison(sweep.summary)))
    else:
        report.add("The source study's figures are not shown: they are HAM10000 results and this data is not.")
    recalls = recall_table(sweep.summary)
    report.add("## Table 3: test recall per class", markdown_table(recalls))
    report.figure(figures.recall_heatmap(recalls, report.title("Test recall per class")), "recall_heatmap.png",
                  "Per-class recall heatmap")
    report.add("## Table 4: melanoma operating points",
               f"For each target melanoma recall (0.85, 0.90, 0.95): the largest threshold t on P(mel) that "
               f"reaches it, and the precision P, recall R and specificity spec at t; {VARIANTS['chosen_on_val']}.",
               markdown_table(operating_points_by_arm(metrics, "chosen_on_val")),
               f"### Table 4b: {VARIANTS['chosen_on_test']}",
               markdown_table(operating_points_by_arm(metrics, "chosen_on_test")))
    if real:
        report.add(f"Source study: {STUDY_OPERATING_POINT}.")
    report.add("## Table 5: test figures with 95% intervals",
               "Lesion-level bootstrap (lesions resampled with replacement, all images of each drawn lesion), "
               "percentile intervals, seeded: estimate [low, high].",
               markdown_table(intervals_by_arm(metrics)))
    report.add("## Table 6: calibration",
               "Temperature T fitted on validation (NLL); test ECE (15 bins), NLL and Brier before and after. "
               "The operating points and Tables 2-5 use the uncalibrated probabilities.",
               markdown_table(calibration_by_arm(metrics), {"T": 2}))
    flagged = [rows.assign(arm=arm) for arm, m in metrics.items() if len(rows := subgroup_rows(m, flagged_only=True))]
    report.add("## Table 7: subgroups whose melanoma recall is more than 10 points below the arm's overall",
               markdown_table(pd.concat(flagged)[["arm", *SUBGROUP_COLUMNS[:-1]]]) if flagged
               else "None flagged. The dashboard's arm tab lists every subgroup with its interval.")


def _findings(report: Report) -> None:
    """The Findings section (findings.json beside report.md, a forest plot) and Table 8, one row per
    comparison of the design; nothing when no pair of arms that the design compares has finished."""
    try:
        found = sweep_findings_of(report.sweep)
    except (OSError, ValueError, KeyError) as e:
        report.add("## Findings", f"Not computed: {e}")
        return
    if not found["findings"]:
        return
    io.write_json(report.out / FINDINGS_FILE, found)
    report.add("## Findings", *findings_markdown(found))
    frame = findings_frame(found)
    report.figure(figures.forest_figure(frame, report.title("Differences between arms, seed-aware")), "forest.png",
                  "Forest plot of the findings")
    rows = []
    for comparison, block in frame.groupby("comparison", sort=False):
        entries = [e for e in found["findings"] if f"{e['arm']} - {e['reference']}" == comparison]
        marks = [f"{PAIRED_FIGURES[e['metric']]} {e['verdict']}" for e in entries if e["verdict"] in VERDICT_MARKS]
        rows.append({"comparison": comparison, "seeds": block["seeds"].iloc[0],
                     **{PAIRED_FIGURES[e["metric"]]: interval(e) for e in entries},
                     "separated": "; ".join(marks) or ("one run" if set(block["verdict"]) == {"one run"} else "none")})
    report.add("## Table 8: each comparison of the design, seed-aware",
               f"{FINDINGS_NOTE} All figures: `{FINDINGS_FILE}`.", markdown_table(pd.DataFrame(rows)))


def _seeds(report: Report) -> None:
    spread = seed_table(report.sweep.summary)
    if len(spread):
        report.add("## Table 9: across training seeds", SEED_NOTE, markdown_table(spread))


def _external(report: Report) -> None:
    scored = external_by_arm({arm: read_external_metrics(report.sweep.arm_dir(arm)) for arm in report.sweep.arms})
    if len(scored):
        report.add("## Table 10: external test set (ISIC 2018 Task 3)", EXTERNAL_NOTE, markdown_table(scored))


def _arm_figures(report: Report, arm: str, metrics: dict | None) -> None:
    arm_dir = report.sweep.arm_dir(arm)
    status = report.sweep.summary.set_index("arm").loc[arm, "status"]
    report.add(f"## Arm `{arm}` ({status})")
    if metrics is not None:
        report.figure(figures.confusion_figure(metrics["test"]["confusion"],
                                               report.title(f"{arm}: test confusion matrix")),
                      f"confusion_{arm}.png", f"{arm} confusion matrix")
    if metrics is not None and "calibration" in metrics:
        report.figure(figures.reliability_figure(metrics["calibration"], report.title(f"{arm}: test reliability")),
                      f"reliability_{arm}.png", f"{arm} reliability diagram")
    history = read_history(arm_dir)
    if history is not None and len(history):
        selected = metrics["selected_epoch"] if metrics else None
        report.figure(figures.history_figure(history, selected, report.title(f"{arm}: training")),
                      f"training_{arm}.png", f"{arm} training curves")
    for path in arm_images(arm_dir):  # e.g. the cVAE's figures
        shutil.copy(path, report.out / "figures" / f"{arm}_{path.name}")
        report.add(f"![{arm} {path.stem}](figures/{arm}_{path.name})")


def _threshold_curves(report: Report, metrics: dict[str, dict | None]) -> None:
    curves, marks = {}, {}
    for arm, arm_metrics in metrics.items():
        predictions = load_predictions(report.sweep.arm_dir(arm), "test")
        if arm_metrics is None or predictions is None:
            continue
        curves[arm] = threshold_curve((predictions["dx"] == "mel").to_numpy(), predictions["p_mel"].to_numpy())
        marks[arm] = [r["threshold"] for r in arm_metrics["mel_operating_points"]["chosen_on_val"]
                      if r["threshold"] is not None]
    report.add("## Melanoma precision and recall against the threshold")
    report.figure(figures.threshold_figure(curves, report.title("Melanoma precision and recall on test "
                                                                "(dots: thresholds chosen on validation)"),
                                           marks=marks), "threshold_curves.png", "threshold curves")


def _gradcam(report: Report, metrics: dict[str, dict | None], examples: int) -> None:
    sweep = report.sweep
    report.add("## Grad-CAM examples")
    if sweep.data_root is None or not sweep.data_root.is_dir() or examples < 1:
        report.add(f"Skipped: the sweep's images are not here (data_root `{sweep.data_root}`)."
                   if examples >= 1 else "Skipped (--gradcam-examples 0).")
        return
    _cam_mass(report, metrics)
    report.add("Missed melanomas first, then detected melanomas, then other errors and correct predictions. "
               "Columns: the image, Grad-CAM for the predicted class, Grad-CAM for mel.")
    for arm, arm_metrics in progress(metrics.items(), desc="report: Grad-CAM", unit="arm"):
        arm_dir = sweep.arm_dir(arm)
        predictions = load_predictions(arm_dir, "test")
        if arm_metrics is None or predictions is None or not (arm_dir / CHECKPOINT).is_file():
            continue
        rows = report_examples(outcome_table(predictions), examples)
        try:
            shown = [{**cam_images(arm_dir, sweep.data_root, row.image_id),
                      "caption": f"{row.image_id}\ntrue {row.dx}, predicted {row.predicted}, P(mel) {row.p_mel:.2f}"}
                     for row in rows.itertuples()]
        except (FileNotFoundError, ValueError) as e:  # a missing image, or a checkpoint refused (UntrustedCheckpoint)
            report.add(f"{arm}: no Grad-CAM examples: {e}")
            continue
        report.figure(figures.gradcam_figure(shown, report.title(f"{arm}: Grad-CAM on test images")),
                      f"gradcam_{arm}.png", f"{arm} Grad-CAM examples")


def _cam_mass(report: Report, metrics: dict[str, dict | None]) -> None:
    """Where the data has lesion masks (the demo's, or ISIC's): how much CAM heat lies on the lesion."""
    rows = []
    for arm, arm_metrics in progress(metrics.items(), desc="report: CAM mass", unit="arm"):
        predictions = load_predictions(report.sweep.arm_dir(arm), "test")
        if arm_metrics is None or predictions is None or not (report.sweep.arm_dir(arm) / CHECKPOINT).is_file():
            continue
        try:
            mass = cam_mass_on_lesions(trained_model(report.sweep.arm_dir(arm)), dataset(report.sweep.data_root).images,
                                       report.sweep.data_root, predictions)
        except (FileNotFoundError, ValueError):  # a missing image, or a checkpoint refused: the examples say why
            continue
        if mass is not None:
            rows.append({"arm": arm, **cam_mass_summary(mass)})
    if rows:
        report.add("### Grad-CAM mass on the lesion",
                   "Share of the Grad-CAM mass (predicted class) inside the lesion mask, on up to 48 correctly "
                   "classified test images per arm; `mask area` is the share a map blind to the lesion would get, "
                   "`peak inside` how often the hottest cell is on the lesion.",
                   markdown_table(pd.DataFrame(rows).rename(columns={
                       "mean_inside": "mean inside", "median_inside": "median inside", "mask_area": "mask area",
                       "peak_inside": "peak inside"}), {"mean inside": 3, "median inside": 3, "mask area": 3,
                                                         "peak inside": 2}))


def _dataset(report: Report) -> None:
    sweep = report.sweep
    report.add("## Dataset")
    if sweep.data_root is None or not sweep.data_root.is_dir():
        report.add(f"Skipped: the dataset is not here (data_root `{sweep.data_root}`).")
        return
    stats = write_dataset_figures(sweep.data_root, report.out / "figures" / "dataset")
    report.add(f"{stats['rows']:,} images of {stats['lesions']:,} lesions under `{sweep.data_root}`.")
    for name in ("class_distribution", "metadata_overview", "sample_strip"):
        if (report.out / "figures" / "dataset" / f"{name}.png").is_file():
            report.add(f"![{name}](figures/dataset/{name}.png)")
