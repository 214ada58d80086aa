"""Pre-flight: a sweep whose arms cannot get their pretrained weights is refused before any cache or Ray."""
from __future__ import annotations

import pytest
import timm
from huggingface_hub import constants as hf_constants

from ablations import run_all
from core.config import ConfigError
from core.model import weights_problem
from ray_jobs.arms import load_arms
from ray_jobs.preflight import check_weights


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

    monkeypatch.setattr(run_all, "check_data", never)
    monkeypatch.setattr(run_all.ray, "init", never)
    status = run_all.main(["--data-root", str(demo_root), "--results", str(tmp_path / "results"),
                           "--arms", "baseline", "sampler"])
    assert status == 2
    err = capsys.readouterr().err
    assert "baseline, sampler: cannot download ImageNet weights" in err and "pretrained=pypi" in err
    assert not (tmp_path / "results").exists()
