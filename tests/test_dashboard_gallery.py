"""Choosing Grad-CAM images: filters by class and outcome, and the report's examples."""
from __future__ import annotations

import numpy as np

from core.labels import CLASS_INDEX, NUM_CLASSES
from core.results import predictions_frame
from dashboards.cams import outcome_table, report_examples, select_images


def outcomes():
    """Six images: a missed and a found melanoma, a wrong and a right nv, a right bcc, a wrong df."""
    truth = ["mel", "mel", "nv", "nv", "bcc", "df"]
    predicted = ["nv", "mel", "mel", "nv", "bcc", "bkl"]
    probs = np.full((len(truth), NUM_CLASSES), 0.05)
    probs[np.arange(len(truth)), [CLASS_INDEX[c] for c in predicted]] = 0.7
    return outcome_table(predictions_frame([f"I{i}" for i in range(len(truth))],
                                           [CLASS_INDEX[c] for c in truth], probs))


def test_filters():
    rows = outcomes()
    assert list(select_images(rows)["image_id"]) == ["I0", "I1", "I2", "I3", "I4", "I5"]
    assert list(select_images(rows, "mel")["image_id"]) == ["I0", "I1"]
    assert list(select_images(rows, outcome="correct")["image_id"]) == ["I1", "I3", "I4"]
    assert list(select_images(rows, outcome="wrong")["image_id"]) == ["I0", "I2", "I5"]
    assert list(select_images(rows, outcome="missed melanoma")["image_id"]) == ["I0"]
    assert list(select_images(rows, "nv", "wrong")["image_id"]) == ["I2"]
    assert select_images(rows, "vasc").empty


def test_report_examples_put_missed_melanoma_first():
    assert list(report_examples(outcomes(), 4)["image_id"]) == ["I0", "I1", "I2", "I5"]
