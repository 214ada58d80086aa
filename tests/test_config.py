"""Run configs: the eight ablations load, and every bad key or value fails before training."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, RunConfig, from_dict, load_config, parse_overrides, same_runs

CONFIGS = Path(__file__).resolve().parents[1] / "ablations" / "configs"
STUDY = {"baseline", "baseline_synth", "sampler", "mel_upweight_x3", "long_mel_select", "b2_mel_select",
         "b2_260_acc_select", "b2_260_mel_sampler"}
ARMS = sorted(STUDY)


def test_the_ablation_configs_are_the_study_and_best_single():
    assert {p.stem for p in CONFIGS.glob("*.yaml")} == STUDY | {"best_single"}


@pytest.mark.parametrize("arm", ARMS + ["best_single"])
@pytest.mark.parametrize("profile", ["full", "demo", "smoke"])
def test_every_arm_loads_under_every_profile(arm, profile):
    cfg = load_config(CONFIGS / f"{arm}.yaml", profile)
    assert cfg.name == arm
    if profile == "smoke":
        assert cfg.backbone == "test_efficientnet" and cfg.pretrained == "none"


def test_best_single_uses_what_the_study_arms_leave_off():
    best = load_config(CONFIGS / "best_single.yaml")
    assert best.backbone == "efficientnet_b2" and best.ema_decay > 0 and best.mixup_alpha > 0
    assert best.auto_augment == "trivial" and best.weighting == "inverse_freq"
    for arm in ARMS:
        cfg = load_config(CONFIGS / f"{arm}.yaml")
        assert (cfg.ema_decay, cfg.mixup_alpha, cfg.cutmix_alpha, cfg.auto_augment) == (0.0, 0.0, 0.0, "none")


def test_mixup_needs_an_even_batch_and_ema_a_decay_below_one():
    with pytest.raises(ConfigError, match="batch_size must be even"):
        from_dict({"mixup_alpha": 0.2, "batch_size": 33})
    with pytest.raises(ConfigError, match="ema_decay must be below 1"):
        from_dict({"ema_decay": 1.0})
    with pytest.raises(ConfigError, match="auto_augment='autoaugment' is not one of none, trivial, randaugment"):
        from_dict({"auto_augment": "autoaugment"})


def test_full_profile_is_the_study_table():
    b2 = load_config(CONFIGS / "b2_260_acc_select.yaml")
    assert (b2.backbone, b2.image_size, b2.select_on, b2.random_resized_crop) == \
        ("efficientnet_b2", 260, "val_acc", True)
    assert b2.label_smoothing == 0.1 and b2.weighting == "none"
    x3 = load_config(CONFIGS / "mel_upweight_x3.yaml")
    assert x3.mel_multiplier == 3.0 and x3.weighting == "inverse_freq"
    assert load_config(CONFIGS / "long_mel_select.yaml").epochs == 30
    assert load_config(CONFIGS / "sampler.yaml").sampler


def test_overrides_come_last_and_are_typed():
    cfg = load_config(CONFIGS / "baseline.yaml", "smoke", ["lr=1e-2", "sampler=true", "epochs=3"])
    assert (cfg.lr, cfg.sampler, cfg.epochs) == (0.01, True, 3)
    assert parse_overrides(["cache_dir=null"]) == {"cache_dir": None}
    assert from_dict({"lr": "1e-4"}).lr == 1e-4  # YAML 1.1 reads 1e-4 as text


@pytest.mark.parametrize("values, match", [
    ({"learning_rate": 0.1}, "unknown key 'learning_rate'; valid keys: name, backbone"),
    ({"epoch": 3}, r"unknown key 'epoch' \(did you mean epochs"),
    ({"lr": -1.0}, "lr must be > 0"),
    ({"lr": "fast"}, "lr must be float"),
    ({"image_size": 0}, "image_size must be > 0"),
    ({"epochs": 2.5}, "epochs must be int"),
    ({"sampler": "yes"}, "sampler must be bool"),
    ({"backbone": "efficientnet_bO"}, "unknown timm backbone 'efficientnet_bO'; close matches: efficientnet_b0"),
    ({"select_on": "val_auc"}, "select_on='val_auc' is not one of val_acc, val_macro_f1, val_mel_recall"),
    ({"weighting": "sqrt"}, "weighting='sqrt' is not one of none, inverse_freq, class_balanced"),
    ({"pretrained": "imagenet21k"}, "pretrained='imagenet21k' is not one of .*weights file"),
    ({"dropout": 1.5}, "below 1"),
    ({"num_workers": -1}, "num_workers must be >= 0"),
    ({"test_fraction": 0.0}, "test_fraction must be > 0"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction \\+ test_fraction must leave images to train on"),
])
def test_bad_values_name_the_key_and_the_choices(values, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(values)


def test_bad_files_and_profiles(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("lr: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="unknown profile 'huge'; available: cpu-real, demo, smoke"):
        load_config(CONFIGS / "baseline.yaml", "huge")
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["lr"])


def test_defaults_are_a_valid_config():
    assert from_dict({}) == RunConfig()


def test_arms_a_profile_makes_identical_are_named_and_no_others():
    configs = {"a": from_dict({"name": "a", "epochs": 3}), "b": from_dict({"name": "b", "epochs": 30}),
               "c": from_dict({"name": "c", "epochs": 3}), "d": from_dict({"name": "d", "epochs": 3, "lr": 0.1})}
    assert same_runs(configs) == {"c": "a"}
    from ray_jobs.arms import load_arms

    # The demo and smoke profiles give every arm one backbone, size and epoch count: only the
    # epoch count set long_mel_select apart from b2_mel_select.
    assert same_runs(load_arms(None, "demo", {})) == {"long_mel_select": "b2_mel_select"}
    assert same_runs(load_arms(None, "full", {})) == {}
