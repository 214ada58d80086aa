"""Seed-aware arm comparisons: intervals that hold both training variance and test-set sampling variance.

Each arm is trained with K seeds and every run predicts the same test images. Lesion-level
resamples shared by all runs give the test-set sampling variance of the difference of seed
means (paired, as in `bootstrap.paired_comparison`); the seed-to-seed spread on the full test
set gives the training variance. The interval is a t-interval on the seed means combined with
the lesion bootstrap. Resampling only 3 seeds would understate their spread by about (K-1)/K
and has few distinct draws, so a percentile bootstrap over seeds separates far too often; the
t quantile with Satterthwaite's degrees of freedom accounts for estimating the seed variance
from K runs.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import t as student_t

from core.evaluation.bootstrap import LEVEL, point_figures, replicate_indices

FIGURES = ("accuracy", "balanced_accuracy", "macro_f1", "recall_mel", "mel_auc")

SEED_AWARE = "t-interval on the seed means (Welch-Satterthwaite df) combined with the lesion-level bootstrap"
ONE_RUN = "lesion-level paired bootstrap, percentile interval; one training run: training variance not measured"
UNDEFINED = "figure undefined on this test set"


def replicate_figures(y_true, seed_probs, lesion_ids, replicates: int, seed: int = 0) -> dict[str, np.ndarray]:
    """{figure: (K, replicates + 1)} for K runs' probabilities: column 0 the full test set, then lesion resamples.

    The resamples depend only on (lesion_ids, replicates, seed), so arms computed with the same
    arguments share them column by column, which makes `compare_arms` paired. None becomes NaN.
    """
    y_true = np.asarray(y_true, dtype=int)
    columns = [np.arange(len(y_true)), *replicate_indices(lesion_ids, replicates, seed)]
    out = {name: np.full((len(seed_probs), len(columns)), np.nan) for name in FIGURES}
    for k, probs in enumerate(seed_probs):
        probs = np.asarray(probs, dtype=float)
        for r, idx in enumerate(columns):
            figures = point_figures(y_true[idx], probs[idx])
            for name in FIGURES:
                if figures[name] is not None:
                    out[name][k, r] = figures[name]
    return out


def _percentile_interval(values: np.ndarray, level: float) -> tuple[float | None, float | None]:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return None, None
    lo, hi = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _pair_statistic(reference: np.ndarray, arm: np.ndarray) -> np.ndarray:
    """P(a random arm seed beats a random reference seed), ties counting half, over the last two axes."""
    diff = arm[..., None, :] - reference[..., :, None]
    return ((diff > 0) + 0.5 * (diff == 0)).mean(axis=(-2, -1))


def _improvement_interval(reference: np.ndarray, arm: np.ndarray, level: float, seed: int):
    """Two-level bootstrap of the pair statistic: each replicate column, with each arm's seeds resampled."""
    ref, arm = reference[:, 1:].T, arm[:, 1:].T  # (B, K)
    defined = np.isfinite(ref).all(axis=1) & np.isfinite(arm).all(axis=1)
    ref, arm = ref[defined], arm[defined]
    rng = np.random.default_rng(seed)
    ref = np.take_along_axis(ref, rng.integers(0, ref.shape[1], ref.shape), axis=1)
    arm = np.take_along_axis(arm, rng.integers(0, arm.shape[1], arm.shape), axis=1)
    return _percentile_interval(_pair_statistic(ref, arm), level)


def _lesion_differences(reference: np.ndarray, arm: np.ndarray) -> np.ndarray:
    """Difference of seed means in each lesion resample (columns 1..B); NaN where either is undefined."""
    return arm[:, 1:].mean(axis=0) - reference[:, 1:].mean(axis=0)


def _seed_aware(estimate: float, reference: np.ndarray, arm: np.ndarray, level: float) -> dict:
    """Interval and p-value from SE^2 = s2_ref/K_ref + s2_arm/K_arm + V_les, on Satterthwaite's df.

    The lesion term is a bootstrap variance from many replicates, so it counts as having infinite df.
    """
    k_ref, k_arm = len(reference), len(arm)
    seed_ref = np.var(reference[:, 0], ddof=1) / k_ref
    seed_arm = np.var(arm[:, 0], ddof=1) / k_arm
    differences = _lesion_differences(reference, arm)
    differences = differences[np.isfinite(differences)]
    lesion = np.var(differences, ddof=1) if len(differences) > 1 else 0.0
    se2 = seed_ref + seed_arm + lesion
    denominator = seed_ref**2 / (k_ref - 1) + seed_arm**2 / (k_arm - 1)
    df = se2**2 / denominator if denominator > 0 else np.inf
    se = float(np.sqrt(se2))
    half = float(student_t.ppf((1 + level) / 2, df)) * se
    return {"low": estimate - half, "high": estimate + half, "p_value": _two_sided_p(estimate, se, df)}


