"""What Ray costs on this machine: one arm's training speed with and without Ray Train, and a
small demo sweep run one arm after another versus as a parallel Ray Tune sweep.

    python -m benchmarks.ray_overhead [--data-root DIR] [--arm baseline] [--epochs 5]
                                      [--sweep-arms baseline sampler]

Training speed is `train_images_per_s` from history.csv (images over the epoch's own
training seconds, so start-up is excluded), the median over the epochs after the first.
Each Ray Train variant is compared with core alone on the same CPUs: all of them (as torch
threads, one worker's or shared by two DDP workers), and one (the sweep's default trial on
a CPU-only machine). Run by hand; the figures go in the README.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray
import ray.train
import ray.train.torch
import torch

from core import results
from core.config import RunConfig
from core.data.dataset import load_dataset
from core.data.parallel import usable_cpus
from core.data.split import lesion_split
from core.training import fit
from ray_jobs.arms import load_arms
from ray_jobs.driver import DEMO_SIZES, demo_data, local_runtime_env
from ray_jobs.trainable import train_worker

REPO = Path(__file__).resolve().parents[1]


def images_per_s(run_dir: Path) -> float:
    history = results.read_history(run_dir)
    return float(history["train_images_per_s"].iloc[1:].median() if len(history) > 1
                 else history["train_images_per_s"].median())


def core_alone(cfg: RunConfig, data_root: str, out: Path, threads: int) -> float:
    torch.set_num_threads(threads)
    fit(cfg, data_root, out)
    return images_per_s(out)


def ray_train(cfg: RunConfig, data_root: str, out: Path, workers: int, cpus: int) -> float:
    """`workers` DDP workers sharing `cpus` CPUs (Ray gives each cpus / workers torch threads)."""
    trainer = ray.train.torch.TorchTrainer(
        train_worker,
        train_loop_config={"run_config": cfg.to_dict(), "data_root": data_root, "out": str(out),
                           "cpus": cpus / workers},
        scaling_config=ray.train.ScalingConfig(num_workers=workers, resources_per_worker={"CPU": cpus / workers}),
        run_config=ray.train.RunConfig(name=out.name, storage_path=str(out.parent / "ray")),
    )
    trainer.fit()
    return images_per_s(out)


def timed(fn, *args) -> tuple[float, float]:
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", help="dataset (default: the demo dataset, built once in data/demo)")
    p.add_argument("--profile", default="demo")
    p.add_argument("--arm", default="baseline")
    p.add_argument("--epochs", type=int, default=5, help="epochs of every run, the sweep's included")
    p.add_argument("--sweep-arms", nargs="*", default=["baseline", "sampler"],
                   help="arms of the sequential-versus-parallel comparison (none: skip it)")
    args = p.parse_args(argv)
    data_root = args.data_root or str(demo_data(REPO / "data" / "demo", DEMO_SIZES["demo"]))
    cpus = usable_cpus()
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")

    with tempfile.TemporaryDirectory(prefix="ray-overhead-") as tmp:
        tmp = Path(tmp)
        ds = load_dataset(data_root)
        splits_file = str(results.write_splits(tmp, lesion_split(ds.metadata)))
        overrides = {"epochs": args.epochs, "splits_file": splits_file}
        cfg = load_arms([args.arm], args.profile, overrides)[args.arm]

        # (name, function, arguments, the core row it is compared with); core runs before Ray starts
        core = [(f"core alone, {cpus} threads", core_alone, (cfg, data_root, tmp / "core", cpus), None),
                ("core alone, 1 thread", core_alone, (cfg, data_root, tmp / "core1", 1), None)]
        with_ray = [
            (f"Ray Train, 1 worker x {cpus} CPUs", ray_train, (cfg, data_root, tmp / "ray1", 1, cpus), 0),
            (f"Ray Train, 2 workers x {cpus // 2} CPU", ray_train, (cfg, data_root, tmp / "ray2", 2, cpus), 0),
            ("Ray Train, 1 worker x 1 CPU", ray_train, (cfg, data_root, tmp / "ray1x1", 1, 1), 1),
        ]
        speeds = [timed(fn, *fn_args) for _, fn, fn_args, _ in core]
        torch.set_num_threads(cpus)
        ray.init(num_cpus=cpus, runtime_env=local_runtime_env())  # as run_all.py starts Ray
        speeds += [timed(fn, *fn_args) for _, fn, fn_args, _ in with_ray]
        ray.shutdown()
        variants = core + with_ray

        print(f"\n{args.arm}, {args.profile} profile, {args.epochs} epochs, {cpus} CPUs, {data_root}")
        for (name, _, _, base), (speed, wall) in zip(variants, speeds, strict=True):
            versus = f"{100 * speed / speeds[base][0]:5.1f}% of core" if base is not None else " " * 15
            print(f"  {name:32s} {speed:7.1f} train img/s  {versus}  wall {wall:6.1f} s")

        if args.sweep_arms:
            configs = load_arms(args.sweep_arms, args.profile, overrides)
            start = time.perf_counter()
            for arm, arm_cfg in configs.items():
                fit(arm_cfg, data_root, tmp / "sequential" / arm)
            sequential = time.perf_counter() - start
            start = time.perf_counter()
            subprocess.run([sys.executable, str(REPO / "ablations" / "run_all.py"), "--data-root", data_root,
                            "--profile", args.profile, "--arms", *args.sweep_arms, "--set", f"epochs={args.epochs}",
                            "--results", str(tmp / "sweep")], check=True, stdout=subprocess.DEVNULL)
            parallel = time.perf_counter() - start
            print(f"\n{len(configs)}-arm {args.profile} sweep ({', '.join(configs)}, {args.epochs} epochs): one after "
                  f"another with core {sequential:.0f} s; Ray Tune sweep (run_all.py defaults) {parallel:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
