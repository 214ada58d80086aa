"""Temperature scaling, ECE, NLL and Brier."""
from __future__ import annotations

import numpy as np
import pytest

from core.evaluation.calibration import apply_temperature, brier, calibration_report, ece, fit_temperature, nll
from core.evaluation.metrics import at_threshold, calibrated_operating_points, choose_threshold, operating_points
from core.labels import MEL, NUM_CLASSES


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A model right about 70% of the time that puts almost all its mass on its guess."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, NUM_CLASSES, n)
    guess = np.where(rng.random(n) < 0.7, y, rng.integers(0, NUM_CLASSES, n))
    logits = rng.normal(0, 1, (n, NUM_CLASSES))
    logits[np.arange(n), guess] += 3
    return y, softmax(8 * logits)  # x8: far sharper than its accuracy warrants


def test_temperature_scaling_lowers_the_nll_of_an_overconfident_model():
    y, probs = overconfident(600, seed=0)
    t = fit_temperature(y, probs)
    assert t > 2  # it softens
    assert nll(y, apply_temperature(probs, t)) < 0.7 * nll(y, probs)
    assert ece(y, apply_temperature(probs, t)) < ece(y, probs)


def test_the_fitted_temperature_transfers_to_held_out_data():
    y_val, p_val = overconfident(600, seed=1)
    y_test, p_test = overconfident(600, seed=2)
    report = calibration_report(y_val, p_val, y_test, p_test)
    assert report["test"]["after"]["nll"] < report["test"]["before"]["nll"]
    assert report["test"]["after"]["brier"] < report["test"]["before"]["brier"]
    assert sum(b["n"] for b in report["reliability_test"]["after"]) == 600


def test_temperature_keeps_the_argmax():
    _, probs = overconfident(100, seed=3)
    np.testing.assert_array_equal(apply_temperature(probs, 3.0).argmax(1), probs.argmax(1))
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs, atol=1e-9)


def test_ece_matches_a_hand_computation():
    # Confidences 0.9, 0.9 (one right) and 0.6, 0.6 (both right), two classes of seven used.
    probs = np.zeros((4, NUM_CLASSES))
    probs[:, :2] = [[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]]
    y = np.array([0, 1, 1, 1])
    # bins of width 1/15: 0.9 and 0.6 (= 9/15, right-closed) fall in different bins
    # ECE = 2/4 * |0.5 - 0.9| + 2/4 * |1.0 - 0.6| = 0.4
    assert ece(y, probs) == pytest.approx(0.4)
    assert brier(y, probs) == pytest.approx((0.01 + 0.01 + 0.81 + 0.81 + 0.16 + 0.16 + 0.16 + 0.16) / 4)


def test_calibrated_operating_points_are_chosen_on_scaled_validation_probabilities():
    y_val, p_val = overconfident(600, seed=4)
    y_test, p_test = overconfident(600, seed=5)
    t = calibration_report(y_val, p_val, y_test, p_test)["temperature"]
    calibrated = calibrated_operating_points(y_val, p_val, y_test, p_test, t)
    assert calibrated["temperature"] == t and "calibrated" in calibrated["probabilities"]
    scaled_val, scaled_test = apply_temperature(p_val, t), apply_temperature(p_test, t)
    for point in calibrated["chosen_on_val"]:
        assert point["threshold"] == choose_threshold(y_val == MEL, scaled_val[:, MEL], point["target_recall"])
        assert point["recall"] == at_threshold(y_test == MEL, scaled_test[:, MEL], point["threshold"])["recall"]
    plain = operating_points(y_val, p_val, y_test, p_test)["chosen_on_val"]
    assert [p["threshold"] for p in calibrated["chosen_on_val"]] != [p["threshold"] for p in plain]
