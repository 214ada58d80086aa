"""Lesion-level bootstrap: 95% intervals for a run's test figures, and paired arm comparisons.

HAM10000 holds several images of many lesions. Images of one lesion are not independent,
so a replicate resamples lesions with replacement and takes all of each drawn lesion's
images; resampling images would understate the spread. Replicates are seeded, so the
same inputs give the same intervals. Intervals are percentile intervals.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import binomtest, rankdata

from core.config import RunConfig
from core.labels import CLASSES, MEL, NUM_CLASSES
from core.log import progress

REPLICATES = RunConfig.bootstrap_replicates  # a run's default
LEVEL = 0.95

Statistic = Callable[[np.ndarray, np.ndarray], dict[str, float | None]]


def lesion_groups(lesion_ids) -> list[np.ndarray]:
    """Image indices of each lesion."""
    _, inverse = np.unique(np.asarray(lesion_ids, dtype=str), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    return np.split(order, np.cumsum(np.bincount(inverse))[:-1])


def replicate_indices(lesion_ids, replicates: int, seed: int):
    """For each replicate, the image indices of a resample of the lesions (with replacement)."""
    groups = lesion_groups(lesion_ids)
    rng = np.random.default_rng(seed)
    for _ in progress(range(replicates), desc="bootstrap", unit="replicate"):
        yield np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))])


def rank_auc(is_positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic over average ranks (ties count a half): sklearn's
    roc_auc_score to rounding, without its input checks, which cost milliseconds a call and
    dominated the thousands of replicates of a sweep's findings."""
    positives = int(is_positive.sum())
    negatives = len(is_positive) - positives
    return float((rankdata(score)[is_positive].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def point_figures(y_true: np.ndarray, probs: np.ndarray, mel_thresholds: dict[str, float] | None = None) -> dict:
    """The figures the intervals cover, from a confusion matrix (fast enough for 1000 replicates)."""
    y_pred = probs.argmax(axis=1)
    cm = np.bincount(y_true * NUM_CLASSES + y_pred, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)
    support, predicted, tp = cm.sum(axis=1), cm.sum(axis=0), np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / support
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(precision + np.nan_to_num(recall) > 0,
                      2 * precision * np.nan_to_num(recall) / (precision + np.nan_to_num(recall)), 0.0)
    is_mel = y_true == MEL
    out = {
        "accuracy": float(tp.sum() / len(y_true)),
        "balanced_accuracy": float(np.nanmean(recall)),  # over the classes present, as sklearn
        "macro_f1": float(f1.mean()),
        "mel_auc": rank_auc(is_mel, probs[:, MEL]) if 0 < is_mel.sum() < len(is_mel) else None,
        **{f"recall_{c}": None if support[i] == 0 else float(recall[i]) for i, c in enumerate(CLASSES)},
    }
    for name, t in (mel_thresholds or {}).items():
        flagged = probs[:, MEL] >= t
        hits = int((flagged & is_mel).sum())
        out[f"{name}_precision"] = hits / int(flagged.sum()) if flagged.any() else None
        out[f"{name}_recall"] = hits / int(is_mel.sum()) if is_mel.any() else None
    return out


def _interval(values: list[float | None]) -> tuple[float | None, float | None]:
    finite = np.array([v for v in values if v is not None], dtype=float)
    if len(finite) == 0:
        return None, None
    lo, hi = np.quantile(finite, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(lo), float(hi)


def confidence_intervals(y_true, probs, lesion_ids, mel_thresholds: dict[str, float] | None = None,
                         replicates: int = REPLICATES, seed: int = 0) -> dict:
    """{figure: {"estimate", "lo", "hi"}} over lesion-level bootstrap replicates of the test set."""
    y_true, probs = np.asarray(y_true, dtype=int), np.asarray(probs, dtype=float)
    estimate = point_figures(y_true, probs, mel_thresholds)
    draws = [point_figures(y_true[i], probs[i], mel_thresholds)
             for i in replicate_indices(lesion_ids, replicates, seed)]
    figures = {}
    for name, value in estimate.items():
        lo, hi = _interval([d[name] for d in draws])
        figures[name] = {"estimate": value, "lo": lo, "hi": hi}
    return {"method": "lesion-level bootstrap, percentile interval", "level": LEVEL, "replicates": replicates,
            "seed": seed, "lesions": len(lesion_groups(lesion_ids)), "images": len(y_true), "figures": figures}


def interval_text(figure: dict | None, digits: int = 3, missing: str = "") -> str:
    """One figure of `confidence_intervals` as `estimate [lo, hi]`; the estimate alone without an interval."""
    if not figure or figure["estimate"] is None:
        return missing
    if figure["lo"] is None:
        return f"{figure['estimate']:.{digits}f}"
    return f"{figure['estimate']:.{digits}f} [{figure['lo']:.{digits}f}, {figure['hi']:.{digits}f}]"


def paired_comparison(y_true, probs_a, probs_b, lesion_ids, replicates: int = REPLICATES, seed: int = 0) -> dict:
    """B minus A on the same test images: bootstrap interval of each difference, and McNemar on top-1.

    Both arms are resampled with the same lesions in every replicate, so the interval is of
    the paired difference. McNemar's exact test counts the images exactly one arm gets right.
    """
    y_true = np.asarray(y_true, dtype=int)
    probs_a, probs_b = np.asarray(probs_a, dtype=float), np.asarray(probs_b, dtype=float)
    if probs_a.shape != probs_b.shape or len(y_true) != len(probs_a):
        raise ValueError("paired comparison needs both arms' predictions on the same images, in the same order")

    def difference(i) -> dict:
        a, b = point_figures(y_true[i], probs_a[i]), point_figures(y_true[i], probs_b[i])
        return {k: None if a[k] is None or b[k] is None else b[k] - a[k] for k in a}

    estimate = difference(np.arange(len(y_true)))
    draws = [difference(i) for i in replicate_indices(lesion_ids, replicates, seed)]
    figures = {}
    for name, value in estimate.items():
        lo, hi = _interval([d[name] for d in draws])
        figures[name] = {"difference": value, "lo": lo, "hi": hi}
    right_a, right_b = probs_a.argmax(1) == y_true, probs_b.argmax(1) == y_true
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    p_value = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"method": "lesion-level paired bootstrap (B minus A), percentile interval", "level": LEVEL,
            "replicates": replicates, "seed": seed, "figures": figures,
            "mcnemar": {"only_a_correct": only_a, "only_b_correct": only_b, "exact_p_value": float(p_value)}}