def _two_sided_p(estimate: float, se: float, df: float) -> float:
    """Two-sided t p-value; with no spread at all, 1 for no difference and 0 for any."""
    if se == 0:
        return 1.0 if estimate == 0 else 0.0
    return float(2 * student_t.sf(abs(estimate) / se, df))


def compare_arms(reference: np.ndarray, arm: np.ndarray, level: float = LEVEL, seed: int = 0) -> dict:
    """Arm minus reference on one figure, from (K_ref, B+1) and (K_arm, B+1) `replicate_figures` matrices.

    Keys: estimate, low, high, p_value, p_improvement (P(arm seed > reference seed)) with its
    interval p_improvement_low/high, seeds ([K_ref, K_arm]) and method. With fewer than 2 seeds
    on a side the training variance is not measured: the interval is the lesion-only one and
    there is no p-value.
    """
    reference, arm = np.asarray(reference, dtype=float), np.asarray(arm, dtype=float)
    seeds = [len(reference), len(arm)]
    if np.isnan(reference[:, 0]).any() or np.isnan(arm[:, 0]).any():
        return {"estimate": None, "low": None, "high": None, "p_value": None, "p_improvement": None,
                "p_improvement_low": None, "p_improvement_high": None, "seeds": seeds, "method": UNDEFINED}
    estimate = float(arm[:, 0].mean() - reference[:, 0].mean())
    p_improvement = float(_pair_statistic(reference[:, 0], arm[:, 0]))
    if min(seeds) < 2:
        low, high = _percentile_interval(_lesion_differences(reference, arm), level)
        return {"estimate": estimate, "low": low, "high": high, "p_value": None, "p_improvement": p_improvement,
                "p_improvement_low": None, "p_improvement_high": None, "seeds": seeds, "method": ONE_RUN}
    improvement_low, improvement_high = _improvement_interval(reference, arm, level, seed)
    return {"estimate": estimate, **_seed_aware(estimate, reference, arm, level), "p_improvement": p_improvement,
            "p_improvement_low": improvement_low, "p_improvement_high": improvement_high, "seeds": seeds,
            "method": SEED_AWARE}


def adjust_p_values(p_values: list[float | None], method: str = "bh") -> list[float | None]:
    """Multiplicity-adjusted p-values: Benjamini-Hochberg ("bh") or Holm ("holm"); None passes through.

    None entries (figures without a p-value) do not count in the family size.
    """
    if method not in ("bh", "holm"):
        raise ValueError(f"unknown p-value adjustment {method!r}: use 'bh' or 'holm'")
    present = [i for i, p in enumerate(p_values) if p is not None]
    out: list[float | None] = [None] * len(p_values)
    if not present:
        return out
    p = np.array([p_values[i] for i in present], dtype=float)
    m = len(p)
    order = np.argsort(p)
    rank = np.arange(1, m + 1)
    if method == "bh":
        # Step-up: each adjusted value is the smallest m/j * p_(j) at its rank or above.
        adjusted = np.minimum.accumulate((m / rank * p[order])[::-1])[::-1]
    else:
        # Step-down: each adjusted value is the largest (m - j + 1) * p_(j) at its rank or below.
        adjusted = np.maximum.accumulate((m - rank + 1) * p[order])
    adjusted = np.minimum(adjusted, 1.0)
    for position, value in zip(order, adjusted, strict=True):
        out[present[position]] = float(value)
    return out


def verdict(result: dict, adjusted_p: float | None, level: float = LEVEL) -> str:
    """One word for a `compare_arms` result: "one run", "not separated", "higher" or "lower"."""
    if min(result["seeds"]) < 2:
        return "one run"
    if adjusted_p is None or adjusted_p >= round(1 - level, 12):  # round: 1 - 0.95 is 0.05000000000000004
        return "not separated"
    return "higher" if result["estimate"] > 0 else "lower"
