"""Run every ablation arm as a Ray Tune sweep of Ray Train runs: `python ablations/run_all.py`.

With no --data-root it builds the SYNTHETIC demo dataset once (data/demo) and runs the
demo profile on the local CPUs in minutes. With --data-root DIR it runs the full
profile on that dataset. Results follow the contract of docs/results-contract.md under RESULTS/<name>/.
Ray, torch and the sweep's driver (ray_jobs/driver.py) load once the arguments are parsed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.choices import TRACKERS
from core.log import add_verbosity_flags, setup_logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python ablations/run_all.py", description=__doc__.split("\n\n")[0])
    data = p.add_argument_group("data and profile")
    data.add_argument("--data-root", help="HAM10000-format dataset (same path on every node); "
                                          "default: the synthetic demo dataset")
    data.add_argument("--demo-data", type=Path, help="where the demo dataset is built once "
                                                     "(default data/demo, data/demo_smoke for --profile smoke)")
    data.add_argument("--profile", help="demo | smoke | cpu-real | full (default: full with --data-root, else demo)")
    data.add_argument("--skip-bad-images", action="store_true", default=None,
                      help="drop the rows `python -m core.data check` reports as errors")
    data.add_argument("--split-seed", type=int, help="seed of the one lesion-wise split all arms share (default 0)")
    sweep = p.add_argument_group("sweep")
    sweep.add_argument("--arms", nargs="+",
                       help="arms to run (default: the eight study arms; best_single only when named)")
    sweep.add_argument("--samples", type=int, help="hyperparameter samples per arm (default 1: the config as written)")
    sweep.add_argument("--seeds", type=int, help="training seeds per arm on the same split (default 3 on the demo "
                                                 "profile, else 1); the summary adds each figure's mean and standard "
                                                 "deviation, and the report's findings compare arms over them")
    sweep.add_argument("--scheduler", choices=["asha", "fifo"], help="asha (per arm, default) or fifo (no stopping)")
    sweep.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                       help="override config keys of every arm (repeatable; a later value of a key wins)")
    sweep.add_argument("--retries", type=int, help="Tune-level retries of a failed trial (default 2)")
    out = p.add_argument_group("results")
    out.add_argument("--results", default="results", help="local folder or storage URI (s3://...) (default results)")
    out.add_argument("--name", help="the sweep's folder under --results (default: the profile)")
    out.add_argument("--resume", action="store_true", help="continue the interrupted sweep RESULTS/NAME")
    out.add_argument("--dry-run", action="store_true",
                     help="print every arm's resolved config and the plan (trials, resources, estimated time), "
                          "then exit: nothing starts, is built or written")
    out.add_argument("--tracker", action="append", choices=TRACKERS,
                     help="log every trial to tensorboard | mlflow | wandb (repeatable; ray_jobs/trackers/)")
    out.add_argument("--tracking-uri", help="MLflow's tracking URI (default $MLFLOW_TRACKING_URI, else "
                                            "mlflow.db and mlruns/ in the current folder)")
    cluster = p.add_argument_group("cluster")
    cluster.add_argument("--address", help="join a running Ray cluster (default: start one on this machine)")
    cluster.add_argument("--workers-per-trial", type=int, help="DDP workers per trial (default 1)")
    cluster.add_argument("--cpus-per-worker", type=float, help="default 1, or CPUs / GPUs on a GPU cluster")
    cluster.add_argument("--gpus-per-worker", type=float, help="fractions share a GPU (default 1 if the cluster "
                                                               "has GPUs, else 0; on a single-GPU node, the "
                                                               "share measured for its card: ray_jobs/packing.py)")
    cluster.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as the cluster holds "
                                                            "now; 0 = no limit, for autoscaling clusters)")
    return add_verbosity_flags(p)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = setup_logging(args)
    from ray_jobs.driver import run_sweep

    return run_sweep(args, level)


if __name__ == "__main__":
    sys.exit(main())
