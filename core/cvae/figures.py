"""The cVAE's figures: loss curves, and real beside generated images for every class."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from core.data.stats import SYNTHETIC_MARK
from core.io import atomic_write
from core.labels import CLASSES

PER_SIDE = 6  # real and generated images per class in the grid
GAP = 4  # pixels between the real and the generated half of a row


def loss_figure(history: pd.DataFrame, demo: bool) -> Figure:
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    recon_ax, kl_ax = fig.subplots(1, 2)
    recon_ax.plot(history["epoch"], history["recon"], marker="o", color="tab:blue")
    recon_ax.set_title("Reconstruction (BCE, nats per image)")
    kl_ax.plot(history["epoch"], history["kl"], marker="o", color="tab:orange", label="KL")
    kl_ax.set_title("KL to the prior (nats per image)")
    beta_ax = kl_ax.twinx()
    beta_ax.plot(history["epoch"], history["beta"], linestyle="--", color="gray", label="beta (warm-up)")
    beta_ax.set_ylabel("beta")
    for ax in (recon_ax, kl_ax):
        ax.set_xlabel("epoch")
    fig.legend(loc="outside lower center", ncols=2)
    fig.suptitle(_title("cVAE training", demo))
    return fig


def sample_grid(real: dict[str, np.ndarray], generated: dict[str, np.ndarray], demo: bool) -> Figure:
    """One row per class: up to PER_SIDE training images, then PER_SIDE generated ones.

    Each value is uint8 (n, R, R, 3); a class without training images shows grey tiles.
    """
    side = next(iter(generated.values())).shape[1]
    rows = []
    for c in CLASSES:
        halves = [_strip(real.get(c, np.empty((0, side, side, 3), np.uint8)), side), _strip(generated[c], side)]
        rows.append(np.concatenate([halves[0], np.full((side, GAP, 3), 255, np.uint8), halves[1]], axis=1))
    montage = np.concatenate(rows, axis=0)
    fig = Figure(figsize=(1.1 * 2 * PER_SIDE + 1, 1.1 * len(CLASSES) + 0.8), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(montage, interpolation="nearest")
    ax.set_yticks([side * (i + 0.5) for i in range(len(CLASSES))], CLASSES)
    half = PER_SIDE * side
    ax.set_xticks([half / 2, half + GAP + half / 2], ["training images (real)", "cVAE samples (generated)"])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.suptitle(_title(f"Real vs cVAE-generated, {side} px", demo))
    return fig


def save(fig: Figure, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def _strip(images: np.ndarray, side: int) -> np.ndarray:
    tiles = np.full((PER_SIDE, side, side, 3), 128, np.uint8)
    tiles[: len(images[:PER_SIDE])] = images[:PER_SIDE]
    return np.concatenate(list(tiles), axis=1)


def _title(text: str, demo: bool) -> str:
    return f"{SYNTHETIC_MARK}: {text}" if demo else text
