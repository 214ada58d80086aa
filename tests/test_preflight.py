"""Pre-flight: a sweep whose arms cannot get their pretrained weights, or whose trial cannot fit on this
machine, is refused before any cache or Ray; a full sweep without a GPU says how long it will take."""
from __future__ import annotations

import re

import pandas as pd
import pytest
import ray
import timm
import torch
from huggingface_hub import constants as hf_constants

from ablations import run_all
from core.config import ConfigError
from core.model import weights_problem
from ray_jobs import driver
from ray_jobs.arms import load_arms
from ray_jobs.estimate import seconds_per_image, sweep_seconds
from ray_jobs.preflight import autoscaler_node_types, check_cluster, check_resources, check_weights


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No Hugging Face hub, and an empty hub cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def cache_hub_weights(hub, backbone: str) -> None:
    """Put a file where the hub cache keeps `backbone`'s default ImageNet weights."""
    repo = timm.models.get_pretrained_cfg(backbone).hf_hub_id
    snapshot = hub / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"weights")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")


def test_offline_imagenet_arms_are_refused_naming_each_and_the_fix(offline):
    arms = load_arms(["baseline", "sampler", "b2_mel_select"], "full", {})
    with pytest.raises(ConfigError) as refused:
        check_weights(arms)
    message = str(refused.value)
    assert message.startswith("3 arm(s) cannot get their pretrained weights")
    assert "  baseline, sampler: cannot download ImageNet weights for 'efficientnet_b0'" in message
    assert "  b2_mel_select: cannot download ImageNet weights for 'efficientnet_b2'" in message
    assert "HF_HUB_OFFLINE" in message and "--set backbone=tf_efficientnet_lite0 pretrained=pypi" in message


def test_weights_in_the_hub_cache_pass_offline(offline):
    cache_hub_weights(offline, "efficientnet_b0")
    check_weights(load_arms(["baseline", "sampler"], "full", {}))
    assert weights_problem("efficientnet_b2", "imagenet") is not None  # not cached


def test_the_offline_profiles_pass_offline(offline):
    check_weights(load_arms(None, "demo", {}))  # PyPI Lite0 weights
    check_weights(load_arms(None, "smoke", {}))  # random init


def test_a_missing_weights_file_is_named(tmp_path):
    missing = tmp_path / "imagenet.pth"
    with pytest.raises(ConfigError, match=f"baseline: the weights file {missing} does not exist"):
        check_weights(load_arms(["baseline"], "full", {"pretrained": str(missing)}))
    missing.write_bytes(b"weights")
    check_weights(load_arms(["baseline"], "full", {"pretrained": str(missing)}))


def test_pypi_weights_for_another_backbone_are_named():
    assert "tf_efficientnet_lite0" in weights_problem("efficientnet_b0", "pypi")


def test_run_all_refuses_before_checking_data_or_starting_ray(offline, demo_root, tmp_path, monkeypatch, capsys):
    def never(*args, **kwargs):
        raise AssertionError("the sweep went on past the pre-flight")

    monkeypatch.setattr(driver, "check_data", never)
    monkeypatch.setattr(ray, "init", never)
    status = run_all.main(["--data-root", str(demo_root), "--results", str(tmp_path / "results"),
                           "--arms", "baseline", "sampler"])
    assert status == 2
    err = capsys.readouterr().err
    assert "baseline, sampler: cannot download ImageNet weights" in err and "pretrained=pypi" in err
    assert not (tmp_path / "results").exists()


def test_a_trial_bigger_than_the_machine_is_refused_with_a_shape_that_fits():
    with pytest.raises(ConfigError) as refused:
        check_resources(4, 2, 0, cpus=2, gpus=0)
    assert str(refused.value) == ("one trial cannot fit: 4 worker(s) x 2 CPU(s) = 8 CPUs, but this machine has 2; "
                                  "fix: --workers-per-trial 1, or join a larger cluster (--address)")
    with pytest.raises(ConfigError, match="fix: --workers-per-trial 1 --cpus-per-worker 2,"):
        check_resources(1, 4, 0, cpus=2, gpus=0)
    with pytest.raises(ConfigError, match="2 worker.s. x 1 GPU.s. = 2 GPUs, but this machine has 1; "
                                          "fix: --workers-per-trial 1,"):
        check_resources(2, 1, 1, cpus=8, gpus=1)
    check_resources(2, 1, 0, cpus=2, gpus=0)
    check_resources(2, 4, 0.5, cpus=8, gpus=1)


