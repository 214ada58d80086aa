"""The baseline arm on the real 200x150 HAM10000 images, through core, on this CPU.

    python -m benchmarks.real_baseline [--epochs 3] [--size 128] [--out /tmp/real_baseline]

tf_efficientnet_lite0 with the offline Lite0 ImageNet weights, class-weighted
cross-entropy, checkpoint chosen on validation macro-F1. Prints the test figures and
training images/s, then the command for the plain-loop comparison on the same split.
The images are third-party 200x150 thumbnails: not headline figures.
"""
import argparse
import os
import platform
from pathlib import Path

from benchmarks.thumbnails import linked_thumbnails
from core import results
from core.config import load_config
from core.training import fit

REPO = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("/tmp/real_baseline"))
    args = p.parse_args()
    root = linked_thumbnails(args.out)
    cfg = load_config(REPO / "ablations/configs/baseline.yaml", overrides={
        "backbone": "tf_efficientnet_lite0", "pretrained": "pypi", "image_size": args.size,
        "epochs": args.epochs, "num_workers": args.workers})
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {cfg.backbone} @ {cfg.image_size}px, "
          f"{cfg.epochs} epochs")
    metrics = fit(cfg, root, args.out / "run")
    history = results.read_history(args.out / "run")
    test = metrics["test"]
    print(f"core test: acc {test['accuracy']:.4f} macro-F1 {test['macro_f1']:.4f} "
          f"balanced acc {test['balanced_accuracy']:.4f} mel recall {test['per_class']['mel']['recall']:.4f} "
          f"(epoch {metrics['selected_epoch']}); train img/s per epoch: "
          f"{', '.join(f'{v:.1f}' for v in history['train_images_per_s'])}")
    print(f"plain loop: python -m benchmarks.plain_loop --data-root {root} --splits {args.out / 'run' / 'splits.csv'} "
          f"--epochs {args.epochs} --size {args.size} --workers {args.workers}")


if __name__ == "__main__":
    main()
