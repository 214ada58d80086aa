"""What each trial asks of the cluster, and how many trials run at once.

Defaults come from `ray.cluster_resources()` when the sweep starts: on a CPU-only
cluster one worker of one CPU per trial; with GPUs one worker of one GPU per trial (or
the measured share of a single GPU, ray_jobs/packing.py) and the CPUs shared out among
the trials that fit on the GPUs at once. The trial function itself holds
no CPU (a trial holding one would sit on the CPU its own workers wait for), so Tune
cannot see how many trials fit: `max_concurrent` says it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

TRIAL_RESOURCES = {"CPU": 0, "memory": 64 * 1024**2}  # the trial function: no CPU, a token of memory


@dataclass
class Resources:
    workers: int  # Ray Train (DDP) workers per trial
    cpus_per_worker: float
    gpus_per_worker: float  # fractions share a GPU: whether the models fit is the user's to check
    max_concurrent: int  # trials at once; 0 = no limit (an autoscaling cluster grows to fit)


def fitting_trials(cluster: dict, workers: int, cpus_per_worker: float, gpus_per_worker: float) -> int:
    """How many trials of this shape the cluster holds now (at least one)."""
    fits = [cluster.get("CPU", 0) / (workers * cpus_per_worker)] if cpus_per_worker else []
    if gpus_per_worker:
        fits.append(cluster.get("GPU", 0) / (workers * gpus_per_worker))
    return max(1, math.floor(min(fits, default=1) + 1e-9))


def resolve(cluster: dict, workers: int | None = None, cpus_per_worker: float | None = None,
            gpus_per_worker: float | None = None, max_concurrent: int | None = None) -> Resources:
    """Fill in what the command line left out from the cluster's resources."""
    gpus = cluster.get("GPU", 0)
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if gpus else 0.0
    if cpus_per_worker is None:
        on_gpus = gpus / gpus_per_worker if gpus_per_worker and gpus else 0
        cpus_per_worker = max(1.0, math.floor(cluster.get("CPU", 1) / on_gpus + 1e-9)) if on_gpus else 1.0
    workers = workers or 1
    if max_concurrent is None:
        max_concurrent = fitting_trials(cluster, workers, cpus_per_worker, gpus_per_worker)
    return Resources(workers, cpus_per_worker, gpus_per_worker, max_concurrent)
