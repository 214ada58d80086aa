"""The bar core must clear: a plain PyTorch loop doing the baseline job on the same split.

    python -m benchmarks.plain_loop --data-root DIR --splits splits.csv [--epochs 3] [--size 128]

ImageFolder-style decoding per item, class-weighted cross-entropy, AdamW with cosine
decay, the last epoch evaluated on test (no checkpoint selection). Same backbone and
offline Lite0 weights as core's benchmark run (built through core.model only so the
weights match).
"""
import argparse
import glob
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from core.model import build_model

CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


class Images(Dataset):
    def __init__(self, frame, paths, transform):
        self.paths = [paths[i] for i in frame["image_id"]]
        self.labels = [CLASSES.index(d) for d in frame["dx"]]
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(Image.open(self.paths[i]).convert("RGB")), self.labels[i]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--splits", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    torch.manual_seed(0)

    paths = {Path(f).stem: f for f in glob.glob(f"{args.data_root}/**/*.jpg", recursive=True)}  # follows links
    splits = pd.read_csv(args.splits)
    norm = T.Normalize([0.5] * 3, [0.5] * 3)
    train_tf = T.Compose([T.Resize((args.size, args.size)), T.RandomHorizontalFlip(), T.RandomVerticalFlip(),
                          T.RandomRotation(25), T.ColorJitter(0.1, 0.1, 0.1, 0.02), T.ToTensor(), norm])
    eval_tf = T.Compose([T.Resize((args.size, args.size)), T.ToTensor(), norm])
    train = Images(splits[splits.split == "train"], paths, train_tf)
    test = Images(splits[splits.split == "test"], paths, eval_tf)
    train_loader = DataLoader(train, batch_size=32, shuffle=True, num_workers=args.workers, drop_last=True)
    test_loader = DataLoader(test, batch_size=64, num_workers=args.workers)

    model = build_model("tf_efficientnet_lite0", "pypi", 0.2)
    counts = np.bincount(train.labels, minlength=7)
    weights = torch.tensor(len(train) / counts, dtype=torch.float32)
    criterion = torch.nn.CrossEntropyLoss(weight=weights / weights.mean())
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs * len(train_loader))

    for epoch in range(args.epochs):
        model.train()
        start, seen = time.perf_counter(), 0
        for x, y in train_loader:
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen += len(y)
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, {seen / (time.perf_counter() - start):.1f} train img/s",
              flush=True)

    model.eval()
    preds, truth = [], []
    with torch.no_grad():
        for x, y in test_loader:
            preds += model(x).argmax(1).tolist()
            truth += y.tolist()
    print(f"plain loop test: acc {accuracy_score(truth, preds):.4f} "
          f"macro-F1 {f1_score(truth, preds, average='macro', labels=range(7), zero_division=0):.4f} "
          f"balanced acc {balanced_accuracy_score(truth, preds):.4f} "
          f"mel recall {recall_score(truth, preds, labels=[4], average='macro', zero_division=0):.4f}")


if __name__ == "__main__":
    main()
