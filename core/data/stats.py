"""Dataset figures: class and metadata counts as JSON and CSV, plus three PNG overviews.

Figures are drawn on `matplotlib.figure.Figure` objects (Agg, no pyplot), so nothing here
touches the process-wide backend or needs a display. Every file is written atomically.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from core.data.metadata import is_synthetic
from core.io import atomic_write, write_json
from core.labels import CLASSES

TOP_LOCALIZATIONS = 10
SYNTHETIC_MARK = "SYNTHETIC demo data"
MISSING = "(blank)"  # how an empty sex/localization cell is counted


def dataset_stats(metadata: pd.DataFrame) -> dict:
    """Counts and summaries of a metadata frame, as plain JSON-serialisable values.

    Parts that need an optional column (age, sex, localization, dx_type, dataset) are
    left out when the column is absent.
    """
    dx = metadata["dx"]
    stats: dict = {
        "rows": len(metadata),
        "lesions": int(metadata["lesion_id"].nunique()),
        "synthetic": is_synthetic(metadata),
        "class_counts": {c: int((dx == c).sum()) for c in CLASSES},
        "lesions_per_class": {c: int(metadata.loc[dx == c, "lesion_id"].nunique()) for c in CLASSES},
    }
    unknown = dx[~dx.isin(CLASSES)]
    if len(unknown):
        stats["unknown_dx"] = _counts(unknown)
    if "age" in metadata:
        stats["age"] = _age_summary(metadata["age"])
    if "sex" in metadata:
        stats["sex"] = _counts(metadata["sex"])
    if "localization" in metadata:
        stats["localization_top10"] = dict(list(_counts(metadata["localization"]).items())[:TOP_LOCALIZATIONS])
    for column in ("dx_type", "dataset"):
        if column in metadata:
            table = _by_class(metadata, column)
            stats[f"{column}_table"] = {row: {c: int(n) for c, n in counts.items()} for row, counts in table.iterrows()}
    return stats


def write_stats(
    metadata: pd.DataFrame,
    out_dir: str | Path,
    load_image: Callable[[str], Image.Image] | None = None,
) -> dict:
    """Write stats.json, the dx_type/dataset tables and the figures into `out_dir`.

    `load_image(image_id)` supplies the sample strip (one image per class); without it the
    strip is skipped. Returns the stats dict that stats.json holds.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats = dataset_stats(metadata)
    synthetic = stats["synthetic"]
    for column in ("dx_type", "dataset"):
        if column in metadata:
            table = _by_class(metadata, column)
            atomic_write(out / f"{column}.csv", table.to_csv)
    _save(_class_figure(stats, synthetic), out / "class_distribution.png")
    _save(_overview_figure(metadata, synthetic), out / "metadata_overview.png")
    samples = sample_ids(metadata)
    if load_image is not None and samples:
        _save(_sample_strip(samples, load_image, synthetic), out / "sample_strip.png")
    write_json(out / "stats.json", stats)
    return stats


def sample_ids(metadata: pd.DataFrame) -> dict[str, str]:
    """The first image_id (sorted) of each class present, in CLASSES order."""
    first = metadata.sort_values("image_id").drop_duplicates("dx").set_index("dx")["image_id"]
    return {c: first[c] for c in CLASSES if c in first.index}


def _counts(values: pd.Series) -> dict[str, int]:
    """Value counts, largest first, ties by name, blanks counted as MISSING."""
    counts = values.fillna("").replace("", MISSING).value_counts()
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {str(k): int(v) for k, v in ordered}


def _age_summary(age: pd.Series) -> dict:
    known = pd.to_numeric(age, errors="coerce").dropna()
    summary = {"n": len(known), "missing": int(len(age) - len(known))}
    for name in ("mean", "median", "min", "max"):
        summary[name] = round(float(getattr(known, name)()), 2) if len(known) else None
    return summary


def _by_class(metadata: pd.DataFrame, column: str) -> pd.DataFrame:
    """A `column` x dx count table; the CLASSES columns always present, in order."""
    table = pd.crosstab(metadata[column].fillna("").replace("", MISSING), metadata["dx"])
    extra = sorted(c for c in table.columns if c not in CLASSES)
    return table.reindex(columns=[*CLASSES, *extra], fill_value=0).rename_axis(index=column, columns="dx")


def _title(text: str, synthetic: bool) -> str:
    return f"{SYNTHETIC_MARK}: {text}" if synthetic else text


def _class_figure(stats: dict, synthetic: bool) -> Figure:
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    counts = list(stats["class_counts"].values())
    bars = ax.bar(CLASSES, counts, color="tab:blue")
    ax.bar_label(bars, labels=[f"{n:,}" for n in counts], padding=2)
    ax.set_ylabel("images")
    ax.margins(y=0.12)
    ax.set_title(_title(f"Class distribution: {stats['rows']:,} images, {stats['lesions']:,} lesions", synthetic))
    return fig


def _overview_figure(metadata: pd.DataFrame, synthetic: bool) -> Figure:
    fig = Figure(figsize=(15, 4.5), layout="constrained")
    age_ax, sex_ax, loc_ax = fig.subplots(1, 3)
    if "age" in metadata:
        ages = pd.to_numeric(metadata["age"], errors="coerce").dropna()
        age_ax.hist(ages, bins=np.arange(0, 95, 5), color="tab:blue", edgecolor="white")
        age_ax.set_xlabel(f"age (years; {len(metadata) - len(ages)} missing)")
        age_ax.set_ylabel("images")
    _count_bars(sex_ax, metadata, "sex")
    _count_bars(loc_ax, metadata, "localization", top=TOP_LOCALIZATIONS)
    age_ax.set_title("Age" if "age" in metadata else "Age (no age column)")
    fig.suptitle(_title("Metadata overview", synthetic))
    return fig


def _count_bars(ax, metadata: pd.DataFrame, column: str, top: int | None = None) -> None:
    """Vertical bars of a column's counts, or horizontal bars of its `top` most common values."""
    if column not in metadata:
        ax.set_title(f"{column.capitalize()} (no {column} column)")
        return
    counts = dict(list(_counts(metadata[column]).items())[:top])
    if top:
        ax.barh(list(counts)[::-1], list(counts.values())[::-1], color="tab:orange")
        ax.set_xlabel("images")
        ax.set_title(f"{column.capitalize()} (top {top})")
    else:
        ax.bar(list(counts), list(counts.values()), color="tab:green")
        ax.set_ylabel("images")
        ax.set_title(column.capitalize())


def _sample_strip(samples: dict[str, str], load_image: Callable[[str], Image.Image], synthetic: bool) -> Figure:
    fig = Figure(figsize=(2.4 * len(samples), 2.6), layout="constrained")
    for ax, (dx, image_id) in zip(np.atleast_1d(fig.subplots(1, len(samples))), samples.items(), strict=True):
        ax.imshow(load_image(image_id).convert("RGB"))
        ax.set_title(f"{dx}\n{image_id}", fontsize=9)
        ax.axis("off")
    fig.suptitle(_title("One sample per class", synthetic))
    return fig


def _save(fig: Figure, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
