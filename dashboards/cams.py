"""Grad-CAM for an arm's test images: which images to show, and cached overlays.

Models, datasets and overlays are cached per process (functools.lru_cache), so paging
back and forth through the gallery recomputes nothing. The caches are keyed on the
stamps (mtime, size, inode) of the files read as well as their paths, so a rewritten
best.pt or metrics.json is read again.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.cache import resize_square
from core.data.images import load_rgb
from core.inference import TrainedModel, gradcam_overlay, load_run
from core.labels import CLASSES, MEL, PROB_COLUMNS
from core.results import CHECKPOINT, METRICS
from dashboards.datasets import dataset
from dashboards.results import stamp

OUTCOMES = ("all", "correct", "wrong", "missed melanoma")


def outcome_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """image_id, dx, predicted (argmax), correct, p_mel for each row of a predictions file."""
    predicted = [CLASSES[i] for i in predictions[list(PROB_COLUMNS)].to_numpy().argmax(axis=1)]
    return pd.DataFrame({"image_id": predictions["image_id"], "dx": predictions["dx"], "predicted": predicted,
                         "correct": predictions["dx"].to_numpy() == np.array(predicted),
                         "p_mel": predictions["p_mel"]})


def select_images(outcomes: pd.DataFrame, dx: str = "all", outcome: str = "all") -> pd.DataFrame:
    """Rows of `outcome_table` of one true class (or all) and one outcome (OUTCOMES)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r} is not one of {OUTCOMES}")
    rows = outcomes if dx == "all" else outcomes[outcomes["dx"] == dx]
    if outcome == "correct":
        rows = rows[rows["correct"]]
    elif outcome == "wrong":
        rows = rows[~rows["correct"]]
    elif outcome == "missed melanoma":
        rows = rows[(rows["dx"] == "mel") & (rows["predicted"] != "mel")]
    return rows.reset_index(drop=True)


def trained_model(run_dir: Path) -> TrainedModel:
    """The run's best.pt and its metrics.json's operating points (core.inference.load_run)."""
    run_dir = Path(run_dir)
    return _trained_model(run_dir, stamp(run_dir / CHECKPOINT), stamp(run_dir / METRICS))


@lru_cache(maxsize=8)
def _trained_model(run_dir: Path, *stamps) -> TrainedModel:
    return load_run(run_dir)


def cam_images(run_dir: Path, data_root: Path, image_id: str) -> dict[str, np.ndarray]:
    """The image at the model's input size and its Grad-CAM overlays for the predicted class
    and for melanoma (uint8 RGB arrays, read-only: they are shared through the cache)."""
    run_dir = Path(run_dir)
    return _cam_images(run_dir, Path(data_root), image_id, stamp(run_dir / CHECKPOINT))


@lru_cache(maxsize=128)
def _cam_images(run_dir: Path, data_root: Path, image_id: str, *stamps) -> dict[str, np.ndarray]:
    trained = trained_model(run_dir)
    ref = dataset(data_root).images.get(image_id)
    if ref is None:
        raise FileNotFoundError(f"image {image_id} not found under {data_root}")
    image = load_rgb(ref)
    arrays = {"image": resize_square(image, trained.image_size),
              "cam_predicted": gradcam_overlay(trained, image),
              "cam_mel": gradcam_overlay(trained, image, MEL)}
    for array in arrays.values():
        array.flags.writeable = False
    return arrays


def report_examples(outcomes: pd.DataFrame, n: int) -> pd.DataFrame:
    """Up to `n` images worth showing: missed melanomas first, then detected melanomas,
    then other errors, then other correct predictions."""
    is_mel = outcomes["dx"] == "mel"
    groups = [is_mel & ~outcomes["correct"], is_mel & outcomes["correct"], ~is_mel & ~outcomes["correct"],
              ~is_mel & outcomes["correct"]]
    return pd.concat([outcomes[g] for g in groups]).head(n).reset_index(drop=True)
