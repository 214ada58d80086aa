"""Images/s of decode-per-item (PIL) against the memory-mapped cache, through the training Dataset.

    python -m benchmarks.loader_throughput [--side 224] [--workers 0 2]

Runs on the 70 real originals (600x450, ../shared/ham10000/originals) when present and on
a fresh synthetic demo dataset. Run by hand; the README records the figures and machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader

from core.data.cache import DecodedImages, build_cache
from core.data.dataset import load_dataset
from core.data.demo import make_demo_dataset
from core.data.lesions import LesionDataset
from core.data.transforms import train_transform

ORIGINALS = Path(__file__).resolve().parents[2] / "shared" / "ham10000" / "originals"


def images_per_second(dataset: LesionDataset, workers: int, passes: int) -> float:
    loader = DataLoader(dataset, batch_size=32, shuffle=True, num_workers=workers)
    next(iter(loader))  # worker start-up is not throughput
    start = time.perf_counter()
    for _ in range(passes):
        for _ in loader:
            pass
    return passes * len(dataset) / (time.perf_counter() - start)


def bench(name: str, root: Path, side: int, workers: list[int], cache_dir: Path) -> None:
    ds = load_dataset(root)
    ids = list(ds.metadata["image_id"])
    labels = [0] * len(ids)
    transform = train_transform(side)
    start = time.perf_counter()
    cache = build_cache(ds, ids, side, cache_dir)
    build = time.perf_counter() - start
    print(f"{name}: {len(ids)} images; cache build {build:.1f}s ({len(ids) / build:.0f} img/s)")
    for w in workers:
        decoded = images_per_second(LesionDataset(DecodedImages([ds.images[i] for i in ids], side), labels,
                                                  transform), w, passes=2)
        cached = images_per_second(LesionDataset(cache, labels, transform), w, passes=5)
        print(f"  workers={w}: decode-per-item {decoded:7.0f} img/s | cache {cached:7.0f} img/s "
              f"| x{cached / decoded:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}; side {args.side}px, train transform, batch 32")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if ORIGINALS.is_dir():
            bench("HAM10000 originals 600x450", ORIGINALS, args.side, args.workers, tmp / "cache")
        make_demo_dataset(tmp / "demo", n=300, seed=0)
        bench("synthetic demo 600x450", tmp / "demo", args.side, args.workers, tmp / "cache")


if __name__ == "__main__":
    main()
