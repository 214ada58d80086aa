"""External test set: a trained run scored on the ISIC 2018 Task 3 test images (1511 images).

The ISIC 2018 challenge's Task 3 test set (read by core/data/isic2018.py) was held out
from HAM10000 and comes mostly from the same sources (the Dataverse record says so): it
tests a run on images its split never saw, not on another population. `evaluate_external`
predicts it with a loaded run (core.inference.TrainedModel, whose `predict_dataset` runs
inference's one evaluation pipeline, as the internal test set does), writes
predictions_external.csv and metrics_external.json into the run folder, and puts the
challenge's metric, balanced multiclass accuracy (the mean of the per-class recalls),
beside the run's internal test figures. Its command line is `python -m core.evaluate`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core import results
from core.data.isic2018 import ExternalSet
from core.data.metadata import DatasetError
from core.evaluation.bootstrap import confidence_intervals, interval_text
from core.evaluation.metrics import at_threshold, classification_metrics, interval_thresholds
from core.evaluation.subgroups import subgroup_columns, subgroup_report
from core.labels import MEL

BALANCED_MULTICLASS_ACCURACY = (
    "the ISIC 2018 Task 3 challenge metric: the mean of the per-class recalls "
    "(= balanced_accuracy, over the classes present in the ground truth; all seven in ISIC 2018)"
)


# --------------------------------------------------------------------------- figures


def external_figures(external: ExternalSet, probs: np.ndarray, trained) -> dict:
    """Metrics, the challenge metric with its interval, intervals, the validation-chosen melanoma
    operating points and (for a ground truth with metadata columns) subgroups, all on the external set."""
    frame = external.ground_truth.frame
    y, lesions = external.labels, frame["lesion_id"].to_numpy()
    replicates, seed = trained.config.bootstrap_replicates, trained.config.seed
    intervals = confidence_intervals(y, probs, lesions, interval_thresholds(trained.operating_points), replicates,
                                     seed)
    balanced = intervals["figures"]["balanced_accuracy"]
    return {
        "balanced_multiclass_accuracy": {**balanced, "definition": BALANCED_MULTICLASS_ACCURACY},
        "metrics": classification_metrics(y, probs),
        "intervals": intervals,
        "mel_operating_points": [_operating_point(y, probs, p) for p in trained.operating_points],
        "subgroups": subgroup_report(y, probs, subgroup_columns(frame), lesions, replicates, seed),
    }


def _operating_point(y: np.ndarray, probs: np.ndarray, point: dict) -> dict:
    """A melanoma threshold chosen on the run's validation set, applied to the external set."""
    figures = at_threshold(y == MEL, probs[:, MEL], point["threshold"])
    return {"target_recall": point["target_recall"], "chosen_on": "validation", **figures}


def describe_external(external: ExternalSet) -> dict:
    truth = external.ground_truth
    return {
        "name": "ISIC 2018 Task 3 test set",
        "ground_truth": str(truth.path.resolve()),
        "ground_truth_format": truth.format,
        "images_root": str(external.root.resolve()),
        "images": len(truth.frame),
        "lesions": int(truth.frame["lesion_id"].nunique()),
        "lesion_ids": truth.lesion_note(),
        "synthetic": truth.synthetic,
    }


def notes(external: ExternalSet, trained) -> list[str]:
    out = ["The ISIC 2018 Task 3 test set was held out from HAM10000 but comes mostly from the same sources: "
           "new images from familiar clinics and devices, not another population.",
           "Melanoma thresholds were chosen on the run's validation set, never on the external set.",
           external.ground_truth.lesion_note()]
    if external.ground_truth.synthetic:
        out.append("The external images are the SYNTHETIC demo data: nothing here is an ISIC 2018 result.")
    if trained.synthetic_data:
        out.append("The run was trained on the SYNTHETIC demo data: nothing here is a HAM10000 result.")
    return out


# --------------------------------------------------------------------------- one run


