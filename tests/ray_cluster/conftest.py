"""One Ray cluster for the test files of this folder: started once, stopped after the last.

Two nodes on this machine (`ray.cluster_utils.Cluster`), one CPU each and no GPU, the head
with the dashboard (job submission). Each test connects its own driver (its own job, with
its own runtime_env and probes) and disconnects it; none stops the cluster. The recovery
and lost-node tests keep their own clusters: they kill a driver or a node.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
# The cluster's processes inherit these: a job's `python` is this venv's, and its W&B runs stay on disk.
CLUSTER_ENV = {"RAY_AUTH_MODE": "disabled", "WANDB_MODE": "offline",
               "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


@dataclass
class RayCluster:
    address: str  # the GCS address: ray.init(address=...), run_all.py --address
    dashboard: str  # http://HOST:PORT: Ray Jobs
    env: dict  # the environment the cluster was started in, for subprocesses that use it


@pytest.fixture(scope="package")
def ray_cluster():
    from ray.cluster_utils import Cluster

    saved = {key: os.environ.get(key) for key in CLUSTER_ENV}
    os.environ.update(CLUSTER_ENV)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": True,
                                                            "dashboard_host": "127.0.0.1"})
    try:
        # Its own runtime_env folder: two nodes sharing one would each clean up the other's job files.
        cluster.add_node(num_cpus=1, runtime_env_dir_name="runtime_resources_node2")
        yield RayCluster(cluster.address, f"http://{cluster.webui_url}", dict(os.environ))
    finally:
        cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
