"""Core's CPU training step against a plain loop, on the real thumbnails, in one process.

    python -m benchmarks.cpu_step [--size 128] [--train 1536] [--epochs 2] [--threads 2]

Both train tf_efficientnet_lite0 (offline Lite0 weights, class-weighted CE, AdamW, batch
64) on the same subset of the seed-0 lesion split of ../shared/ham10000's 200x150 images.
The plain loop is the bar: images decoded once into one uint8 NHWC tensor, per-image flips,
batches fed as NHWC-strided floats. Core runs `fit` itself (its cache, loaders, selection
and evaluation) in each mode given by --core, e.g. `augment=cpu,channels_last=false` (core
before channels_last on the CPU). Training images/s is the mean over the epochs after the
first; the rounds alternate plain and core so that a change in the machine's load hits both.
"""
import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.thumbnails import linked_thumbnails
from core import results
from core.config import load_config, parse_overrides
from core.data.dataset import load_dataset
from core.data.images import load_rgb
from core.data.split import lesion_split
from core.labels import CLASS_INDEX, NUM_CLASSES
from core.model import build_model
from core.training import fit

REPO = Path(__file__).resolve().parents[1]
BATCH = 64


def subset(folder: Path, train: int) -> tuple[Path, Path]:
    """A dataset of the seed-0 lesion split's first images (`train`, and a quarter of that each for
    val and test), with its split file: (root, splits.csv)."""
    full = load_dataset(linked_thumbnails(folder))
    splits = lesion_split(full.metadata, seed=0)
    rng = np.random.default_rng(0)
    keep = pd.concat([rows.iloc[rng.permutation(len(rows))[:train if name == "train" else train // 4]]
                      for name, rows in splits.groupby("split")])
    root = folder / f"subset{train}"
    root.mkdir(exist_ok=True)
    full.metadata[full.metadata["image_id"].isin(keep["image_id"])].to_csv(root / "HAM10000_metadata.csv",
                                                                           index=False)
    if not (root / "images").exists():
        os.symlink(full.root.resolve() / "images", root / "images")
    keep.to_csv(root / "splits.csv", index=False)
    return root, root / "splits.csv"


def plain_loop(root: Path, splits: Path, size: int, epochs: int) -> list[float]:
    """Train images/s per epoch of the bar: a batch is a slice of a uint8 NHWC tensor."""
    ds = load_dataset(root)
    rows = pd.read_csv(splits).query("split == 'train'")
    images = torch.from_numpy(np.stack([np.asarray(load_rgb(ds.images[i]).resize((size, size)))
                                        for i in rows["image_id"]]))
    labels = torch.tensor(rows["dx"].map(CLASS_INDEX).to_numpy())
    model = build_model("tf_efficientnet_lite0", "pypi", 0.2)
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, 3, 1, 1) * 255
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, 3, 1, 1) * 255
    counts = torch.bincount(labels, minlength=NUM_CLASSES).float()
    criterion = torch.nn.CrossEntropyLoss(weight=counts.sum() / counts.clamp(min=1) / NUM_CLASSES)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-4)
    speeds = []
    for _ in range(epochs):
        model.train()
        order, start = torch.randperm(len(labels)), time.perf_counter()
        steps = len(order) // BATCH
        for step in range(steps):
            index = order[step * BATCH:(step + 1) * BATCH]
            x = images[index]
            flip = torch.rand(len(x)) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(2), x)
            x = (x.permute(0, 3, 1, 2).float() - mean) / std  # NHWC strides, no copy into NCHW
            loss = criterion(model(x), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        speeds.append(steps * BATCH / (time.perf_counter() - start))
    return speeds


def core_run(root: Path, splits: Path, size: int, epochs: int, mode: str, out: Path) -> list[float]:
    cfg = load_config(REPO / "ablations/configs/baseline.yaml", overrides={
        "backbone": "tf_efficientnet_lite0", "pretrained": "pypi", "image_size": size, "epochs": epochs,
        "batch_size": BATCH, "splits_file": str(splits), "bootstrap_replicates": 50,
        **parse_overrides([m for m in mode.split(",") if m])})
    fit(cfg, root, out)
    return results.read_history(out)["train_images_per_s"].tolist()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--train", type=int, default=1536, help="training images of the subset")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--core", nargs="+", default=["augment=cpu,num_workers=1,channels_last=false",
                                                  "augment=cpu,num_workers=1", "augment=device"],
                   help="core modes, each a comma-separated list of KEY=VALUE overrides")
    p.add_argument("--out", type=Path, default=Path("/tmp/cpu_step"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    root, splits = subset(args.out, args.train)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.threads} threads; lite0 @ {args.size}px, batch {BATCH}, {args.train} train images", flush=True)
    rows = []
    for round_ in range(args.rounds):
        for name in ["plain loop", *args.core]:
            speeds = (plain_loop(root, splits, args.size, args.epochs) if name == "plain loop" else
                      core_run(root, splits, args.size, args.epochs, name, args.out / f"run{len(rows)}"))
            row = {"round": round_, "mode": name, "images_per_s": round(float(np.mean(speeds[1:] or speeds)), 1),
                   "per_epoch": [round(s, 1) for s in speeds]}
            print(json.dumps(row), flush=True)
            rows.append(row)
    table = pd.DataFrame(rows).groupby("mode", sort=False)["images_per_s"].mean().round(1)
    print(table.to_string())


if __name__ == "__main__":
    main()
