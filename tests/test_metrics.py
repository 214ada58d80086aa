"""core.evaluation.metrics: hand-computed examples, threshold choice, predictions files."""

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from core.choices import SELECTION_METRICS
from core.evaluation.metrics import (
    at_threshold,
    choose_threshold,
    classification_metrics,
    evaluate_run,
    operating_points,
    selection_key,
    threshold_curve,
    validation_scores,
)
from core.labels import CLASS_INDEX, CLASSES, MEL, NUM_CLASSES, PROB_COLUMNS
from core.results import predictions_frame, read_predictions

NV = CLASS_INDEX["nv"]


def peaked(pred: list[int], peak: float = 0.7) -> np.ndarray:
    """Probability rows with `peak` on the predicted class and the rest spread evenly."""
    probs = np.full((len(pred), NUM_CLASSES), (1 - peak) / (NUM_CLASSES - 1))
    probs[np.arange(len(pred)), pred] = peak
    return probs


def with_p_mel(p_mel: list[float]) -> np.ndarray:
    """Probability rows with the given P(mel) and the rest spread evenly."""
    p_mel = np.asarray(p_mel, dtype=float)
    probs = np.repeat(((1 - p_mel) / (NUM_CLASSES - 1))[:, None], NUM_CLASSES, axis=1)
    probs[:, MEL] = p_mel
    return probs


