"""A node lost mid-epoch costs one retry: the trial resumes from its last checkpoint on what remains.

A 2-node `ray.cluster_utils.Cluster` on this machine: the head, and a second node that
also offers a custom resource `node2`. Probes go into the Ray worker processes through
`worker_process_setup_hook` (tests/ray_probes.py), so production code stays as it is:
- in the trial process, the trial's Train worker asks for a little `node2` while the
  cluster has any, so the first attempt trains on the second node and a retry on the head;
- in the Train worker, the first process to reach epoch 2 trains one batch of it, writes
  a marker and waits there, and every epoch's start is recorded with its node.
The test removes the second node once the marker appears (mid-epoch 2) and Train has
registered epoch 1's checkpoint. The trial is the sweep's own (`ray_jobs.sweep.run`): the
baseline arm at the smoke profile, three epochs, one worker of one CPU.
"""
from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.ray_probes import PROBE_DIR, patch_on_import, probed_runtime_env, run_sweep
from tests.test_ray_recovery import checkpointed

pytestmark = pytest.mark.slow

NODE2 = "node2"
HELD = "held-mid-epoch-2"  # the marker: the worker on node 2 is inside epoch 2
EPOCHS = 3


def install_probes() -> None:
    if os.environ.get(PROBE_DIR):
        patch_on_import("ray_jobs.trainable", probe)


def probe(trainable) -> None:
    import ray
    import ray.train.torch

    import core.training

    make_trainer, train_one_epoch = ray.train.torch.TorchTrainer, core.training.train_one_epoch
    probes = Path(os.environ[PROBE_DIR])

    def trainer_on_node2_while_it_exists(*args, scaling_config, **kwargs):
        if ray.cluster_resources().get(NODE2):
            scaling_config = dataclasses.replace(
                scaling_config, resources_per_worker={**scaling_config.resources_per_worker, NODE2: 0.01})
        return make_trainer(*args, scaling_config=scaling_config, **kwargs)

    def held_in_epoch_2(loader):
        for step, batch in enumerate(loader):
            yield batch
            if step == 0:
                try:  # O_EXCL: the first attempt holds; its retry trains straight through
                    os.close(os.open(probes / HELD, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    continue
                time.sleep(300)  # until the node goes, and the process with it

    def recorded_epoch(model, loader, *args, **kwargs):
        epoch = loader.sampler.epoch
        with (probes / "epochs.jsonl").open("a") as f:
            f.write(json.dumps({"epoch": epoch, "node": ray.get_runtime_context().get_node_id()}) + "\n")
        return train_one_epoch(model, held_in_epoch_2(loader) if epoch == 2 else loader, *args, **kwargs)

    ray.train.torch.TorchTrainer = trainer_on_node2_while_it_exists
    core.training.train_one_epoch = recorded_epoch


def remove_when_held(cluster, node, probes: Path, results: Path, removed: dict, timeout: float = 400) -> None:
    """Remove `node` once its worker is inside epoch 2 and Train has registered epoch 1's checkpoint.

    (A node lost in the second between a report and its registration loses that epoch too.)
    """
    deadline = time.monotonic() + timeout
    while not ((probes / HELD).exists() and checkpointed(results)):
        if time.monotonic() > deadline:
            return
        time.sleep(0.2)
    removed["at"] = time.time()
    cluster.remove_node(node, allow_graceful=False)


@pytest.fixture(scope="module")
def lost_node(demo_root, tmp_path_factory):
    import ray
    from ray.cluster_utils import Cluster

    from ray_jobs.resources import Resources
    from ray_jobs.sweep import Sweep

    tmp = tmp_path_factory.mktemp("lost_node")
    probes = tmp / "probes"
    probes.mkdir()
    # Node deaths are noticed within a few seconds rather than Ray's default of about 15.
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": True,
        "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}})
    node2 = cluster.add_node(num_cpus=1, resources={NODE2: 1})
    removed: dict = {}
    watcher = threading.Thread(target=remove_when_held, args=(cluster, node2, probes, tmp / "results", removed),
                               daemon=True)
    try:
        ray.init(address=cluster.address, runtime_env=probed_runtime_env(install_probes, probes))
        head = ray.get_runtime_context().get_node_id()
        sweep = Sweep(results=str(tmp / "results"), profile="smoke", data_root=str(demo_root), arms=["baseline"],
                      overrides={"epochs": EPOCHS},
                      resources=Resources(workers=1, cpus_per_worker=1, gpus_per_worker=0, max_concurrent=1))
        watcher.start()  # it waits for the worker's marker
        status, summary, _ = run_sweep(sweep)
    finally:
        ray.shutdown()
        cluster.shutdown()
    results = tmp / "results"
    reports = [json.loads(line) for f in (results / "ray" / "tune").glob("baseline_*/result.json")
               for line in f.read_text().splitlines() if line.strip()]
    epochs = [json.loads(line) for line in (probes / "epochs.jsonl").read_text().splitlines()]
    return {"status": status, "summary": summary, "run_dir": results / "baseline", "removed": removed,
            "reported_epochs": [r["epoch"] for r in reports], "trained": epochs, "head": head,
            "node2": node2.node_id}


def test_the_second_node_was_removed_mid_epoch_2(lost_node):
    assert lost_node["removed"], "the worker never reached epoch 2 on the second node"
    first_attempt = [e for e in lost_node["trained"] if e["node"] == lost_node["node2"]]
    assert [e["epoch"] for e in first_attempt] == [1, 2]


def test_the_sweep_finishes_after_one_retry_on_the_head(lost_node):
    assert lost_node["status"] == "finished"
    assert lost_node["summary"]["status"].tolist() == ["finished"]
    retried = [e for e in lost_node["trained"] if e["node"] != lost_node["node2"]]
    assert retried and {e["node"] for e in retried} == {lost_node["head"]}
    assert (lost_node["run_dir"] / "metrics.json").is_file()


def test_the_epoch_before_the_loss_is_not_trained_again(lost_node):
    # From epoch 1's checkpoint: epoch 2 again (it was lost midway), then 3; never epoch 1.
    assert [e["epoch"] for e in lost_node["trained"]] == [1, 2, 2, 3]
    assert lost_node["reported_epochs"] == list(range(1, EPOCHS + 1))


def test_history_keeps_one_row_per_epoch(lost_node):
    history = pd.read_csv(lost_node["run_dir"] / "history.csv")
    assert history["epoch"].tolist() == list(range(1, EPOCHS + 1))
