"""Lesion-level bootstrap intervals and paired arm comparisons."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.evaluation.bootstrap import confidence_intervals, lesion_groups, paired_comparison, rank_auc
from core.evaluation.metrics import classification_metrics
from core.labels import NUM_CLASSES


def one_hot_probs(pred: np.ndarray, sharpness: float = 0.9) -> np.ndarray:
    probs = np.full((len(pred), NUM_CLASSES), (1 - sharpness) / (NUM_CLASSES - 1))
    probs[np.arange(len(pred)), pred] = sharpness
    return probs


def test_lesion_groups_hold_each_lesions_images():
    groups = lesion_groups(["b", "a", "b", "c", "a"])
    assert sorted(sorted(g.tolist()) for g in groups) == [[0, 2], [1, 4], [3]]


def test_resampling_is_by_lesion():
    # 50 images of one lesion, all wrong; 50 single-image lesions, all right.
    y = np.zeros(100, dtype=int)
    pred = np.r_[np.ones(50, dtype=int), np.zeros(50, dtype=int)]
    lesions = np.r_[["big"] * 50, [f"l{i}" for i in range(50)]]
    by_lesion = confidence_intervals(y, one_hot_probs(pred), lesions, replicates=400)["figures"]["accuracy"]
    by_image = confidence_intervals(y, one_hot_probs(pred), np.arange(100).astype(str),
                                    replicates=400)["figures"]["accuracy"]
    assert by_lesion["estimate"] == by_image["estimate"] == 0.5
    # Image-level resampling treats the 50 copies as independent evidence: far too narrow.
    assert (by_lesion["hi"] - by_lesion["lo"]) > 2.5 * (by_image["hi"] - by_image["lo"])


def test_seeded_intervals_are_identical_and_cover_the_estimate():
    rng = np.random.default_rng(0)
    y = rng.integers(0, NUM_CLASSES, 300)
    probs = rng.dirichlet(np.ones(NUM_CLASSES), 300)
    probs[np.arange(300), y] += 0.5
    probs /= probs.sum(1, keepdims=True)
    lesions = (np.arange(300) // 2).astype(str)
    first = confidence_intervals(y, probs, lesions, {"mel_at_recall_0.90": 0.1}, replicates=200, seed=3)
    assert first == confidence_intervals(y, probs, lesions, {"mel_at_recall_0.90": 0.1}, replicates=200, seed=3)
    assert first != confidence_intervals(y, probs, lesions, {"mel_at_recall_0.90": 0.1}, replicates=200, seed=4)
    reference = classification_metrics(y, probs)
    figures = first["figures"]
    assert figures["macro_f1"]["estimate"] == pytest.approx(reference["macro_f1"])
    assert figures["balanced_accuracy"]["estimate"] == pytest.approx(reference["balanced_accuracy"])
    assert figures["mel_auc"]["estimate"] == pytest.approx(reference["mel_auc"])
    assert figures["recall_mel"]["estimate"] == pytest.approx(reference["per_class"]["mel"]["recall"])
    for name in ("accuracy", "macro_f1", "mel_auc", "recall_nv", "mel_at_recall_0.90_recall"):
        assert figures[name]["lo"] <= figures[name]["estimate"] <= figures[name]["hi"]
    assert first["lesions"] == 150 and first["images"] == 300


def test_paired_comparison_recomputes_and_counts_discordant_images():
    rng = np.random.default_rng(1)
    y = rng.integers(0, NUM_CLASSES, 200)
    pred_a = np.where(rng.random(200) < 0.6, y, (y + 1) % NUM_CLASSES)
    pred_b = np.where(rng.random(200) < 0.8, y, (y + 2) % NUM_CLASSES)
    probs_a, probs_b = one_hot_probs(pred_a), one_hot_probs(pred_b)
    result = paired_comparison(y, probs_a, probs_b, np.arange(200).astype(str), replicates=200)
    a, b = classification_metrics(y, probs_a), classification_metrics(y, probs_b)
    assert result["figures"]["accuracy"]["difference"] == pytest.approx(b["accuracy"] - a["accuracy"])
    assert result["figures"]["macro_f1"]["difference"] == pytest.approx(b["macro_f1"] - a["macro_f1"])
    assert result["figures"]["accuracy"]["lo"] > 0  # B is clearly better
    right_a, right_b = pred_a == y, pred_b == y
    assert result["mcnemar"]["only_a_correct"] == int((right_a & ~right_b).sum())
    assert result["mcnemar"]["only_b_correct"] == int((right_b & ~right_a).sum())
    assert result["mcnemar"]["exact_p_value"] < 0.01


def test_paired_comparison_needs_the_same_images():
    with pytest.raises(ValueError, match="same images"):
        paired_comparison(np.zeros(3, int), one_hot_probs(np.zeros(3, int)), one_hot_probs(np.zeros(4, int)),
                          ["a", "b", "c"])


def test_a_test_set_without_melanoma_has_no_mel_auc_interval():
    y = np.zeros(20, dtype=int)
    result = confidence_intervals(y, one_hot_probs(y), np.arange(20).astype(str), replicates=20)
    assert result["figures"]["mel_auc"] == {"estimate": None, "lo": None, "hi": None}
    assert result["figures"]["recall_mel"] == {"estimate": None, "lo": None, "hi": None}


def test_subgroups_recompute_and_flag_a_weak_group():
    import pandas as pd

    from core.evaluation.subgroups import subgroup_columns, subgroup_report

    rng = np.random.default_rng(2)
    n = 400
    meta = pd.DataFrame({"sex": rng.choice(["male", "female"], n), "age": rng.choice([25.0, 50.0, 80.0, np.nan], n),
                         "localization": rng.choice(["back", "face"], n)})
    y = np.where(rng.random(n) < 0.4, 4, rng.integers(0, NUM_CLASSES, n))
    pred = y.copy()
    missed = (meta["localization"] == "face").to_numpy() & (y == 4) & (rng.random(n) < 0.6)
    pred[missed] = 5  # melanomas on the face are often missed
    lesions = (np.arange(n) // 2).astype(str)
    report = subgroup_report(y, one_hot_probs(pred), subgroup_columns(meta), lesions, replicates=200, seed=0)
    rows = {(r["attribute"], r["group"]): r for r in report["rows"]}
    assert set(rows) >= {("age_band", "<30"), ("age_band", "45-59"), ("age_band", "75+"), ("age_band", "unknown"),
                         ("sex", "male"), ("localization", "face")}
    face = rows[("localization", "face")]
    in_face = (meta["localization"] == "face").to_numpy()
    assert face["n_images"] == in_face.sum() and face["n_mel"] == int((y[in_face] == 4).sum())
    assert face["mel_recall"] == pytest.approx(((pred == 4) & (y == 4) & in_face).sum() / face["n_mel"])
    assert face["mel_recall_lo"] <= face["mel_recall"] <= face["mel_recall_hi"]
    assert face["flagged"] and not rows[("localization", "back")]["flagged"]
    assert report["overall_mel_recall"] == pytest.approx(((pred == 4) & (y == 4)).sum() / (y == 4).sum())


@pytest.mark.parametrize("seed", range(5))
def test_rank_auc_is_sklearns_roc_auc_ties_included(seed):
    rng = np.random.default_rng(seed)
    is_positive = rng.random(300) < 0.15
    score = np.round(rng.random(300) + 0.3 * is_positive, 1)  # rounded: many tied scores
    assert rank_auc(is_positive, score) == pytest.approx(roc_auc_score(is_positive, score), abs=1e-12)