def random_run(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every class present; float32 softmax outputs like a real model's."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(NUM_CLASSES), rng.integers(0, NUM_CLASSES, n - NUM_CLASSES)])
    logits = rng.normal(size=(n, NUM_CLASSES)).astype(np.float32)
    logits[np.arange(n), y] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


# ---------------------------------------------------------------- classification


def test_classification_metrics_by_hand():
    # Classes 0, 1 and mel present; 2, 3, 5, 6 absent from truth and predictions.
    y = np.array([0, 0, 1, 1, MEL, MEL])
    m = classification_metrics(y, peaked([0, 1, 1, 1, MEL, 0]))

    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    # Recall: class 0 1/2, class 1 2/2, mel 1/2; averaged over the 3 present classes.
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    # F1: class 0 (P 1/2, R 1/2) 0.5; class 1 (P 2/3, R 1) 0.8; mel (P 1, R 1/2) 2/3;
    # the four absent classes count as 0 in the seven-class mean.
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 7)
    assert m["per_class"]["bcc"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert m["per_class"]["df"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert list(m["per_class"]) == list(CLASSES)

    expected = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=int)
    expected[0, 0] = expected[0, 1] = 1
    expected[1, 1] = 2
    expected[MEL, MEL] = expected[MEL, 0] = 1
    assert m["confusion"] == expected.tolist()

    # P(mel) 0.7 for one melanoma, 0.05 for the other and all 4 others: (4 + 4 * 0.5) / 8.
    assert m["mel_auc"] == pytest.approx(0.75)
    # One-vs-rest AUC of class 0: 5/8, class 1: 7/8, mel: 6/8; absent classes skipped.
    assert m["macro_auc"] == pytest.approx(0.75)
    assert m["nll"] == pytest.approx(-(4 * math.log(0.7) + 2 * math.log(0.05)) / 6)


def test_auc_is_none_with_a_single_class():
    m = classification_metrics(np.array([NV, NV]), peaked([NV, MEL]))
    assert m["mel_auc"] is None
    assert m["macro_auc"] is None


def test_selection_key_reads_metric_and_breaks_ties_by_lower_val_loss():
    m = classification_metrics(np.array([0, MEL, MEL]), peaked([0, MEL, 0]))
    scores = validation_scores(m)
    assert scores["val_acc"] == pytest.approx(2 / 3)
    assert scores["val_macro_f1"] == m["macro_f1"]
    assert scores["val_mel_recall"] == 0.5
    assert scores["val_balanced_acc"] == m["balanced_accuracy"]
    assert scores["val_loss"] == m["nll"]
    assert set(SELECTION_METRICS) <= set(scores)  # every select_on choice is a score
    assert selection_key(m, "val_mel_recall") == (0.5, -m["nll"])
    closer = peaked([0, MEL, 0])
    closer[2] = 0.04
    closer[2, [0, MEL]] = 0.5, 0.3  # still predicts class 0, but gives the melanoma more
    closer = classification_metrics(np.array([0, MEL, MEL]), closer)
    assert closer["nll"] < m["nll"]
    assert selection_key(closer, "val_mel_recall") > selection_key(m, "val_mel_recall")  # same recall, lower loss
    recalled = classification_metrics(np.array([0, MEL, MEL]), peaked([0, MEL, MEL], 0.2))
    assert recalled["nll"] > m["nll"]
    assert selection_key(recalled, "val_mel_recall") > selection_key(m, "val_mel_recall")  # the score comes first


# ---------------------------------------------------------------- melanoma threshold

# Ten samples by descending P(mel); five melanomas.
P_MEL = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
IS_MEL = np.array([1, 1, 0, 1, 0, 1, 0, 0, 1, 0], dtype=bool)


@pytest.mark.parametrize(
    "min_recall, expected",
    # Recall reaches 0.6 at t = 0.7, 0.8 at t = 0.5 and 1.0 only at t = 0.2.
    [(0.2, 0.95), (0.6, 0.7), (0.8, 0.5), (0.85, 0.2), (1.0, 0.2)],
)
def test_choose_threshold_is_the_largest_meeting_recall(min_recall, expected):
    assert choose_threshold(IS_MEL, P_MEL, min_recall) == expected


def test_at_threshold_by_hand():
    # p >= 0.5 flags the first six: melanomas at 0.95, 0.9, 0.7, 0.5; others at 0.8, 0.6.
    assert at_threshold(IS_MEL, P_MEL, 0.5) == pytest.approx(
        {"threshold": 0.5, "precision": 4 / 6, "recall": 0.8, "specificity": 0.6, "tp": 4, "fp": 2, "tn": 3, "fn": 1}
    )


def test_threshold_curve_matches_sklearn_roc_and_at_threshold():
    rng = np.random.default_rng(0)
    is_mel = rng.random(40) < 0.3
    p_mel = np.round(rng.random(40), 1)  # ties on purpose
    curve = threshold_curve(is_mel, p_mel)

    assert list(curve["threshold"]) == sorted(set(p_mel))
    fpr, tpr, thresholds = roc_curve(is_mel, p_mel, drop_intermediate=False)
    by_threshold = dict(zip(thresholds, zip(fpr, tpr, strict=True), strict=True))
    for row in curve.itertuples():
        assert (1 - row.specificity, row.recall) == pytest.approx(by_threshold[row.threshold])
        point = at_threshold(is_mel, p_mel, row.threshold)
        assert (row.tp, row.fp, row.tn, row.fn) == (point["tp"], point["fp"], point["tn"], point["fn"])
        assert row.precision == pytest.approx(point["precision"])


def test_operating_points_chosen_on_val_differs_from_chosen_on_test():
    # Validation melanomas score high, two test melanomas score low.
    val_y = np.array([MEL, MEL, MEL, MEL, NV, NV])
    val_probs = with_p_mel([0.9, 0.8, 0.6, 0.5, 0.3, 0.2])
    test_y = np.array([MEL, MEL, MEL, MEL, NV, NV])
    test_probs = with_p_mel([0.4, 0.35, 0.9, 0.8, 0.5, 0.1])

    points = operating_points(val_y, val_probs, test_y, test_probs, targets=(0.85,))
    on_val, on_test = points["chosen_on_val"][0], points["chosen_on_test"][0]

    # Recall >= 0.85 of 4 melanomas needs all 4: t = 0.5 on val, 0.35 on test.
    assert on_val["threshold"] == 0.5
    assert (on_val["recall"], on_val["tp"], on_val["fp"]) == (0.5, 2, 1)
    assert on_val["val"]["recall"] == 1.0
    assert on_test["threshold"] == 0.35
    assert (on_test["recall"], on_test["tp"], on_test["fp"]) == (1.0, 4, 1)
    assert "leak" in points["notes"]["chosen_on_test"]


def test_operating_points_without_validation_melanoma_are_none():
    y = np.array([NV, NV, MEL])
    points = operating_points(y[:2], peaked([NV, NV]), y, peaked([NV, NV, MEL]), targets=(0.9,))
    assert points["chosen_on_val"][0]["threshold"] is None
    assert points["chosen_on_val"][0]["val"] is None
    assert points["chosen_on_test"][0]["recall"] == 1.0


# ---------------------------------------------------------------- predictions files


def test_evaluate_run_is_json_serialisable():
    val_frame = predictions_frame([f"v{i}" for i in range(30)], *random_run(30, seed=1))
    test_frame = predictions_frame([f"t{i}" for i in range(30)], *random_run(30, seed=2))
    result = evaluate_run(val_frame, test_frame)
    assert set(result) == {"val", "test", "mel_operating_points", "calibration", "mel_operating_points_calibrated"}
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_predictions_csv_round_trip_gives_the_same_metrics(tmp_path):
    y, probs = random_run(25, seed=3)
    frame = predictions_frame([f"ISIC_{i:07d}" for i in range(25)], y, probs)
    assert list(frame.columns) == ["image_id", "dx", *PROB_COLUMNS]
    frame.to_csv(tmp_path / "predictions_test.csv", index=False)

    y_read, probs_read, frame_read = read_predictions(tmp_path / "predictions_test.csv")
    np.testing.assert_array_equal(y_read, y)
    assert classification_metrics(y_read, probs_read) == classification_metrics(y, probs)
    assert evaluate_run(frame_read, frame_read) == evaluate_run(frame, frame)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda f: f.drop(columns="p_mel"), r"missing columns \['p_mel'\]"),
        (lambda f: f.assign(p_nv=f["p_nv"] + 0.1), "do not sum to 1"),
        (lambda f: f.assign(dx=["melanoma"] + list(f["dx"][1:])), r"unknown dx values \['melanoma'\]"),
    ],
    ids=["missing_column", "not_summing_to_one", "unknown_dx"],
)
def test_bad_predictions_file_gives_a_clear_error(tmp_path, corrupt, message):
    path = tmp_path / "predictions_val.csv"
    corrupt(predictions_frame(["a", "b", "c"], [0, MEL, NV], peaked([0, MEL, NV]))).to_csv(path, index=False)
    with pytest.raises(ValueError, match=message) as error:
        read_predictions(path)
    assert "predictions_val.csv" in str(error.value)


def test_predictions_frame_writes_class_names():
    frame = predictions_frame(["a", "b"], [MEL, 0], peaked([MEL, 0]))
    assert list(frame["dx"]) == ["mel", "akiec"]
