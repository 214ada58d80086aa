"""Train one ablation end to end, in one process or as one rank of a DDP job.

    python -m core.train --config ablations/configs/baseline.yaml --data-root DIR --out RUN_DIR
    torchrun --nproc-per-node N -m core.train ...        (rank 0 writes the run folder)

Writes the results contract (docs/results-contract.md) into RUN_DIR; the loop itself is
core/training.py. Torch and the data stack are imported once the arguments are parsed.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from core.choices import TRACKERS
from core.log import add_verbosity_flags, setup_logging

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="an ablation YAML (ablations/configs/)")
    parser.add_argument("--data-root", type=Path, required=True, help="HAM10000-format dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="run folder to write")
    parser.add_argument("--profile", default="full",
                        help="demo | smoke | cpu-real: overrides from profiles/ beside the config "
                             "(default: full, the config as written)")
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="override config keys (repeatable; a later value of a key wins)")
    parser.add_argument("--skip-bad-images", action="store_true", help="drop rows `check` reports as errors")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    parser.add_argument("--tracker", action="append", choices=TRACKERS, default=[],
                        help="log the run to tensorboard | mlflow | wandb (repeatable; core/tracking.py)")
    parser.add_argument("--tracking-uri", help="MLflow's tracking URI (default $MLFLOW_TRACKING_URI, else "
                                               "mlflow.db and mlruns/ in the current folder)")
    return add_verbosity_flags(parser)


def init_torchrun(cfg):
    """Join the process group torchrun describes in the environment (NCCL on CUDA, else gloo),
    and return this rank's device; None when not started by torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    import torch.distributed as dist

    from core import devices

    device = devices.resolve_device(cfg.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def main(argv: list[str] | None = None) -> int:
    """One process, or one rank under `torchrun --nproc-per-node N -m core.train ...` (rank 0 writes)."""
    args = build_parser().parse_args(argv)
    setup_logging(args)
    import torch.distributed as dist

    from core import results, tracking
    from core.checkpoints import UntrustedCheckpoint, load_checkpoint
    from core.config import ConfigError, load_config
    from core.data.metadata import DatasetError
    from core.devices import rank_and_world
    from core.io import DiskFull
    from core.training import fit

    overrides = list(args.set) + (["skip_bad_images=true"] if args.skip_bad_images else [])
    try:
        cfg = load_config(args.config, args.profile, overrides)
        tracking.check(args.tracker)  # a missing tracker library stops every rank before training
        resume = None
        if args.resume and (args.out / results.RESUME).exists():
            resume = load_checkpoint(args.out / results.RESUME)
            log.info("resuming %s after epoch %s", args.out, resume["epoch"])
        device = init_torchrun(cfg)
        metrics, trackers = None, None
        try:
            if args.tracker and rank_and_world()[0] == 0:
                trackers = tracking.start(args.tracker, cfg.to_dict(), args.out, args.tracking_uri,
                                          history=resume["history"] if resume else [])
            metrics = fit(cfg, args.data_root, args.out, resume=resume, device=device,
                          track=trackers.log_epoch if trackers else None)
        finally:
            if trackers:
                trackers.finish(args.out, metrics)  # None: the run failed
            if dist.is_initialized():
                dist.destroy_process_group()
    except (ConfigError, DatasetError, UntrustedCheckpoint, DiskFull) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not metrics:  # a rank above 0: rank 0 wrote the run folder and reports it
        return 0
    test = metrics["test"]
    print(f"{cfg.name}: test acc {test['accuracy']:.4f} macro-F1 {test['macro_f1']:.4f} "
          f"balanced acc {test['balanced_accuracy']:.4f} mel recall {test['per_class']['mel']['recall']:.4f} "
          f"(epoch {metrics['selected_epoch']} by {cfg.select_on}) -> {args.out}"
          + ("  [SYNTHETIC demo data]" if metrics["synthetic_data"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
