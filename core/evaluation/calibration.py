"""Calibration: temperature scaling fitted on validation, ECE, NLL, Brier, reliability bins.

The results contract stores probabilities, not logits. log(p) differs from the logits by
a constant per row, and softmax ignores such constants, so softmax(log(p) / T) is exactly
temperature scaling of the model's logits: it can be fitted and applied from the
predictions files alone.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

ECE_BINS = 15
_EPS = 1e-12


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.log(np.clip(np.asarray(probs, dtype=float), _EPS, None)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def nll(y_true: np.ndarray, probs: np.ndarray) -> float:
    y_true = np.asarray(y_true, dtype=int)
    return float(-np.log(np.clip(np.asarray(probs)[np.arange(len(y_true)), y_true], _EPS, None)).mean())


def brier(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Multiclass Brier score: mean over images of the squared distance to the one-hot label."""
    probs = np.asarray(probs, dtype=float)
    onehot = np.eye(probs.shape[1])[np.asarray(y_true, dtype=int)]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def reliability_bins(y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Top-label reliability: per equal-width confidence bin (lo, hi], its count, mean confidence, accuracy."""
    probs = np.asarray(probs, dtype=float)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true, dtype=int)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        rows.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": n,
                     "confidence": float(confidence[inside].mean()) if n else None,
                     "accuracy": float(correct[inside].mean()) if n else None})
    return rows


def ece(y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: sum over bins of |accuracy - confidence| weighted by the bin's share."""
    rows = reliability_bins(y_true, probs, bins)
    total = sum(r["n"] for r in rows)
    return float(sum(r["n"] * abs(r["accuracy"] - r["confidence"]) for r in rows if r["n"]) / total)


def fit_temperature(y_true: np.ndarray, probs: np.ndarray) -> float:
    """The temperature in [0.05, 20] that minimises the NLL of `probs` (fit on validation only)."""
    result = minimize_scalar(lambda log_t: nll(y_true, apply_temperature(probs, np.exp(log_t))),
                             bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def scores(y_true: np.ndarray, probs: np.ndarray) -> dict:
    return {"ece": ece(y_true, probs), "nll": nll(y_true, probs), "brier": brier(y_true, probs)}


def calibration_report(val_y: np.ndarray, val_probs: np.ndarray, test_y: np.ndarray, test_probs: np.ndarray) -> dict:
    """Temperature fitted on validation; ECE / NLL / Brier before and after on both sets; test reliability bins."""
    t = fit_temperature(val_y, val_probs)
    val_after, test_after = apply_temperature(val_probs, t), apply_temperature(test_probs, t)
    return {
        "temperature": t,
        "note": "temperature fitted on validation; test figures are held out",
        "val": {"before": scores(val_y, val_probs), "after": scores(val_y, val_after)},
        "test": {"before": scores(test_y, test_probs), "after": scores(test_y, test_after)},
        "reliability_test": {"before": reliability_bins(test_y, test_probs),
                             "after": reliability_bins(test_y, test_after)},
    }
