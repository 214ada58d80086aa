"""Per-image batch augmentation: core's one affine_grid/grid_sample against kornia's per-sample pipeline.

    python -m benchmarks.augment_throughput [--device cuda] [--batch 64] [--side 224] [--crop]

Both draw independent parameters for every image (flips, rotation up to 25 degrees, optional
RandomResizedCrop 0.6-1, brightness/contrast/saturation 0.1) and normalise; the input is a
uint8 NHWC batch already on the device, as `augment: device` holds it. Prints images/s of
each. kornia is not a dependency of the project: pip install kornia to compare.
"""
from __future__ import annotations

import argparse
import time

import torch

from core.data.device_augment import TrainAugment
from core.data.transforms import IMAGENET_MEAN, IMAGENET_STD, stored_side


def kornia_pipeline(side: int, crop: bool):
    import kornia.augmentation as K

    geometry = [K.RandomResizedCrop((side, side), scale=(0.6, 1.0))] if crop else []
    return K.AugmentationSequential(
        *geometry, K.RandomHorizontalFlip(), K.RandomVerticalFlip(), K.RandomRotation(25.0),
        K.ColorJitter(0.1, 0.1, 0.1, 0.0), K.Normalize(torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)))


def images_per_s(augment, batch: torch.Tensor, repeats: int) -> float:
    sync = torch.cuda.synchronize if batch.is_cuda else (lambda: None)
    for _ in range(3):
        augment(batch)
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        augment(batch)
    sync()
    return repeats * len(batch) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--side", type=int, default=224)
    p.add_argument("--crop", action="store_true", help="RandomResizedCrop (the b2_260 arms)")
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    stored = stored_side(args.side, args.crop)
    batch = torch.randint(0, 256, (args.batch, stored, stored, 3), dtype=torch.uint8, device=args.device)
    ours = TrainAugment(args.side, args.crop)
    print(f"{args.device}, batch {args.batch}, {stored} -> {args.side} px, crop {args.crop}, torch {torch.__version__}")
    print(f"core (one affine_grid/grid_sample): {images_per_s(ours, batch, args.repeats):.0f} img/s")
    try:
        pipeline = kornia_pipeline(args.side, args.crop).to(args.device)
    except ImportError:
        print("kornia: not installed (pip install kornia)")
        return
    import kornia

    as_float = lambda b: pipeline(b.permute(0, 3, 1, 2).float().div_(255))  # noqa: E731
    print(f"kornia {kornia.__version__}: {images_per_s(as_float, batch, args.repeats):.0f} img/s")


if __name__ == "__main__":
    main()
