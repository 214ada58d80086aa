"""A sweep that joins a cluster with --address is refused, with the numbers, before any trial starts
when no node of that cluster can hold one of its workers (ray_jobs.preflight.check_cluster).

The 2-node cluster of this folder (conftest.py): two nodes of one CPU and no GPU.
"""
from __future__ import annotations

import pytest
import ray

from ablations import run_all

pytestmark = pytest.mark.slow


def test_a_gpu_that_no_node_has_is_refused_before_any_trial_starts(ray_cluster, demo_root, tmp_path, capsys):
    address = ray_cluster.address
    try:
        status = run_all.main(["--address", address, "--data-root", str(demo_root), "--profile", "smoke",
                               "--arms", "baseline", "--results", str(tmp_path / "results"),
                               "--gpus-per-worker", "1"])
    finally:
        ray.shutdown()
    err = capsys.readouterr().err
    assert status == 2
    assert (f"one trial cannot be placed on the cluster at {address}: each of its 1 worker(s) asks for "
            "1 CPU(s) and 1 GPU(s), and no node has a GPU (nodes now: 1 CPU, 0 GPU; 1 CPU, 0 GPU;") in err
    sweep = tmp_path / "results" / "smoke"
    assert not (sweep / "sweep.json").exists() and not (sweep / "ray").exists() and not (sweep / "baseline").exists()
