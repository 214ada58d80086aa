"""Validate a HAM10000-format dataset: every problem names the file or row and the fix."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from core.data.cache import default_cache_dir
from core.data.dataset import Ham10000
from core.data.images import ImageError, ImageRef, load_rgb
from core.data.metadata import DatasetError
from core.data.pairs import SHOWN, as_pairs, pairs_in
from core.data.parallel import parallel_map
from core.io import write_json
from core.labels import CLASSES


@dataclass(frozen=True)
class Problem:
    severity: str  # "error" blocks training; "warning" does not
    where: str  # file, row or image_id
    what: str
    fix: str
    image_id: str | None = None  # the row it excludes under --skip-bad-images

    def __str__(self) -> str:
        return f"{self.severity.upper()}: {self.where}: {self.what}. Fix: {self.fix}"


@dataclass
class CheckReport:
    summary: dict
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def excluded(self) -> pd.DataFrame:
        """The rows --skip-bad-images drops, one per image_id, with the reason."""
        rows = [(p.image_id, f"{p.what} ({p.where})") for p in self.errors if p.image_id is not None]
        return pd.DataFrame(rows, columns=["image_id", "reason"]).drop_duplicates("image_id")


def check_dataset(ds: Ham10000, decode: bool = True,
                  duplicates: pd.DataFrame | str | Path | None = None) -> CheckReport:
    """Check the metadata rows, then that each image exists and (with `decode`) decodes.

    With `duplicates` (pairs, or the CSV `python -m core.data duplicates` writes), its pairs
    under two lesion_ids are reported as a warning.
    """
    meta = ds.metadata
    src = ds.metadata_path.name
    problems: list[Problem] = []

    def line(i: int) -> str:  # header is line 1
        return f"{src} line {i + 2}"

    for i, row in meta.iterrows():
        if not row["image_id"] or not row["lesion_id"]:
            problems.append(Problem("error", line(i), "blank image_id or lesion_id",
                                    "fill in both ids or delete the row", row["image_id"] or None))
        if row["dx"] not in CLASSES:
            problems.append(Problem("error", line(i), f"unknown dx {row['dx']!r} for {row['image_id']}",
                                    f"use one of {', '.join(CLASSES)}", row["image_id"]))
    duplicated = meta[meta["image_id"].duplicated(keep=False) & (meta["image_id"] != "")]
    for image_id, rows in duplicated.groupby("image_id").groups.items():
        lines = ", ".join(str(i + 2) for i in rows)
        problems.append(Problem("error", f"{src} lines {lines}", f"image_id {image_id} appears {len(rows)} times",
                                "keep one row per image", image_id))
    if "age" in meta:
        blank = meta.index[meta["age"].isna()]
        if len(blank):
            shown = ", ".join(str(i + 2) for i in blank[:10]) + (" ..." if len(blank) > 10 else "")
            problems.append(Problem("warning", f"{src} lines {shown}", f"{len(blank)} rows have a blank age",
                                    "none needed: age is only used for subgroup figures"))

    ids = [i for i in meta["image_id"].drop_duplicates() if i]
    missing = [i for i in ids if i not in ds.images]
    for image_id in missing:
        problems.append(Problem("error", image_id, f"no image file {image_id}.jpg under {ds.root}",
                                "add the image, or remove its row from the metadata", image_id))
    if decode:
        present = [i for i in ids if i in ds.images]
        errors = parallel_map(_decode_error, [ds.images[i] for i in present], "check")
        for image_id, error in zip(present, errors, strict=True):
            if error:
                problems.append(Problem("error", str(ds.images[image_id]), error, "restore the file from the "
                                        "original download, or exclude it with --skip-bad-images", image_id))

    if duplicates is not None:
        problems += _duplicate_warnings(meta, duplicates)

    summary = {
        "root": str(ds.root),
        "metadata": str(ds.metadata_path),
        "rows": len(meta),
        "lesions": int(meta["lesion_id"].nunique()),
        "classes": {c: int((meta["dx"] == c).sum()) for c in CLASSES},
        "images_found": len(ds.images),
        "missing_images": len(missing),
        "synthetic": ds.synthetic,
    }
    return CheckReport(summary, problems)


def _duplicate_warnings(meta: pd.DataFrame, duplicates: pd.DataFrame | str | Path) -> list[Problem]:
    pairs = pairs_in(meta, as_pairs(duplicates))
    cross = pairs[pairs["lesion_id_a"] != pairs["lesion_id_b"]]
    if cross.empty:
        return []
    shown = "; ".join(f"{p.image_id_a} ({p.lesion_id_a}) ~ {p.image_id_b} ({p.lesion_id_b})"
                      for p in cross.head(SHOWN).itertuples())
    where = str(duplicates) if not isinstance(duplicates, pd.DataFrame) else "duplicate pairs"
    return [Problem("warning", where,
                    f"{len(cross)} near-duplicate image pair(s) under different lesion_ids (e.g. {shown})",
                    "set duplicates_file (or split --duplicates) so the split keeps each pair together; "
                    "or give each pair one lesion_id once its review-sheet entry is confirmed")]


def cached_check(ds: Ham10000, cache_dir: str | Path | None = None) -> CheckReport:
    """`check_dataset` with decoding, remembered per dataset fingerprint (parallel runs share it)."""
    path = (Path(cache_dir) if cache_dir else default_cache_dir()) / f"{ds.fingerprint()}.check.json"
    if path.exists():
        saved = json.loads(path.read_text())
        return CheckReport(saved["summary"], [Problem(**p) for p in saved["problems"]])
    report = check_dataset(ds)
    write_json(path, {"summary": report.summary, "problems": [asdict(p) for p in report.problems]})
    return report


def _decode_error(ref: ImageRef) -> str | None:
    try:
        load_rgb(ref)
    except ImageError as e:
        return str(e).split(": ", 1)[-1]
    return None


def usable_metadata(ds: Ham10000, report: CheckReport, skip_bad_images: bool) -> pd.DataFrame:
    """The rows training may use: all of them when clean, else refuse or drop the bad ones."""
    if report.ok:
        return ds.metadata
    if not skip_bad_images:
        listed = "\n  ".join(str(p) for p in report.errors[:20])
        more = f"\n  ... and {len(report.errors) - 20} more" if len(report.errors) > 20 else ""
        raise DatasetError(
            f"dataset {ds.root} has {len(report.errors)} error(s):\n  {listed}{more}\n"
            "Fix them (see `python -m core.data check`), or pass --skip-bad-images to exclude "
            "these rows (they are listed in the run's excluded.csv)."
        )
    unfixable = [p for p in report.errors if p.image_id is None]
    if unfixable:
        raise DatasetError("cannot skip: " + "; ".join(str(p) for p in unfixable))
    bad = set(report.excluded()["image_id"])
    return ds.metadata[~ds.metadata["image_id"].isin(bad)].reset_index(drop=True)