def test_a_gpu_asked_for_where_none_exists_is_refused():
    with pytest.raises(ConfigError, match="--gpus-per-worker 0.5 asks for a GPU, but this machine has none .* "
                                          "leave out --gpus-per-worker to train on the CPUs"):
        check_resources(1, 1, 0.5, cpus=2, gpus=0)


CPU_NODES = [{"CPU": 1.0, "memory": 1e9}, {"CPU": 1.0, "memory": 1e9}]  # two nodes, neither with a GPU
CLUSTER = "the cluster at 10.0.0.1:6379"


def test_a_joined_cluster_refuses_a_worker_no_node_can_hold_with_the_numbers():
    with pytest.raises(ConfigError) as refused:
        check_cluster(1, 1, 1, CPU_NODES, {}, CLUSTER)
    assert str(refused.value) == (
        "one trial cannot be placed on the cluster at 10.0.0.1:6379: each of its 1 worker(s) asks for 1 CPU(s) "
        "and 1 GPU(s), and no node has a GPU (nodes now: 1 CPU, 0 GPU; 1 CPU, 0 GPU; node types the autoscaler "
        "may add: none); fix: leave out --gpus-per-worker to train on the CPUs, or add nodes that fit")
    with pytest.raises(ConfigError, match="no node holds one worker .*fix: --workers-per-trial 1 --cpus-per-worker 1,"):
        check_cluster(1, 2, 0, CPU_NODES, {}, CLUSTER)  # 2 CPUs in all, but 1 a node
    with pytest.raises(ConfigError, match="its nodes hold 2 such worker.s. .*fix: --workers-per-trial 2,"):
        check_cluster(3, 1, 0, CPU_NODES, {}, CLUSTER)
    check_cluster(2, 1, 0, CPU_NODES, {}, CLUSTER)  # one worker a node: Ray Train spreads them


def test_node_types_the_autoscaler_may_add_count_and_unknown_sizes_are_not_refused():
    gpu_type = {"gpu_worker": ({"CPU": 8, "GPU": 1}, 2)}
    check_cluster(2, 4, 1, CPU_NODES, gpu_type, CLUSTER)  # two GPU nodes may come
    with pytest.raises(ConfigError, match="its nodes hold 2 such .*may add: gpu_worker, up to 2 of 8 CPU, 1 GPU"):
        check_cluster(3, 4, 1, CPU_NODES, gpu_type, CLUSTER)
    check_cluster(3, 4, 1, CPU_NODES, {"gpu_worker": ({}, 2)}, CLUSTER)  # not filled in: it may fit


def test_the_launchers_config_on_the_head_names_the_worker_types(tmp_path):
    assert autoscaler_node_types(tmp_path) == {}  # not a launcher's head node
    (tmp_path / "ray_bootstrap_config.yaml").write_text(
        "max_workers: 4\nhead_node_type: head\navailable_node_types:\n"
        "  head: {resources: {CPU: 0}, max_workers: 0}\n"
        "  gpu_worker: {resources: {CPU: 8, GPU: 1}}\n"
        "  spot_gpu: {resources: {CPU: 8, GPU: 1}, max_workers: 0}\n"
        "  cpu_worker: {resources: {CPU: 16}, min_workers: 1, max_workers: 2}\n")
    assert autoscaler_node_types(tmp_path) == {"gpu_worker": ({"CPU": 8, "GPU": 1}, 4),
                                               "cpu_worker": ({"CPU": 16}, 2)}


def stop_before_ray(monkeypatch) -> None:
    def stop(*args, **kwargs):
        raise ReachedRay

    monkeypatch.setattr(ray, "init", stop)


class ReachedRay(Exception):
    pass


