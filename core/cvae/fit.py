"""Train a cVAE on uint8 training images: the ELBO, KL warm-up, AdamW, AMP on CUDA."""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import torch

from core.cvae.model import CVAE, CVAEConfig, elbo_terms
from core.devices import amp_dtype
from core.log import progress

log = logging.getLogger(__name__)


def train_cvae(images: np.ndarray, labels: np.ndarray, cfg: CVAEConfig, device: torch.device,
               amp: bool = True) -> tuple[CVAE, pd.DataFrame]:
    """Fit a cVAE to `images` (N, R, R, 3) uint8 at cfg.resolution; returns it and its history.

    History has one row per epoch: recon and kl (per image, nats), beta, loss (the
    objective, recon + beta * kl) and neg_elbo (recon + kl, the bound itself).
    """
    if images.shape[1:] != (cfg.resolution, cfg.resolution, 3):
        raise ValueError(f"images are {images.shape[1:]}, the cVAE wants ({cfg.resolution}, {cfg.resolution}, 3)")
    torch.manual_seed(cfg.seed)
    model = CVAE(cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    dtype = amp_dtype(device, amp)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    # The whole set fits in memory at these resolutions (HAM10000 train at 128 px: 0.4 GB).
    x_all = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    y_all = torch.tensor(np.asarray(labels), dtype=torch.long, device=device)
    steps_per_epoch = max(1, len(x_all) // cfg.batch_size)
    warmup_steps = cfg.kl_warmup * cfg.epochs * steps_per_epoch
    rows, step = [], 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        start, sums = time.perf_counter(), np.zeros(4)
        order = torch.randperm(len(x_all), device=device)
        batches = order[: steps_per_epoch * cfg.batch_size].view(steps_per_epoch, -1)
        for index in progress(batches, desc=f"cVAE epoch {epoch}/{cfg.epochs}", unit="batch"):
            x = x_all[index].permute(0, 3, 1, 2).float().div_(255)
            x = _random_flips(x)
            beta = cfg.beta * min(1.0, step / warmup_steps) if warmup_steps else cfg.beta
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                outputs = model(x, y_all[index])
            recon, kl = elbo_terms(x, *outputs)
            loss = recon + beta * kl
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            sums += (*torch.stack([recon, kl, loss]).tolist(), beta)
            step += 1
        recon_mean, kl_mean, loss_mean, beta_mean = sums / steps_per_epoch
        rows.append({"epoch": epoch, "recon": recon_mean, "kl": kl_mean, "beta": beta_mean, "loss": loss_mean,
                     "neg_elbo": recon_mean + kl_mean, "seconds": time.perf_counter() - start})
        log.info("cVAE epoch %d: recon %.1f kl %.1f beta %.2f (%.1fs)", epoch, recon_mean, kl_mean, beta_mean,
                 rows[-1]["seconds"])
    return model.eval(), pd.DataFrame(rows)


def _random_flips(x: torch.Tensor) -> torch.Tensor:
    """Flip each image left-right and up-down with probability 1/2: lesions have no up or left."""
    for dim in (2, 3):
        flip = torch.rand(len(x), 1, 1, 1, device=x.device) < 0.5
        x = torch.where(flip, x.flip(dim), x)
    return x
