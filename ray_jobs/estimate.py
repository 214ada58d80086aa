"""How long a sweep will take on this CPU, from a probe of a few seconds, said before it starts.

Each distinct (backbone, image size) among the arms trains a few steps on a small batch of
random images, with every thread of this machine, and predicts one batch; the seconds per
image, times the images the sweep trains and evaluates (all epochs, every sample and seed),
give the estimate. Trials running side by side share the same cores, so their sum is the
wall time. It is an upper bound where ASHA stops arms early, and leaves out the image
caches and baseline_synth's cVAE.
"""
from __future__ import annotations

import time

import pandas as pd
import torch

from core.config import RunConfig
from core.model import build_model

PROBE_BATCH = 4
PROBE_STEPS = 2  # timed, after one untimed step (allocations, kernel choice)
TTA_VIEWS = 8


def seconds_per_image(backbone: str, image_size: int) -> tuple[float, float]:
    """(training, prediction) seconds per image of `backbone` at `image_size` on this CPU."""
    model = build_model(backbone, "none")
    optimizer = torch.optim.AdamW(model.parameters())
    images = torch.randn(PROBE_BATCH, 3, image_size, image_size)
    labels = torch.zeros(PROBE_BATCH, dtype=torch.long)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.train()
    step()
    start = time.perf_counter()
    for _ in range(PROBE_STEPS):
        step()
    train = (time.perf_counter() - start) / (PROBE_STEPS * PROBE_BATCH)
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        model(images)
    return train, (time.perf_counter() - start) / PROBE_BATCH


def sweep_seconds(run_configs: dict[str, RunConfig], splits: pd.DataFrame, repeats: int,
                  probe=seconds_per_image) -> float:
    """The probe's estimate for every arm's `repeats` trials (samples x seeds) on `splits`."""
    n = splits["split"].value_counts()
    speeds = {shape: probe(*shape) for shape in sorted({(c.backbone, c.image_size) for c in run_configs.values()})}
    total = 0.0
    for cfg in run_configs.values():
        train, predict = speeds[cfg.backbone, cfg.image_size]
        per_epoch = n.get("train", 0) * train + n.get("val", 0) * predict
        final = (n.get("val", 0) + n.get("test", 0)) * predict * (1 + TTA_VIEWS * cfg.tta)
        total += repeats * (cfg.epochs * per_epoch + final)
    return total


def estimate_line(run_configs: dict[str, RunConfig], splits: pd.DataFrame, repeats: int) -> str:
    start = time.perf_counter()
    hours = sweep_seconds(run_configs, splits, repeats) / 3600
    shapes = len({(c.backbone, c.image_size) for c in run_configs.values()})
    return (f"no GPU here: estimated {hours:.1f} hours on this CPU for {len(run_configs)} arm(s) x {repeats} "
            f"(at most: every epoch; from a {time.perf_counter() - start:.0f} s probe of {shapes} "
            f"backbone/size(s)); --profile demo runs in minutes")
