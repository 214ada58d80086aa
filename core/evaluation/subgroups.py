"""Test figures by subgroup of the metadata: sex, age band, localization, source dataset, dx_type.

Each subgroup gets its counts, accuracy, balanced accuracy, melanoma recall with a
lesion-level bootstrap interval, and a flag when its melanoma recall falls more than
10 points below the whole test set's. Small subgroups have wide intervals: read the
interval before the flag.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.evaluation.bootstrap import LEVEL, point_figures
from core.labels import MEL

ATTRIBUTES = ("sex", "age_band", "localization", "dataset", "dx_type")
AGE_BANDS = [(0, 30, "<30"), (30, 45, "30-44"), (45, 60, "45-59"), (60, 75, "60-74"), (75, 200, "75+")]
FLAG_DROP = 0.10  # melanoma recall this far below the overall one is flagged


def age_band(age) -> str:
    if pd.isna(age):
        return "unknown"
    return next(name for lo, hi, name in AGE_BANDS if lo <= float(age) < hi)


def subgroup_columns(meta: pd.DataFrame) -> pd.DataFrame:
    """The grouping columns of metadata rows (missing values as 'unknown'; absent columns left out)."""
    out = pd.DataFrame(index=meta.index)
    if "age" in meta:
        out["age_band"] = meta["age"].map(age_band)
    for column in ("sex", "localization", "dataset", "dx_type"):
        if column in meta:
            out[column] = meta[column].fillna("unknown").astype(str)
    return out[[a for a in ATTRIBUTES if a in out]]


def mel_recall_interval(hits: np.ndarray, is_mel: np.ndarray, lesion_ids: np.ndarray, replicates: int,
                        seed: int) -> tuple[float | None, float | None, float | None]:
    """Melanoma recall and its lesion-level bootstrap interval (vectorised: per-lesion sums)."""
    if not is_mel.any():
        return None, None, None
    _, lesion = np.unique(lesion_ids, return_inverse=True)
    hits_per_lesion = np.bincount(lesion, weights=hits & is_mel)
    mel_per_lesion = np.bincount(lesion, weights=is_mel)
    draws = np.random.default_rng(seed).integers(0, len(mel_per_lesion), (replicates, len(mel_per_lesion)))
    mel = mel_per_lesion[draws].sum(axis=1)
    recall = hits_per_lesion[draws].sum(axis=1)[mel > 0] / mel[mel > 0]
    lo, hi = np.quantile(recall, [(1 - LEVEL) / 2, (1 + LEVEL) / 2]) if len(recall) else (None, None)
    return float(hits[is_mel].mean()), None if lo is None else float(lo), None if hi is None else float(hi)


def subgroup_report(y_true, probs, groups: pd.DataFrame, lesion_ids, replicates: int, seed: int) -> dict:
    """One row per (attribute, value) over the test images; `groups` is aligned with y_true."""
    y_true, probs = np.asarray(y_true, dtype=int), np.asarray(probs, dtype=float)
    pred = probs.argmax(axis=1)
    lesion_ids = np.asarray(lesion_ids, dtype=str)
    is_mel, hits = y_true == MEL, pred == MEL
    overall = float(hits[is_mel].mean()) if is_mel.any() else None
    rows = []
    for attribute in groups.columns:
        for value, index in groups.groupby(attribute).indices.items():
            figures = point_figures(y_true[index], probs[index])
            recall, lo, hi = mel_recall_interval(hits[index], is_mel[index], lesion_ids[index], replicates, seed)
            rows.append({
                "attribute": attribute, "group": str(value), "n_images": len(index),
                "n_lesions": len(set(lesion_ids[index])), "n_mel": int(is_mel[index].sum()),
                "accuracy": figures["accuracy"], "balanced_accuracy": figures["balanced_accuracy"],
                "mel_recall": recall, "mel_recall_lo": lo, "mel_recall_hi": hi,
                "flagged": bool(overall is not None and recall is not None and recall < overall - FLAG_DROP),
            })
    return {"overall_mel_recall": overall, "flag_rule": f"melanoma recall more than {FLAG_DROP:.2f} below overall",
            "interval": "lesion-level bootstrap of melanoma recall, percentile", "level": LEVEL,
            "replicates": replicates, "seed": seed, "rows": rows}

