"""The Ray that `run_all.py` starts on this machine: its workers import this checkout and are not niced."""
from __future__ import annotations

import os

import pytest
import ray

from ray_jobs.driver import CHECKOUT, local_runtime_env

pytestmark = pytest.mark.slow


@ray.remote(num_cpus=1)
def worker_facts() -> tuple[int, str]:
    import ray_jobs

    return os.nice(0), ray_jobs.__file__


def test_workers_run_at_full_priority_and_import_this_checkout():
    ray.init(num_cpus=1, runtime_env=local_runtime_env(), include_dashboard=False, configure_logging=False)
    try:
        niceness, module = ray.get(worker_facts.remote(), timeout=120)
    finally:
        ray.shutdown()
    assert niceness == os.nice(0)  # Ray's default would be 15 above the driver's
    assert module.startswith(str(CHECKOUT))  # this checkout, whatever the current folder