def test_run_all_refuses_a_trial_too_big_for_this_machine_before_the_data_check(demo_root, tmp_path, monkeypatch,
                                                                                 capsys):
    def never(*args, **kwargs):
        raise AssertionError("the sweep went on past the pre-flight")

    monkeypatch.setattr(driver, "usable_cpus", lambda: 2)
    monkeypatch.setattr(driver, "check_data", never)
    stop_before_ray(monkeypatch)
    status = run_all.main(["--data-root", str(demo_root), "--results", str(tmp_path / "results"), "--profile", "smoke",
                           "--workers-per-trial", "3"])
    assert status == 2
    assert "one trial cannot fit: 3 worker(s) x 1 CPU(s) = 3 CPUs, but this machine has 2" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_sweep_seconds_are_the_probe_times_the_images_of_every_epoch():
    arms = load_arms(["baseline", "sampler", "b2_mel_select"], "full", {"epochs": 10, "pretrained": "none"})
    splits = pd.DataFrame({"split": ["train"] * 100 + ["val"] * 20 + ["test"] * 30})
    probed = []

    def probe(backbone, image_size):
        probed.append((backbone, image_size))
        return {"efficientnet_b0": (0.1, 0.02), "efficientnet_b2": (0.3, 0.05)}[backbone]

    seconds = sweep_seconds(arms, splits, repeats=3, probe=probe)
    b0 = 10 * (100 * 0.1 + 20 * 0.02) + 50 * 0.02
    b2 = 10 * (100 * 0.3 + 20 * 0.05) + 50 * 0.05
    assert seconds == pytest.approx(3 * (2 * b0 + b2))
    assert sorted(probed) == [("efficientnet_b0", 224), ("efficientnet_b2", 224)]  # once per backbone and size


def test_the_probe_times_a_real_training_step():
    train, predict = seconds_per_image("test_efficientnet", 32)
    assert predict > 0 and 0 < train < 10


def test_a_full_sweep_without_a_gpu_prints_its_estimate_before_ray(demo_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    stop_before_ray(monkeypatch)
    with pytest.raises(ReachedRay):
        run_all.main(["--data-root", str(demo_root), "--results", str(tmp_path / "results"), "--arms", "baseline",
                      "--set", "backbone=test_efficientnet", "image_size=32", "pretrained=none"])
    out = capsys.readouterr().err  # a progress message, on stderr
    assert re.search(r"no GPU here: estimated \d+\.\d hours on this CPU for 1 arm\(s\) x 1 .* probe of 1 backbone",
                     out), out


def test_the_demo_and_smoke_profiles_skip_the_probe(demo_root, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("probed")

    monkeypatch.setattr(driver, "estimate_line", never)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    stop_before_ray(monkeypatch)
    for profile in ("demo", "smoke"):
        with pytest.raises(ReachedRay):
            run_all.main(["--data-root", str(demo_root), "--results", str(tmp_path / profile), "--profile", profile,
                          "--arms", "baseline"])


def test_dry_run_prints_every_arm_and_the_plan_and_starts_nothing(demo_root, tmp_path, monkeypatch, capsys):
    def never(*args, **kwargs):
        raise AssertionError("a dry run started Ray")

    monkeypatch.setattr(ray, "init", never)
    results = tmp_path / "results"
    assert run_all.main(["--dry-run", "--data-root", str(demo_root), "--profile", "smoke", "--arms", "baseline",
                         "sampler", "--seeds", "2", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("baseline:\n  name: baseline\n") and "\nsampler:\n  name: sampler\n" in out
    assert "  sampler: True" in out and "  weighting: none" in out  # sampler's own config, resolved
    assert "plan: 2 arm(s) x 2 = 4 trial(s) (2 seed(s), 1 sample(s))" in out
    assert "plan: resources on this machine: Resources(workers=1" in out
    assert "plan: time: no GPU here: estimated" in out
    assert not results.exists()  # nothing written


def test_dry_run_counts_no_trials_for_an_arm_that_repeats_another(demo_root, tmp_path, capsys):
    assert run_all.main(["--dry-run", "--data-root", str(demo_root), "--profile", "smoke", "--arms", "b2_mel_select",
                         "long_mel_select", "--results", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "plan: 1 arm(s) x 1 = 1 trial(s)" in out
    assert "plan: long_mel_select is not trained: the same run as b2_mel_select" in out
