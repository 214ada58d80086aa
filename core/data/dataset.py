"""A HAM10000-format dataset on disk: its metadata, where each image is, and a fingerprint."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.data.images import ImageRef, index_images
from core.data.metadata import find_metadata, is_synthetic, read_metadata


@dataclass
class Ham10000:
    root: Path
    metadata_path: Path
    metadata: pd.DataFrame
    images: dict[str, ImageRef] = field(repr=False)

    @property
    def synthetic(self) -> bool:
        """True for the built-in demo data; results from it are never HAM10000 results."""
        return is_synthetic(self.metadata)

    def fingerprint(self) -> str:
        """A short hash of the labelled rows and each image's size: it keys caches and results."""
        h = hashlib.sha256()
        for row in self.metadata.sort_values("image_id").itertuples():
            ref = self.images.get(row.image_id)
            size = ref.path.stat().st_size if ref is not None and ref.member is None else str(ref)
            h.update(f"{row.image_id},{row.lesion_id},{row.dx},{size}\n".encode())
        return h.hexdigest()[:16]


def load_dataset(root: str | Path, metadata: str | Path | None = None) -> Ham10000:
    """Find the metadata table and every image under `root` (Kaggle, flat or Dataverse zips)."""
    root = Path(root)
    metadata_path = Path(metadata) if metadata else find_metadata(root)
    frame = read_metadata(metadata_path)
    return Ham10000(root, metadata_path, frame, index_images(root))
