"""The ISIC 2018 Task 3 test set (1511 images) on disk: its ground truth and its images.

The challenge's test set was held out from HAM10000 (the challenge's training set). Its
ground truth comes in two formats, both read here:

- HAM10000 metadata (the Harvard Dataverse copy): lesion_id, image_id, dx, dx_type, age,
  sex, localization, dataset; comma- or tab-separated.
- the challenge's one-hot table: image, MEL, NV, BCC, AKIEC, BKL, DF, VASC with 1.0 / 0.0.
  It has no lesion_id: each image then counts as its own lesion for the bootstrap.

The images are found by image_id anywhere under a folder (unpacked, or read in place from
ISIC2018_Task3_Test_Images.zip). `python -m core.evaluate` scores trained runs on it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.images import ImageRef, index_images
from core.data.metadata import REQUIRED_COLUMNS, DatasetError, header_columns, is_synthetic, read_metadata
from core.labels import CLASS_INDEX, CLASSES

GROUND_TRUTH_NAMES = ("ISIC2018_Task3_Test_GroundTruth.csv", "ISIC2018_Task3_Test_GroundTruth.tab")
HAM_FORMAT = "ham10000_metadata"
ONE_HOT_FORMAT = "isic2018_one_hot"
ONE_HOT_IMAGE = "image"
ONE_HOT_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")  # the challenge's column order
DOWNLOAD_HINT = "python -m core.data download --dest DIR fetches the ISIC 2018 Task 3 test set"
SHOWN = 5  # offending rows named in one error message


@dataclass
class GroundTruth:
    path: Path
    format: str  # HAM_FORMAT or ONE_HOT_FORMAT
    frame: pd.DataFrame  # image_id, lesion_id, dx (+ the metadata columns of the HAM format), file order
    own_lesion_images: int  # rows without a lesion_id in the file: each counts as its own lesion

    @property
    def synthetic(self) -> bool:
        return is_synthetic(self.frame)

    def lesion_note(self) -> str:
        if self.own_lesion_images == len(self.frame):
            return (f"{self.path.name} has no lesion_id: each image counts as its own lesion in the bootstrap, "
                    "so the intervals are too narrow if a lesion has several images")
        if self.own_lesion_images:
            return f"{self.own_lesion_images} image(s) without lesion_id count as their own lesion in the bootstrap"
        return "lesion-level bootstrap over the lesion_id column"


@dataclass
class ExternalSet:
    ground_truth: GroundTruth
    root: Path  # where the images were found
    images: list[ImageRef]  # in ground-truth order

    @property
    def labels(self) -> np.ndarray:
        return self.ground_truth.frame["dx"].map(CLASS_INDEX).to_numpy()

    @property
    def image_ids(self) -> list[str]:
        return list(self.ground_truth.frame["image_id"])


# --------------------------------------------------------------------------- ground truth


def find_ground_truth(root: str | Path) -> Path:
    """The ISIC2018_Task3_Test_GroundTruth.csv (or .tab) under `root`; the .csv wins beside a .tab."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"external test folder {root} is not a directory: pass the folder that holds the "
                           f"ISIC 2018 Task 3 test set ({DOWNLOAD_HINT})")
    found = sorted(p for name in GROUND_TRUTH_NAMES for p in root.rglob(name) if p.is_file())
    folders = {p.parent for p in found}
    if not found:
        raise DatasetError(f"no {' or '.join(GROUND_TRUTH_NAMES)} under {root}: {DOWNLOAD_HINT}, "
                           "or pass --labels FILE for a ground-truth table with another name")
    if len(folders) > 1:
        listed = ", ".join(str(p) for p in found[:SHOWN])
        raise DatasetError(f"several ISIC 2018 Task 3 ground-truth tables under {root} ({listed}); "
                           "choose one with --labels FILE")
    return found[0]  # .csv sorts before .tab


def read_ground_truth(path: str | Path) -> GroundTruth:
    """Read either ground-truth format; raises DatasetError naming the file, the lines and the fix."""
    path = Path(path)
    columns, delimiter = _header(path)
    if all(c in columns for c in REQUIRED_COLUMNS):
        truth = _read_ham(path)
    elif ONE_HOT_IMAGE in columns and all(c in {x.upper() for x in columns} for c in ONE_HOT_CLASSES):
        truth = _read_one_hot(path, delimiter)
    else:
        raise DatasetError(
            f"{path} is in neither ground-truth format (found columns: {', '.join(columns[:12])}); expected the "
            f"HAM10000 metadata columns ({', '.join(REQUIRED_COLUMNS)}, ...) or the ISIC 2018 one-hot columns "
            f"({ONE_HOT_IMAGE}, {', '.join(ONE_HOT_CLASSES)})"
        )
    _check_rows(truth)
    return truth


