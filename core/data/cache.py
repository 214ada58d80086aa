"""Decode-and-resize once: a memory-mapped uint8 array shared by every run and loader worker.

The cache for a set of images at one side is `<cache_dir>/<key>.npy` (N, side, side, 3)
with `<key>.ids.json` listing image_ids in row order. The key hashes the dataset
fingerprint, the ids and the side, so a changed file or split never reads a stale cache.
Workers memory-map the file read-only: the OS shares one copy of its pages.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from core.data.dataset import Ham10000
from core.data.images import ImageRef, load_rgb
from core.data.parallel import parallel_map
from core.io import atomic_write, remove_stale, write_text


def default_cache_dir() -> Path:
    base = os.environ.get("DERMABLATE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "dermablate")
    return Path(base)


def resize_square(image: Image.Image, side: int) -> np.ndarray:
    """uint8 (side, side, 3): the one resize the cache, direct decoding and prediction share."""
    return np.array(image.resize((side, side), Image.BICUBIC, reducing_gap=3.0))


def decode_resized(ref: ImageRef, side: int) -> np.ndarray:
    return resize_square(load_rgb(ref), side)


class DecodedImages:
    """Decode each image when it is asked for (the no-cache path)."""

    def __init__(self, refs: list[ImageRef], side: int):
        self.refs, self.side = refs, side

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> np.ndarray:
        return decode_resized(self.refs[i], self.side)


class ImageCache:
    """Read-only view of a built cache file, opened lazily in each process."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.ids: list[str] = json.loads(self.path.with_suffix(".ids.json").read_text())
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return np.array(self._array[i])  # a private, writable copy of one image

    def __getstate__(self) -> dict:  # workers reopen the map rather than receive a copy
        return {**self.__dict__, "_array": None}


def cache_key(ds: Ham10000, ids: list[str], side: int) -> str:
    h = hashlib.sha256(f"{ds.fingerprint()}\n{side}\n".encode())
    h.update("\n".join(ids).encode())
    return f"{h.hexdigest()[:20]}_{side}"


def build_cache(ds: Ham10000, ids: list[str], side: int, cache_dir: str | Path | None = None) -> ImageCache:
    """Open the cache for these images at this side, building it first if it is not there."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{cache_key(ds, ids, side)}.npy"
    if path.exists() and path.with_suffix(".ids.json").exists():
        return ImageCache(path)
    remove_stale(cache_dir)  # what a build killed midway left: up to the size of a whole cache

    def fill(tmp: Path) -> None:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(ids), side, side, 3)).flush()
        tasks = [(tmp, i, ds.images[image_id], side) for i, image_id in enumerate(ids)]
        parallel_map(_fill_row, tasks, f"cache {side}px")
        write_text(path.with_suffix(".ids.json"), json.dumps(ids))

    # Built under a private name and renamed at the end: a crash or a concurrent build
    # (two Ray trials) never leaves a half-written cache under the final name.
    atomic_write(path, fill)
    return ImageCache(path)


def _fill_row(task: tuple) -> None:
    tmp, i, ref, side = task
    array = np.load(tmp, mmap_mode="r+")
    array[i] = decode_resized(ref, side)
    array.flush()
