"""Trained cVAEs on disk, one folder per (training split, dataset, cVAE config), reused by later runs.

    <cache_dir>/cvae/<key>/
      cvae.pt            weights, cVAE config, class order, key, data fingerprint, training counts
      cvae_history.csv   per epoch: recon, kl, beta, loss (objective), neg_elbo, seconds
      cvae_losses.png    the loss curves
      cvae_samples.png   training images beside generated ones, per class
      synthetic_*.npy    generated training sets (core.cvae.synthetic)

The key hashes the data fingerprint, the sorted training image ids and the cVAE config,
so a different split, dataset or setting never reads a stale model. Only the training
split's images are ever read: val and test images never reach the cVAE.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from core import io
from core.checkpoints import load_checkpoint
from core.cvae.figures import PER_SIDE, loss_figure, sample_grid, save
from core.cvae.fit import train_cvae
from core.cvae.model import CVAE, CVAEConfig, generate
from core.data.cache import build_cache, default_cache_dir
from core.data.dataset import Ham10000, load_dataset
from core.devices import resolve_device
from core.labels import CLASS_INDEX, CLASSES

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from core.config import RunConfig

MODEL_FILE = "cvae.pt"
RUN_FILES = ("cvae_history.csv", "cvae_losses.png", "cvae_samples.png")  # copied into each run folder


def cvae_config(cfg: RunConfig) -> CVAEConfig:
    return CVAEConfig(resolution=cfg.cvae_resolution, latent=cfg.cvae_latent, epochs=cfg.cvae_epochs,
                      beta=cfg.cvae_beta, kl_warmup=cfg.cvae_kl_warmup)


def training_rows(splits: pd.DataFrame | str | Path) -> pd.DataFrame:
    """image_id and dx of the training split only, sorted by image_id."""
    frame = splits if isinstance(splits, pd.DataFrame) else pd.read_csv(splits, dtype=str)
    return frame.loc[frame["split"] == "train", ["image_id", "dx"]].sort_values("image_id").reset_index(drop=True)


def cvae_key(fingerprint: str, train_ids: list[str], cfg: CVAEConfig) -> str:
    h = hashlib.sha256(json.dumps({"data": fingerprint, "cvae": cfg.to_dict()}, sort_keys=True).encode())
    h.update("\n".join(sorted(train_ids)).encode())
    return h.hexdigest()[:20]


def ensure_cvae(cfg: RunConfig, data_root: str | Path | Ham10000, splits: pd.DataFrame | str | Path) -> Path:
    """The cached cVAE for this config and split (a frame or splits.csv), trained first if absent.

    Returns the path of its cvae.pt. The sweep calls this as its own step before the
    baseline_synth arm, which then finds the model in the cache.
    """
    ds = data_root if isinstance(data_root, Ham10000) else load_dataset(data_root)
    rows = training_rows(splits)
    ccfg = cvae_config(cfg)
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    final = cache_dir / "cvae" / cvae_key(ds.fingerprint(), list(rows["image_id"]), ccfg)
    if (final / MODEL_FILE).exists():
        log.info("cVAE: reusing %s", final)
        return final / MODEL_FILE
    log.info("cVAE: training on %d training images -> %s", len(rows), final)
    # Train into a private folder and rename it into place: a crash or a concurrent
    # trainer never leaves a half-written model under the final name.
    io.remove_stale(final.parent)
    tmp = io.new_temp(final, folder=True)
    train_and_save(ds, rows, ccfg, tmp, resolve_device(cfg.device), cfg.amp, cache_dir)
    try:
        os.rename(tmp, final)
    except OSError:
        if not (final / MODEL_FILE).exists():
            raise
        shutil.rmtree(tmp)  # another process finished first: keep its model
    return final / MODEL_FILE


def train_and_save(ds: Ham10000, rows: pd.DataFrame, cfg: CVAEConfig, out: Path, device: torch.device,
                   amp: bool = True, cache_dir: Path | None = None) -> Path:
    """Train on the images `rows` names (image_id, dx) and write the model folder `out`."""
    ids = list(rows["image_id"])
    images = np.load(build_cache(ds, ids, cfg.resolution, cache_dir).path)
    labels = rows["dx"].map(CLASS_INDEX).to_numpy()
    model, history = train_cvae(images, labels, cfg, device, amp)
    io.write_csv(out / "cvae_history.csv", history)
    save(loss_figure(history, ds.synthetic), out / "cvae_losses.png")
    real = {c: images[labels == i] for i, c in enumerate(CLASSES)}
    fake = {c: generate(model, np.full(PER_SIDE, i), cfg.resolution, seed=cfg.seed) for i, c in enumerate(CLASSES)}
    save(sample_grid(real, fake, ds.synthetic), out / "cvae_samples.png")
    fingerprint = ds.fingerprint()
    state = {"model": {k: v.cpu() for k, v in model.state_dict().items()}, "config": cfg.to_dict(),
             "classes": list(CLASSES), "key": cvae_key(fingerprint, ids, cfg), "data_fingerprint": fingerprint,
             "train_counts": dict(zip(CLASSES, np.bincount(labels, minlength=len(CLASSES)).tolist(), strict=True)),
             "synthetic_data": ds.synthetic}
    return io.save_torch(out / MODEL_FILE, state)


def load_cvae(path: str | Path, device: torch.device | str = "cpu") -> tuple[CVAE, dict]:
    """The model in eval mode, and the rest of cvae.pt (config, key, counts)."""
    state = load_checkpoint(path, map_location=device)
    if list(state["classes"]) != list(CLASSES):
        raise ValueError(f"{path}: class order {state['classes']} is not {list(CLASSES)}")
    model = CVAE(CVAEConfig(**state.pop("config"))).to(device)
    model.load_state_dict(state.pop("model"))
    return model.eval(), {**state, "config": model.cfg}
