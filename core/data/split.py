"""Lesion-wise, class-stratified train/val/test split: no lesion's images straddle two splits.

With a duplicates file, lesions listed as one lesion photographed under two lesion_ids
count as one group, so those images stay together too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from core.data.metadata import DatasetError
from core.data.pairs import as_pairs, crossing_pairs, lesion_groups, pairs_in
from core.labels import CLASSES

SPLITS = ("train", "val", "test")


def lesion_split(meta: pd.DataFrame, seed: int = 0, val_frac: float = 0.1, test_frac: float = 0.1,
                 duplicates: pd.DataFrame | str | Path | None = None) -> pd.DataFrame:
    """Return image_id, lesion_id, dx, split for every row of `meta`.

    Test is one fold of a StratifiedGroupKFold over lesions (about `test_frac` of the
    images), val one fold of the remainder. Deterministic for a given seed, row order
    aside: rows are sorted by image_id first. On the real HAM10000 metadata the default
    gives about 8012 / 1000 / 1003 images. `duplicates` (a pairs frame or the CSV that
    `python -m core.data duplicates` writes) joins each listed pair's lesions into one group.
    """
    if not 0 < val_frac < 1 or not 0 < test_frac < 1 or val_frac + test_frac >= 1:
        raise ValueError(f"val_frac={val_frac}, test_frac={test_frac}: each must be in (0, 1), summing below 1")
    frame = meta[["image_id", "lesion_id", "dx"]].sort_values("image_id").reset_index(drop=True)
    pairs = as_pairs(duplicates)
    frame["group"] = frame["lesion_id"] if pairs is None else lesion_groups(frame, pairs)[0]
    frame["split"] = "train"
    test = _one_fold(frame, round(1 / test_frac), seed)
    frame.loc[test, "split"] = "test"
    rest = frame.index[frame["split"] == "train"]
    val = _one_fold(frame.loc[rest], round((1 - test_frac) / val_frac), seed + 1)
    frame.loc[val, "split"] = "val"
    frame = frame.drop(columns="group")
    _require_every_class(frame)
    return frame


def duplicates_report(meta: pd.DataFrame, duplicates: pd.DataFrame | str | Path, splits: pd.DataFrame,
                      seed: int = 0) -> dict:
    """What the duplicates did to `splits` (made from `meta` with them): the pairs in this
    dataset, the links that joined two groups, and the pairs across splits without and with them."""
    pairs = pairs_in(meta, as_pairs(duplicates))
    return {
        "pairs": len(pairs),
        "links_applied": lesion_groups(meta, pairs)[1],
        "crossing_without": crossing_pairs(lesion_split(meta, seed=seed), pairs),
        "crossing_with": crossing_pairs(splits, pairs),
    }


def _one_fold(frame: pd.DataFrame, n_splits: int, seed: int) -> pd.Index:
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, held_out = next(folds.split(frame, frame["dx"], groups=frame["group"]))
    return frame.index[held_out]


def _require_every_class(frame: pd.DataFrame) -> None:
    counts = frame.groupby(["split", "dx"]).size().unstack(fill_value=0).reindex(SPLITS)
    for split in SPLITS:
        absent = [c for c in CLASSES if c in frame["dx"].values and counts.get(c, {}).get(split, 0) == 0]
        if absent:
            lesions = frame[frame["dx"].isin(absent)].groupby("dx")["lesion_id"].nunique().to_dict()
            raise DatasetError(
                f"the {split} split has no images of {', '.join(absent)} (lesions per class: {lesions}); "
                "each class needs about 10 or more lesions for a three-way lesion-wise split"
            )


def attach_split(meta: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    """Join a saved splits table onto metadata rows, refusing rows the split does not cover."""
    merged = meta.merge(splits[["image_id", "split"]], on="image_id", how="left", validate="one_to_one")
    uncovered = merged.loc[merged["split"].isna(), "image_id"]
    if len(uncovered):
        raise DatasetError(
            f"{len(uncovered)} image(s) are not in the split file (first: {', '.join(uncovered[:5])}); "
            "the split was made for another dataset: make a new one with `python -m core.data split`"
        )
    bad = set(merged["split"]) - set(SPLITS)
    if bad:
        raise DatasetError(f"unknown split value(s) {sorted(bad)} in the split file; use {', '.join(SPLITS)}")
    return merged


def split_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Images per split (rows) and class (columns)."""
    counts = frame.groupby(["split", "dx"]).size().unstack(fill_value=0).reindex(index=SPLITS, columns=list(CLASSES))
    return counts.fillna(0).astype(np.int64)