def _header(path: Path) -> tuple[list[str], str]:
    """The column names of a comma- or tab-separated table, and its delimiter."""
    if not path.is_file():
        raise DatasetError(f"ground-truth file {path} does not exist")
    try:
        with path.open(encoding="utf-8-sig") as f:
            header = f.readline()
    except UnicodeDecodeError:
        raise DatasetError(f"{path} is not a text table; pass the ISIC2018_Task3_Test_GroundTruth.csv file") from None
    return header_columns(header.strip())


def _read_ham(path: Path) -> GroundTruth:
    frame = read_metadata(path)
    blank = frame["lesion_id"] == ""
    frame.loc[blank, "lesion_id"] = frame.loc[blank, "image_id"]
    return GroundTruth(path, HAM_FORMAT, frame, int(blank.sum()))


def _read_one_hot(path: Path, delimiter: str) -> GroundTruth:
    """image, MEL .. VASC -> image_id, lesion_id (= image_id), dx; exactly one 1 per row."""
    try:
        table = pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, ValueError) as e:
        raise DatasetError(f"{path} could not be parsed as a table: {e}") from None
    table.columns = table.columns.str.strip()
    by_upper = {c.upper(): c for c in table.columns if c != ONE_HOT_IMAGE}
    class_columns = [by_upper[c] for c in ONE_HOT_CLASSES]
    values = table[class_columns].apply(lambda col: pd.to_numeric(col.str.strip(), errors="coerce"))
    valid = values.isin([0.0, 1.0]).all(axis=1) & (values.sum(axis=1) == 1)
    if not valid.all():
        rows = [f"line {i + 2} ({table[ONE_HOT_IMAGE].iloc[i]}: "
                f"{', '.join(f'{c}={table[by_upper[c]].iloc[i]}' for c in ONE_HOT_CLASSES)})"
                for i in np.flatnonzero(~valid)[:SHOWN]]
        raise DatasetError(
            f"{path}: {int((~valid).sum())} row(s) are not one-hot, each needs exactly one 1 (the diagnosis) and "
            f"0 in the other class columns: {'; '.join(rows)}; fix those rows"
        )
    image_ids = table[ONE_HOT_IMAGE].str.strip()
    dx = [ONE_HOT_CLASSES[i].lower() for i in values.to_numpy().argmax(axis=1)]
    frame = pd.DataFrame({"image_id": image_ids, "lesion_id": image_ids, "dx": dx})
    return GroundTruth(path, ONE_HOT_FORMAT, frame, len(frame))


def _check_rows(truth: GroundTruth) -> None:
    """Blank or duplicate image_ids and unknown dx, each named by line."""
    frame, path = truth.frame, truth.path
    if frame.empty:
        raise DatasetError(f"{path} has a header but no rows")
    problems = {
        "blank image_id": frame["image_id"] == "",
        "duplicate image_id": frame["image_id"].duplicated(keep=False) & (frame["image_id"] != ""),
        f"unknown dx (expected one of {', '.join(CLASSES)})": ~frame["dx"].isin(CLASSES),
    }
    for what, bad in problems.items():
        if bad.any():
            rows = [f"line {i + 2} ({frame['image_id'].iloc[i]!r}, dx {frame['dx'].iloc[i]!r})"
                    for i in np.flatnonzero(bad)[:SHOWN]]
            raise DatasetError(f"{path}: {int(bad.sum())} row(s) with {what}: {'; '.join(rows)}; fix those rows")


# --------------------------------------------------------------------------- images


def locate_images(truth: GroundTruth, root: str | Path) -> list[ImageRef]:
    """Each ground-truth image under `root` (files or zip members), in ground-truth order."""
    root = Path(root)
    found = index_images(root)
    missing = [i for i in truth.frame["image_id"] if i not in found]
    if missing:
        raise DatasetError(
            f"{len(missing)} of the {len(truth.frame)} images {truth.path.name} lists are not under {root} "
            f"(e.g. {', '.join(missing[:SHOWN])}): unpack ISIC2018_Task3_Test_Images.zip there or leave the zip "
            f"in it ({DOWNLOAD_HINT}), or point --external at the folder that holds the images"
        )
    return [found[i] for i in truth.frame["image_id"]]


def load_external(root: str | Path, labels: str | Path | None = None) -> ExternalSet:
    """The ground truth (found under `root`, or `labels`) and the location of each of its images."""
    truth = read_ground_truth(labels if labels else find_ground_truth(root))
    return ExternalSet(truth, Path(root), locate_images(truth, root))
