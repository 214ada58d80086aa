"""Test probes inside Ray's worker processes: patch a module of the project when it is imported.

Ray's `worker_process_setup_hook` runs in every worker process at start-up, before the
task or actor it runs is unpickled; `patch_on_import` there leaves the process light
(nothing is imported) until the project's module is, then hands it to `patch`.
`run_sweep` then runs the sweep's own code, as run_all does; `run_probed_sweep` does so from
a driver of its own, connected to a running cluster with the probes in its workers.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
PROBE_DIR = "DERMABLATE_TEST_PROBE_DIR"  # where the probes in the workers write


class PatchOnImport(importlib.abc.MetaPathFinder):
    def __init__(self, name: str, patch: Callable[[ModuleType], None]):
        self.name, self.patch = name, patch

    def find_spec(self, name, path, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            self.patch(module)

        spec.loader.exec_module = exec_module
        return spec


def patch_on_import(name: str, patch: Callable[[ModuleType], None]) -> None:
    sys.meta_path.insert(0, PatchOnImport(name, patch))


def probed_runtime_env(setup_hook: Callable[[], None], probes: Path) -> dict:
    """The runtime_env that runs `setup_hook` in every worker process, with $PROBE_DIR set to `probes`.

    PYTHONPATH: the hook is unpickled before Ray puts the driver's sys.path on the worker's.
    """
    return {"worker_process_setup_hook": setup_hook, "env_vars": {PROBE_DIR: str(probes), "PYTHONPATH": str(REPO)}}


def run_sweep(sweep) -> tuple[str, pd.DataFrame, dict]:
    """Run `ray_jobs.sweep.Sweep` as run_all does once Ray is up; its status, summary and run configs."""
    from ray_jobs.arms import load_arms
    from ray_jobs.sweep import check_data, run, start

    run_configs = load_arms(sweep.arms, sweep.profile, sweep.run_overrides())
    facts, splits = check_data(sweep, run_configs, None)
    status, summary = run(sweep, run_configs, start(sweep, run_configs, facts, splits, None))
    return status, summary, run_configs


def run_probed_sweep(address: str, setup_hook: Callable[[], None], probes: Path, **sweep_args
                     ) -> tuple[str, pd.DataFrame, dict]:
    """Connect a driver to the cluster at `address`, `setup_hook` in its workers, and run
    `Sweep(**sweep_args)` of one single-CPU worker per trial (unless `resources` says otherwise)."""
    import ray

    from ray_jobs.resources import Resources
    from ray_jobs.sweep import Sweep

    sweep_args.setdefault("resources", Resources(workers=1, cpus_per_worker=1, gpus_per_worker=0, max_concurrent=1))
    try:
        ray.init(address=address, runtime_env=probed_runtime_env(setup_hook, probes))
        return run_sweep(Sweep(**sweep_args))
    finally:
        ray.shutdown()
