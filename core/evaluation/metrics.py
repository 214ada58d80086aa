"""Classification figures, model selection, melanoma operating points, and `evaluate_run`.

Every figure in metrics.json is a function of predictions_val.csv, predictions_test.csv
and (for the lesion-level intervals and subgroups) the test images' metadata rows:
`evaluate_run(results.read_predictions(val)[2], results.read_predictions(test)[2], test_info,
replicates, seed)` recomputes it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from core import results
from core.evaluation.bootstrap import REPLICATES, confidence_intervals
from core.evaluation.calibration import apply_temperature, calibration_report
from core.evaluation.subgroups import subgroup_columns, subgroup_report
from core.labels import CLASSES, MEL, NUM_CLASSES

LABELS = list(range(NUM_CLASSES))
TARGET_RECALLS = (0.85, 0.90, 0.95)


# ---------------------------------------------------------------- classification


def classification_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict:
    """Accuracy, balanced accuracy, macro-F1, per-class P/R/F1, confusion, AUCs, NLL.

    The prediction is the argmax class. Per-class figures and macro-F1 cover all
    seven classes: a class absent from both `y_true` and the predictions scores
    F1 = 0 (zero_division=0), so macro-F1 is always the mean of the seven per-class
    F1 values. `macro_auc` averages one-vs-rest AUC over the classes present in
    `y_true` (absent classes are skipped: their AUC is undefined), None if there
    are none; `mel_auc` is None unless `y_true` holds melanomas and others.
    """
    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=float)
    y_pred = probs.argmax(axis=1)

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=LABELS, zero_division=0
    )
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(CLASSES)
    }
    aucs = [_binary_auc(y_true == c, probs[:, c]) for c in LABELS]
    present = [a for a in aucs if a is not None]
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        # Recall averaged over the classes present in y_true (sklearn's definition).
        "balanced_accuracy": float(_balanced_accuracy(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=LABELS, average="macro", zero_division=0)),
        "mel_auc": aucs[MEL],
        "macro_auc": float(np.mean(present)) if present else None,
        # Renormalised: float32 softmax rows read back from CSV miss 1 by ~1e-7,
        # which log_loss warns about.
        "nll": float(log_loss(y_true, probs / probs.sum(axis=1, keepdims=True), labels=LABELS)),
        "per_class": per_class,
        "confusion": confusion_matrix(y_true, y_pred, labels=LABELS).tolist(),
    }


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    with warnings.catch_warnings():
        # Predicting a class that is absent from y_true is expected on small sets.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return balanced_accuracy_score(y_true, y_pred)


def _binary_auc(is_pos: np.ndarray, score: np.ndarray) -> float | None:
    """One-vs-rest ROC AUC, or None when only one of the two groups is present."""
    if is_pos.all() or not is_pos.any():
        return None
    return float(roc_auc_score(is_pos, score))


# ---------------------------------------------------------------- model selection

def validation_scores(val: dict) -> dict:
    """history.csv's validation columns, from `classification_metrics` of the validation images;
    `select_on` names one of them (core/choices.py SELECTION_METRICS)."""
    return {"val_loss": val["nll"], "val_acc": val["accuracy"], "val_macro_f1": val["macro_f1"],
            "val_mel_recall": val["per_class"]["mel"]["recall"], "val_balanced_acc": val["balanced_accuracy"]}


def selection_key(val: dict, select_on: str) -> tuple[float, float]:
    """Key to maximise when picking the checkpoint (or an arm's best sample) from `classification_metrics`
    of the validation images: the `select_on` score, then the lower validation loss."""
    scores = validation_scores(val)
    return (scores[select_on], -scores["val_loss"])


# ---------------------------------------------------------------- melanoma threshold


def threshold_curve(is_mel: np.ndarray, p_mel: np.ndarray) -> pd.DataFrame:
    """Precision, recall, specificity and counts at every distinct score, ascending.

    A sample is predicted melanoma when `p_mel >= threshold`. Ratios with a zero
    denominator (recall without melanomas, specificity without non-melanomas) are NaN.
    """
    is_mel = np.asarray(is_mel, dtype=bool)
    p_mel = np.asarray(p_mel, dtype=float)
    thresholds = np.unique(p_mel)
    # Count scores >= t in each group: n minus the number strictly below t.
    pos = np.sort(p_mel[is_mel])
    neg = np.sort(p_mel[~is_mel])
    tp = len(pos) - np.searchsorted(pos, thresholds, side="left")
    fp = len(neg) - np.searchsorted(neg, thresholds, side="left")
    fn = len(pos) - tp
    tn = len(neg) - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame(
            {
                "threshold": thresholds,
                "precision": tp / (tp + fp),
                "recall": tp / len(pos),
                "specificity": tn / len(neg),
                "tp": tp,
                "fp": fp,
                "tn": tn,
                "fn": fn,
            }
        )


def choose_threshold(is_mel: np.ndarray, p_mel: np.ndarray, min_recall: float) -> float:
    """The largest threshold whose melanoma recall is at least `min_recall`."""
    if not np.asarray(is_mel, dtype=bool).any():
        raise ValueError("cannot choose a melanoma threshold: the set has no melanoma")
    curve = threshold_curve(is_mel, p_mel)
    # Tolerance so that e.g. 17/20 meets 0.85 whatever the float rounding.
    qualifying = curve.loc[curve["recall"] >= min_recall - 1e-9, "threshold"]
    return float(qualifying.max())


def at_threshold(is_mel: np.ndarray, p_mel: np.ndarray, t: float) -> dict:
    """Melanoma-vs-rest figures when predicting melanoma for `p_mel >= t`.

    Undefined ratios (zero denominator) are None.
    """
    is_mel = np.asarray(is_mel, dtype=bool)
    predicted = np.asarray(p_mel, dtype=float) >= t
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(is_mel, predicted, labels=[False, True]).ravel())
    return {
        "threshold": float(t),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def operating_points(
    val_y: np.ndarray,
    val_probs: np.ndarray,
    test_y: np.ndarray,
    test_probs: np.ndarray,
    targets: tuple[float, ...] = TARGET_RECALLS,
) -> dict:
    """Melanoma operating points for each target recall, in two labelled variants.

    "chosen_on_val": threshold chosen on validation, figures on test (the honest
    figures), with the validation figures at that threshold under "val".
    "chosen_on_test": threshold chosen on test itself, as the source study did;
    it leaks the test labels and is kept only for comparison.
    """
    val = np.asarray(val_y) == MEL, np.asarray(val_probs)[:, MEL]
    test = np.asarray(test_y) == MEL, np.asarray(test_probs)[:, MEL]
    on_val, on_test = [], []
    for target in targets:
        row = _operating_point(target, chosen_on=val, reported_on=test)
        row["val"] = None if row["threshold"] is None else at_threshold(*val, row["threshold"])
        on_val.append(row)
        on_test.append(_operating_point(target, chosen_on=test, reported_on=test))
    return {
        "chosen_on_val": on_val,
        "chosen_on_test": on_test,
        "notes": {
            "chosen_on_val": "threshold chosen on validation, figures on test",
            "chosen_on_test": "threshold chosen on test: leaks test labels, for comparison only",
        },
    }


def calibrated_operating_points(val_y, val_probs, test_y, test_probs, temperature: float) -> dict:
    """The operating points on temperature-scaled probabilities (T fitted on validation), labelled so.

    Scaling can reorder P(mel) between images, so these are not just the plain points with
    their thresholds rescaled.
    """
    points = operating_points(val_y, apply_temperature(val_probs, temperature), test_y,
                              apply_temperature(test_probs, temperature))
    return {"temperature": temperature,
            "probabilities": "calibrated: softmax(log p / T), T fitted on validation", **points}


def interval_thresholds(points: list[dict]) -> dict[str, float]:
    """Operating points (target_recall, threshold) as the bootstrap names their figures."""
    return {f"mel_at_recall_{p['target_recall']:.2f}": p["threshold"] for p in points if p["threshold"] is not None}


_POINT_KEYS = ("threshold", "precision", "recall", "specificity", "tp", "fp", "tn", "fn")


def _operating_point(target: float, chosen_on: tuple, reported_on: tuple) -> dict:
    """Choose the threshold on one (is_mel, p_mel) pair, report figures on another.

    Without melanoma to choose on, the threshold and every figure are None.
    """
    if not chosen_on[0].any():
        return {"target_recall": target, **dict.fromkeys(_POINT_KEYS)}
    t = choose_threshold(*chosen_on, target)
    return {"target_recall": target, **at_threshold(*reported_on, t)}


def evaluate_run(pred_val: pd.DataFrame, pred_test: pd.DataFrame, test_info: pd.DataFrame | None = None,
                 replicates: int = REPLICATES, seed: int = 0) -> dict:
    """The content of metrics.json, from the validation and test predictions.

    `test_info` (the test images' metadata rows, indexed by image_id, with lesion_id) adds
    lesion-level bootstrap intervals of the test figures and the subgroup table, seeded by `seed`.
    """
    val_y, val_probs = results.prediction_arrays(pred_val, "validation predictions")
    test_y, test_probs = results.prediction_arrays(pred_test, "test predictions")
    points = operating_points(val_y, val_probs, test_y, test_probs)
    calibration = calibration_report(val_y, val_probs, test_y, test_probs)
    result = {
        "val": classification_metrics(val_y, val_probs),
        "test": classification_metrics(test_y, test_probs),
        "mel_operating_points": points,
        "calibration": calibration,
        "mel_operating_points_calibrated": calibrated_operating_points(val_y, val_probs, test_y, test_probs,
                                                                       calibration["temperature"]),
    }
    if test_info is not None:
        missing = pred_test.loc[~pred_test["image_id"].isin(test_info.index), "image_id"]
        if len(missing):
            raise ValueError(f"no metadata for {len(missing)} test image(s), e.g. {list(missing[:3])}")
        info = test_info.loc[pred_test["image_id"]]
        lesions = info["lesion_id"].astype(str).to_numpy()
        result["test_intervals"] = confidence_intervals(test_y, test_probs, lesions,
                                                        interval_thresholds(points["chosen_on_val"]), replicates, seed)
        result["subgroups"] = subgroup_report(test_y, test_probs, subgroup_columns(info.reset_index(drop=True)),
                                              lesions, replicates, seed)
    return result
