"""`python -m core.cvae {train,sample}`: train a cVAE on a dataset's training split, or draw from one."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from core.config import ConfigError, RunConfig
from core.labels import CLASSES
from core.log import add_verbosity_flags, setup_logging

log = logging.getLogger(__name__)


def cmd_train(args: argparse.Namespace) -> int:
    import pandas as pd

    from core.config import from_dict
    from core.cvae.store import cvae_config, train_and_save, training_rows
    from core.data.dataset import load_dataset
    from core.data.split import lesion_split
    from core.devices import resolve_device

    cfg = from_dict({"cvae_resolution": args.resolution, "cvae_epochs": args.epochs, "cvae_latent": args.latent,
                     "cvae_beta": args.beta, "cvae_kl_warmup": args.kl_warmup, "device": args.device},
                    source="command line")
    ds = load_dataset(args.data_root)
    splits = pd.read_csv(args.splits, dtype=str) if args.splits else lesion_split(ds.metadata, seed=args.split_seed)
    rows = training_rows(splits)
    log.info("training a cVAE on the %d training-split images of %s", len(rows), args.data_root)
    path = train_and_save(ds, rows, cvae_config(cfg), args.out, resolve_device(cfg.device), cfg.amp)
    log.info("wrote %s, cvae_history.csv, cvae_losses.png and cvae_samples.png", path)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from core.cvae.model import generate
    from core.cvae.store import load_cvae
    from core.devices import resolve_device
    from core.io import atomic_write
    from core.labels import CLASS_INDEX

    if args.n < 1:
        raise ConfigError(f"--n must be at least 1; got {args.n}")
    model, _ = load_cvae(args.model, resolve_device(args.device))
    side = args.size or model.cfg.resolution
    images = generate(model, np.full(args.n, CLASS_INDEX[args.cls]), side, seed=args.seed)
    for i, image in enumerate(images):
        atomic_write(args.out / f"{args.cls}_{i:04d}.png", lambda tmp, a=image: Image.fromarray(a).save(tmp, "PNG"))
    log.info("wrote %d generated %s images (%d px) to %s", args.n, args.cls, side, args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.cvae", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train on the training split of a dataset")
    train.add_argument("--data-root", type=Path, required=True, help="HAM10000-format dataset folder")
    train.add_argument("--out", type=Path, required=True, help="folder for cvae.pt and its figures")
    train.add_argument("--splits", type=Path, help="a splits.csv (default: the lesion split of --split-seed)")
    train.add_argument("--split-seed", type=int, default=RunConfig.split_seed)
    train.add_argument("--resolution", type=int, default=RunConfig.cvae_resolution)
    train.add_argument("--epochs", type=int, default=RunConfig.cvae_epochs)
    train.add_argument("--latent", type=int, default=RunConfig.cvae_latent)
    train.add_argument("--beta", type=float, default=RunConfig.cvae_beta)
    train.add_argument("--kl-warmup", type=float, default=RunConfig.cvae_kl_warmup)
    train.add_argument("--device", default="auto")
    train.set_defaults(run=cmd_train)

    sample = commands.add_parser("sample", help="write generated images of one class as PNGs")
    sample.add_argument("--model", type=Path, required=True, help="a cvae.pt")
    sample.add_argument("--class", dest="cls", choices=CLASSES, required=True)
    sample.add_argument("--n", type=int, default=16)
    sample.add_argument("--out", type=Path, required=True, help="folder for <class>_NNNN.png")
    sample.add_argument("--size", type=int, help="side in pixels (default: the cVAE's resolution)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", default="auto")
    sample.set_defaults(run=cmd_sample)
    for command in (train, sample):
        add_verbosity_flags(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args)
    from core.data.metadata import DatasetError

    try:
        return args.run(args)
    except (ConfigError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
