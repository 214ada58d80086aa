"""A 2-worker DDP trial on the 2-node Ray cluster of this folder (conftest.py), probed per rank.

Probes go into the Ray worker processes through Ray's `worker_process_setup_hook`: they
record, on every rank, the labels each epoch's sampler draws and a digest of the weights
after each epoch, and the node the rank ran on. The trial itself is the sweep's own
(`ray_jobs.sweep.run`), with the weighted sampler arm at the smoke profile.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.labels import CLASS_INDEX, NUM_CLASSES
from tests.ray_probes import PROBE_DIR, patch_on_import, run_probed_sweep

pytestmark = pytest.mark.slow

SPLIT_SEED = 8  # on the 240-image demo data: val and test both odd, so two ranks pad their shards


def install_probes() -> None:
    """Ray runs this in each worker process at start-up: probe the trainable once it is imported.

    Only the trial's own processes import ray_jobs.trainable; the others stay light.
    """
    if os.environ.get(PROBE_DIR):
        patch_on_import("ray_jobs.trainable", probe)


def probe(trainable) -> None:
    """Record, per rank, each epoch's sampled labels and weight digest, and the rank's node."""
    import ray
    import ray.train

    import core.training

    record = {"drawn": {}, "weights": {}}
    train_one_epoch, fit = core.training.train_one_epoch, trainable.fit

    def probed_epoch(model, loader, *args, **kwargs):
        # The sampler draws the same indices for the loader as for this look (seed, epoch, rank).
        labels = loader.dataset.labels[list(loader.sampler)]
        record["drawn"][str(loader.sampler.epoch)] = np.bincount(labels, minlength=NUM_CLASSES).tolist()
        return train_one_epoch(model, loader, *args, **kwargs)

    def probed_fit(*args, on_epoch_end, **kwargs):
        def hook(epoch, row, state):
            digest = hashlib.sha256()
            for tensor in state["model"].values():
                digest.update(tensor.detach().cpu().numpy().tobytes())
            record["weights"][str(epoch)] = digest.hexdigest()
            on_epoch_end(epoch, row, state)

        result = fit(*args, on_epoch_end=hook, **kwargs)
        rank = ray.train.get_context().get_world_rank()
        record.update(rank=rank, node=ray.get_runtime_context().get_node_id())
        Path(os.environ[PROBE_DIR], f"rank{rank}.json").write_text(json.dumps(record))
        return result

    core.training.train_one_epoch = probed_epoch
    trainable.fit = probed_fit


@pytest.fixture(scope="module")
def ddp_run(ray_cluster, demo_root, tmp_path_factory):
    from ray_jobs.resources import Resources

    tmp = tmp_path_factory.mktemp("ddp")
    probes = tmp / "probes"
    probes.mkdir()
    status, summary, run_configs = run_probed_sweep(
        ray_cluster.address, install_probes, probes, results=str(tmp / "results"), profile="smoke",
        data_root=str(demo_root), arms=["sampler"], split_seed=SPLIT_SEED,
        resources=Resources(workers=2, cpus_per_worker=1, gpus_per_worker=0, max_concurrent=1))
    ranks = [json.loads((probes / f"rank{r}.json").read_text()) for r in range(2)]
    return {"status": status, "summary": summary, "ranks": ranks, "run_dir": tmp / "results" / "sampler",
            "splits": pd.read_csv(tmp / "results" / "splits.csv"), "epochs": run_configs["sampler"].epochs}


def test_the_trial_finishes_with_two_workers(ddp_run):
    assert ddp_run["status"] == "finished"
    assert json.loads((ddp_run["run_dir"] / "metrics.json").read_text())["world_size"] == 2


def test_the_two_workers_ran_on_different_nodes(ddp_run):
    assert ddp_run["ranks"][0]["node"] != ddp_run["ranks"][1]["node"]


def test_weighted_sampler_is_rebalanced_on_every_rank(ddp_run):
    for rank in ddp_run["ranks"]:
        assert set(rank["drawn"]) == {str(e) for e in range(1, ddp_run["epochs"] + 1)}
        for counts in rank["drawn"].values():
            shares = np.array(counts) / sum(counts)
            # Naturally nv is about half of the training images; rebalanced, every class
            # is drawn and none comes near that.
            assert (shares > 0).all() and shares.max() < 0.3
            assert shares[CLASS_INDEX["nv"]] < 0.3


def test_ranks_draw_different_batches(ddp_run):
    first, second = ddp_run["ranks"]
    assert first["drawn"] != second["drawn"]


def test_eval_metrics_use_exactly_one_prediction_per_image(ddp_run):
    metrics = json.loads((ddp_run["run_dir"] / "metrics.json").read_text())
    for split in ("val", "test"):
        expected = ddp_run["splits"].loc[ddp_run["splits"]["split"] == split, "image_id"]
        assert len(expected) % 2 == 1  # so the two ranks' padded shards overlap
        predictions = pd.read_csv(ddp_run["run_dir"] / f"predictions_{split}.csv")
        assert len(predictions) == len(expected) == metrics[split]["n"]
        assert sorted(predictions["image_id"]) == sorted(expected)


def test_ranks_hold_identical_weights_after_every_epoch(ddp_run):
    first, second = ddp_run["ranks"]
    assert len(first["weights"]) == ddp_run["epochs"]
    assert first["weights"] == second["weights"]
