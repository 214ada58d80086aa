"""The sweep's dataset, loaded once per process, and its figures, drawn once per dataset."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from core.data.cache import default_cache_dir
from core.data.dataset import Ham10000, load_dataset
from core.data.images import load_rgb
from core.data.metadata import find_metadata
from core.data.stats import write_stats
from dashboards.results import stamp


def dataset(data_root: Path) -> Ham10000:
    """The dataset, loaded again when its metadata table is rewritten or its folder gains or loses files."""
    data_root = Path(data_root)
    return _dataset(data_root, stamp(_metadata_file(data_root)), stamp(data_root))


@lru_cache(maxsize=8)
def _metadata_file(data_root: Path) -> Path:
    return find_metadata(data_root)  # searches the whole tree: once per root


@lru_cache(maxsize=2)
def _dataset(data_root: Path, *stamps) -> Ham10000:
    return load_dataset(data_root)


def write_dataset_figures(data_root: Path, out_dir: Path) -> dict:
    """class_distribution.png, metadata_overview.png, sample_strip.png and stats.json (core.data.stats)."""
    ds = dataset(data_root)
    return write_stats(ds.metadata, out_dir, lambda image_id: load_rgb(ds.images[image_id]))


def dataset_figures(data_root: Path) -> Path:
    """The folder holding the dataset's figures, drawn on first use and kept under the
    image cache, keyed by the dataset fingerprint."""
    out = default_cache_dir() / "dataset_figures" / dataset(data_root).fingerprint()
    if not (out / "stats.json").is_file():
        write_dataset_figures(data_root, out)
    return out
