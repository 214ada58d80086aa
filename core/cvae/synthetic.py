"""cVAE images appended to the training set (the baseline_synth arm), and the record of them.

Only the training dataset is ever extended; val, test and the split table are untouched.
Each generated image has an id `synth-<cVAE key[:8]>-<dx>-<n>` naming its class and the
cVAE it came from. A generated set is stored beside its cVAE as an image cache
(`synthetic_<side>_<hash>.npy` + `.ids.json`), so DDP ranks and loader workers share it.
"""
from __future__ import annotations

import hashlib
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core import io
from core.cvae.model import generate
from core.cvae.store import RUN_FILES, ensure_cvae, load_cvae, training_rows
from core.data.cache import ImageCache
from core.data.dataset import Ham10000
from core.data.lesions import LesionDataset
from core.devices import resolve_device
from core.labels import CLASS_INDEX, CLASSES, NUM_CLASSES

if TYPE_CHECKING:
    from core.config import RunConfig


def synthetic_plan(train_counts: Sequence[int], target: float) -> list[int]:
    """Images to generate per class: each class is brought up to ceil(target x the largest
    class's count). Classes already there get none, and so do classes with no training
    images (the cVAE never saw them)."""
    goal = math.ceil(target * max(train_counts))
    return [max(0, goal - n) if n else 0 for n in train_counts]


class ChainedImages:
    """Two image sequences read as one: the real training images, then the generated ones."""

    def __init__(self, first: Sequence[np.ndarray], second: Sequence[np.ndarray]):
        self.first, self.second = first, second

    def __len__(self) -> int:
        return len(self.first) + len(self.second)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.first[i] if i < len(self.first) else self.second[i - len(self.first)]


@dataclass
class SyntheticImages:
    """Generated images for one run: what is appended to its training set, and their source."""

    images: Sequence[np.ndarray]  # uint8 (side, side, 3)
    labels: np.ndarray
    image_ids: list[str]
    cvae_path: Path  # the cvae.pt they came from
    real_counts: list[int]  # training images per class before augmentation

    @property
    def counts(self) -> dict[str, int]:
        return dict(zip(CLASSES, np.bincount(self.labels, minlength=NUM_CLASSES).tolist(), strict=True))

    def appended_to(self, train: LesionDataset) -> LesionDataset:
        return LesionDataset(ChainedImages(train.images, self.images), np.concatenate([train.labels, self.labels]),
                             train.transform, train.image_ids + self.image_ids)

    def write_run_files(self, out: Path) -> None:
        """synthetic.csv (per class: real, synthetic, cVAE) and the cVAE's curves and samples."""
        table = pd.DataFrame({"dx": CLASSES, "real": self.real_counts, "synthetic": list(self.counts.values()),
                              "cvae": self.cvae_path.parent.name})
        io.write_csv(out / "synthetic.csv", table)
        for name in RUN_FILES:
            io.atomic_write(out / name, lambda tmp, src=self.cvae_path.parent / name: shutil.copyfile(src, tmp))


def add_synthetic(cfg: RunConfig, ds: Ham10000, splits: pd.DataFrame, train: LesionDataset,
                  side: int) -> tuple[LesionDataset, SyntheticImages | None]:
    """The training dataset with cVAE images appended (cfg.synthetic == "cvae"), else as it is."""
    if cfg.synthetic == "none":
        return train, None
    real = np.bincount(training_rows(splits)["dx"].map(CLASS_INDEX), minlength=NUM_CLASSES).tolist()
    generated = synthetic_images(ensure_cvae(cfg, ds, splits), real, cfg.synthetic_target, side, cfg.seed,
                                 cfg.device)
    return generated.appended_to(train), generated


def synthetic_images(cvae_path: Path, real_counts: list[int], target: float, side: int, seed: int = 0,
                     device: str = "auto") -> SyntheticImages:
    """The images `synthetic_plan` asks for, at `side` px, generated once and cached beside the cVAE."""
    plan = synthetic_plan(real_counts, target)
    labels = np.repeat(np.arange(NUM_CLASSES), plan)
    key = cvae_path.parent.name
    ids = [f"synth-{key[:8]}-{CLASSES[c]}-{n:05d}" for c, count in enumerate(plan) for n in range(count)]
    tag = hashlib.sha256(f"{plan} {seed}".encode()).hexdigest()[:12]
    path = cvae_path.parent / f"synthetic_{side}_{tag}.npy"
    if ids and not (path.exists() and path.with_suffix(".ids.json").exists()):
        model, _ = load_cvae(cvae_path, resolve_device(device))

        def fill(tmp: Path) -> None:
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(ids), side, side, 3))
            generate(model, labels, side, seed, out=array)
            array.flush()
            io.write_json(path.with_suffix(".ids.json"), ids)

        # Written under a private name and renamed when complete, as the image cache is.
        io.remove_stale(path.parent)
        io.atomic_write(path, fill)
    return SyntheticImages(ImageCache(path) if ids else [], labels, ids, cvae_path, real_counts)