def evaluate_external(run_dir: str | Path, trained, external: ExternalSet, batch_size: int = 64,
                      tta: bool = False) -> dict:
    """Predict the external set with a loaded run, write predictions_external.csv (and _tta.csv with
    `tta`) and metrics_external.json into `run_dir`; returns the metrics."""
    run_dir = Path(run_dir)
    internal = _internal_metrics(run_dir)
    result = {
        "run": str(run_dir.resolve()),
        "synthetic_training_data": trained.synthetic_data,
        "external_data": describe_external(external),
        **_evaluate_and_write(run_dir, trained, external, batch_size, tta=False),
        "internal_test": internal["test"],
        "internal_test_intervals": internal.get("test_intervals"),
        "notes": notes(external, trained),
    }
    if tta:  # beside the plain figures, never instead of them (as in metrics.json)
        result["tta"] = {"views": "8 dihedral (4 quarter turns, each also mirrored), probabilities averaged",
                         **_evaluate_and_write(run_dir, trained, external, batch_size, tta=True),
                         "internal_test": internal.get("tta", {}).get("test")}
    results.write_external_metrics(run_dir, result)
    return result


def _evaluate_and_write(run_dir: Path, trained, external: ExternalSet, batch_size: int,
                        tta: bool) -> dict:
    probs = trained.predict_dataset(trained.pipeline.files(external.images, external.labels, external.image_ids),
                                    batch_size, tta)
    frame = results.predictions_frame(external.image_ids, external.labels, probs)
    path = results.write_predictions(run_dir, results.EXTERNAL, frame, "_tta" if tta else "")
    return {"predictions": path.name, **external_figures(external, probs, trained)}


def _internal_metrics(run_dir: Path) -> dict:
    metrics = results.read_metrics(run_dir)
    if metrics is None:
        raise DatasetError(f"{run_dir / results.METRICS} not found: {run_dir} is not a finished run folder (it "
                           f"needs {results.METRICS} beside {results.CHECKPOINT} for the internal figures)")
    return metrics


def sweep_runs(sweep_dir: str | Path) -> list[Path]:
    """Every run of a sweep that holds a checkpoint (best.pt): each arm, then its other seeds (seeds/)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise DatasetError(f"sweep folder {sweep_dir} is not a directory")
    arms = sorted(p for p in sweep_dir.iterdir() if (p / results.CHECKPOINT).is_file())
    if not arms:
        raise DatasetError(f"no arm folder with {results.CHECKPOINT} in {sweep_dir}: train the sweep first, or "
                           "pass --run RUN_DIR")
    return [run for arm in arms
            for run in [arm, *sorted(p.parent for p in arm.glob(f"{results.SEEDS_DIR}/*/{results.CHECKPOINT}"))]]


# --------------------------------------------------------------------------- the printed table


TABLE_NOTE = ("external balanced accuracy is the ISIC 2018 Task 3 metric (balanced multiclass accuracy); "
              "[95% bootstrap interval]")


def comparison_table(result: dict) -> str:
    """Internal test figures beside the external ones (with the external 95% intervals); see TABLE_NOTE."""
    internal = result["internal_test"]
    blocks = [("external", result)] + ([("external TTA", result["tta"])] if "tta" in result else [])
    rows = [
        ("balanced accuracy", internal["balanced_accuracy"], "balanced_accuracy"),
        ("accuracy", internal["accuracy"], "accuracy"),
        ("macro-F1", internal["macro_f1"], "macro_f1"),
        ("mel recall", internal["per_class"]["mel"]["recall"], "recall_mel"),
    ]
    header = f"  {'':20s} {'internal test':>14s}" + "".join(f"  {name:>26s}" for name, _ in blocks)
    lines = [header]
    for label, value, key in rows:
        cells = "".join(f"  {interval_text(block['intervals']['figures'][key], 4, 'n/a'):>26s}" for _, block in blocks)
        lines.append(f"  {label:20s} {_number(value):>14s}{cells}")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
