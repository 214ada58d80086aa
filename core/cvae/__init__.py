"""Conditional VAE for synthetic training images (the baseline_synth arm).

    ensure_cvae(cfg, data_root, splits) -> path of cvae.pt   # train once per split + config, then reuse
    add_synthetic(cfg, ds, splits, train, side)              # what core.train.prepare_data calls

    python -m core.cvae train --data-root DIR --out DIR [--resolution 64 --epochs 50 ...]
    python -m core.cvae sample --model DIR/cvae.pt --class mel --n 16 --out DIR
"""
from core.cvae.fit import train_cvae
from core.cvae.model import CVAE, CVAEConfig, generate
from core.cvae.store import ensure_cvae, load_cvae, train_and_save
from core.cvae.synthetic import SyntheticImages, add_synthetic, synthetic_images, synthetic_plan

__all__ = ["CVAE", "CVAEConfig", "SyntheticImages", "add_synthetic",
           "ensure_cvae", "generate", "load_cvae", "synthetic_images", "synthetic_plan", "train_and_save",
           "train_cvae"]
