"""Read the HAM10000 metadata table (Kaggle CSV or Dataverse .tab) and catch structural errors.

Row-level problems (unknown dx, duplicate image_id, blank age) are not raised here:
`core.data.check` reports them all at once so a user can fix the file in one pass.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

REQUIRED_COLUMNS = ("lesion_id", "image_id", "dx")
OPTIONAL_COLUMNS = ("dx_type", "age", "sex", "localization", "dataset")
# The `dataset` value on every row of the built-in synthetic demo data.
SYNTHETIC_DATASET = "synthetic_demo"
METADATA_NAMES = ("HAM10000_metadata.csv", "HAM10000_metadata.tab", "HAM10000_metadata")


class DatasetError(ValueError):
    """A dataset problem the user must fix; the message says what, where and how."""


def read_metadata(path: str | Path) -> pd.DataFrame:
    """Load a metadata table, comma- or tab-separated, with every column read as text.

    `age` becomes a float column (blank -> NaN); other columns keep their text. Raises
    DatasetError naming the file when it is empty, not a table, or lacks a required column.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"metadata file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DatasetError(
            f"{path} is not a text table ({e.reason} at byte {e.start}); pass the "
            "HAM10000_metadata.csv (or the Dataverse HAM10000_metadata.tab) file"
        ) from None
    if not text.strip():
        raise DatasetError(f"{path} is empty; expected a header line with {', '.join(REQUIRED_COLUMNS)}")
    columns, delimiter = header_columns(text.splitlines()[0])
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise DatasetError(
            f"{path} lacks the required column(s) {', '.join(missing)} (found: {', '.join(columns[:12])}); "
            f"HAM10000 metadata needs {', '.join(REQUIRED_COLUMNS)} in its header line"
        )
    try:
        frame = pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, ValueError) as e:
        raise DatasetError(f"{path} could not be parsed as a table: {e}") from None
    frame.columns = [c.strip() for c in frame.columns]
    for column in frame.columns:
        frame[column] = frame[column].str.strip()
    if frame.empty:
        raise DatasetError(f"{path} has a header but no rows")
    if "age" in frame:
        frame["age"] = pd.to_numeric(frame["age"].replace("", None), errors="coerce")
    return frame


def header_columns(header: str) -> tuple[list[str], str]:
    """The column names in the header line of a comma- or tab-separated table, and the delimiter."""
    delimiter = "\t" if header.count("\t") > header.count(",") else ","
    return [c.strip().strip('"') for c in next(csv.reader([header], delimiter=delimiter))], delimiter


def is_synthetic(metadata: pd.DataFrame) -> bool:
    """True when any row is the synthetic demo data: then nothing may pass for HAM10000."""
    return "dataset" in metadata and bool((metadata["dataset"] == SYNTHETIC_DATASET).any())


def find_metadata(root: str | Path) -> Path:
    """The metadata table under `root`: a HAM10000_metadata file, else the one table with the columns."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"data root {root} is not a directory")
    named = sorted(p for name in METADATA_NAMES for p in root.rglob(name) if p.is_file())
    if len(named) == 1:
        return named[0]
    candidates = named or [p for p in sorted(root.rglob("*")) if p.suffix in (".csv", ".tab") and _has_columns(p)]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DatasetError(
            f"no metadata table under {root}: expected HAM10000_metadata.csv (Kaggle) or "
            "HAM10000_metadata.tab (Dataverse); pass --metadata FILE if it has another name"
        )
    listed = ", ".join(str(p) for p in candidates[:5])
    raise DatasetError(f"several metadata tables under {root} ({listed}); choose one with --metadata FILE")


def _has_columns(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8-sig") as f:
            header = f.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return all(c in header for c in REQUIRED_COLUMNS)
