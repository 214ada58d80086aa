"""The duplicates file: pairs of images that show one lesion under two lesion_ids.

`python -m core.data duplicates` writes it, by default as AUDIT_FILE in the dataset folder;
the split reads it and keeps each pair's two lesions in one group, so neither image can sit
in another split than its twin. A sweep given no `duplicates_file` applies the AUDIT_FILE
it finds beside the data.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.data.metadata import DatasetError

PAIR_COLUMNS = ("image_id_a", "image_id_b", "lesion_id_a", "lesion_id_b", "dx_a", "dx_b", "similarity", "inliers")
SHOWN = 5  # pairs named in one message
AUDIT_FILE = "duplicates.csv"  # the audit's list, in the dataset folder


def audit_beside(data_root: str | Path) -> Path | None:
    """The leak audit's list in the dataset folder, if one was written there."""
    path = Path(data_root) / AUDIT_FILE
    return path if path.is_file() else None


def read_pairs(path: str | Path) -> pd.DataFrame:
    """The pairs of a duplicates CSV; raises DatasetError naming the file and what it lacks."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"duplicates file {path} does not exist; make one with "
                           "`python -m core.data duplicates --data-root DIR --out FILE`")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DatasetError(f"duplicates file {path} is not a CSV table ({e})") from None
    missing = [c for c in ("image_id_a", "image_id_b") if c not in frame.columns]
    if missing:
        raise DatasetError(f"duplicates file {path} lacks the column(s) {', '.join(missing)} (found: "
                           f"{', '.join(frame.columns[:10])}); it needs one pair per row: {', '.join(PAIR_COLUMNS)}")
    if "similarity" in frame:
        frame["similarity"] = pd.to_numeric(frame["similarity"], errors="coerce")
    return frame


def as_pairs(duplicates: pd.DataFrame | str | Path | None) -> pd.DataFrame | None:
    """A pairs frame from a frame or a CSV path; None stays None."""
    if duplicates is None or isinstance(duplicates, pd.DataFrame):
        return duplicates
    return read_pairs(duplicates)


def pairs_in(meta: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """The pairs whose two images are both rows of `meta`, with their lesion_ids taken from `meta`.

    Raises DatasetError when the file lists pairs and none of them is in this dataset: it
    was made for another one.
    """
    lesion_of = meta.set_index("image_id")["lesion_id"]
    known = pairs["image_id_a"].isin(lesion_of.index) & pairs["image_id_b"].isin(lesion_of.index)
    if len(pairs) and not known.any():
        ids = pairs[["image_id_a", "image_id_b"]].head(SHOWN).itertuples(index=False)
        shown = ", ".join(f"{a}~{b}" for a, b in ids)
        raise DatasetError(f"none of the {len(pairs)} duplicate pairs ({shown}, ...) names two images of this "
                           "dataset; the file was made for another one: run `python -m core.data duplicates` on it")
    found = pairs[known].copy()
    found["lesion_id_a"] = found["image_id_a"].map(lesion_of)
    found["lesion_id_b"] = found["image_id_b"].map(lesion_of)
    return found.reset_index(drop=True)


def lesion_groups(meta: pd.DataFrame, pairs: pd.DataFrame) -> tuple[pd.Series, int]:
    """Each row's group (the smallest lesion_id it is linked to) and how many links merged two groups.

    Union-find over lesion_ids: a pair links its two lesions, and links chain. The group
    label does not depend on the order of the rows or the pairs.
    """
    parent: dict[str, str] = {}

    def root(lesion: str) -> str:
        parent.setdefault(lesion, lesion)
        while parent[lesion] != lesion:
            parent[lesion] = parent[parent[lesion]]
            lesion = parent[lesion]
        return lesion

    links = 0
    found = pairs_in(meta, pairs)
    for a, b in found[["lesion_id_a", "lesion_id_b"]].itertuples(index=False):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
            links += 1
    return meta["lesion_id"].map(root), links


def crossing_pairs(splits: pd.DataFrame, pairs: pd.DataFrame) -> int:
    """How many pairs have their two images in different splits of `splits` (image_id, split)."""
    split_of = splits.set_index("image_id")["split"]
    a, b = pairs["image_id_a"].map(split_of), pairs["image_id_b"].map(split_of)
    return int((a.notna() & b.notna() & (a != b)).sum())
