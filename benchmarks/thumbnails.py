"""The real HAM10000 thumbnails beside the checkout (../shared/ham10000), as a dataset folder."""
from __future__ import annotations

import os
from pathlib import Path

HAM = Path(__file__).resolve().parents[2] / "shared" / "ham10000"


def linked_thumbnails(folder: Path) -> Path:
    """folder/data: the real metadata and the 200x150 images, linked (not copied) in a flat layout."""
    root = folder / "data"
    root.mkdir(parents=True, exist_ok=True)
    for name, target in (("HAM10000_metadata.csv", HAM / "HAM10000_metadata.csv"), ("images", HAM / "images_200x150")):
        if not (root / name).exists():
            os.symlink(target, root / name)
    return root
