"""One typed run config, loaded from YAML, with a profile and `key=value` overrides on top.

Every run folder holds its fully resolved config (config.json), so any run can be
reproduced from its folder alone.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from core import choices


class ConfigError(ValueError):
    """A config key, type or value that cannot work; raised before any training starts."""


@dataclass
class RunConfig:
    name: str = "run"
    # model
    backbone: str = "efficientnet_b0"  # any timm model name
    pretrained: str = "imagenet"  # imagenet | pypi | none | path to a weights file
    dropout: float = 0.2
    image_size: int = 224
    # data
    random_resized_crop: bool = False  # else a plain resize
    split_seed: int = 0
    val_fraction: float = 0.1  # of the images, lesion-wise (the demo profile holds out more, for tighter intervals)
    test_fraction: float = 0.1
    splits_file: str | None = None  # a saved split (the sweep shares one); else made from split_seed
    duplicates_file: str | None = None  # `python -m core.data duplicates` CSV: each pair kept in one split
    skip_bad_images: bool = False  # drop rows `check` reports as errors, listed in excluded.csv
    cache: bool = True  # decode + resize once into a shared memmap
    cache_dir: str | None = None  # default ~/.cache/dermablate or $DERMABLATE_CACHE
    num_workers: int = 4  # DataLoader workers per process
    # imbalance
    loss: str = "ce"  # ce | focal
    weighting: str = "inverse_freq"  # none | inverse_freq | class_balanced
    mel_multiplier: float = 1.0  # melanoma weight x this, after normalisation
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    cb_beta: float = 0.999
    sampler: bool = False  # weighted sampler, P(image) proportional to its class weight
    # synthetic training images (baseline_synth); val and test never see them
    synthetic: str = "none"  # none | cvae: append images from a cVAE trained on the training split
    synthetic_target: float = 0.25  # generate until each class has this fraction of the largest class's count
    cvae_resolution: int = 64  # 64 | 96 | 128 (32 for tests); generated images are resized to image_size
    cvae_epochs: int = 50
    cvae_latent: int = 64  # latent dimensions
    cvae_beta: float = 1.0  # KL weight in the ELBO
    cvae_kl_warmup: float = 0.2  # fraction of cVAE training over which the KL weight ramps up from 0
    # optimisation
    epochs: int = 15
    batch_size: int = 32
    lr: float = 3e-4  # AdamW
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0  # linear warmup, then cosine to zero
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    patience: int = 0  # stop after this many epochs without a better selection metric; 0 = off
    select_on: str = "val_macro_f1"  # val_macro_f1 | val_acc | val_mel_recall
    seed: int = 0
    # beyond the study (off in its eight arms; ablations/configs/best_single.yaml uses them)
    ema_decay: float = 0.0  # EMA of the weights (timm ModelEmaV3): validated, selected and saved; 0 = off
    mixup_alpha: float = 0.0  # timm Mixup's Beta(alpha, alpha) mixing of image pairs; 0 = off
    cutmix_alpha: float = 0.0  # timm CutMix; with mixup too, each batch is one or the other
    auto_augment: str = "none"  # none | trivial (TrivialAugmentWide) | randaugment, per image, before the geometry
    # evaluation
    bootstrap_replicates: int = 1000  # lesion-level bootstrap replicates of the test intervals
    tta: bool = False  # also evaluate with 8-view flip/rot90 test-time augmentation (metrics.json "tta")
    # hardware
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bf16 (or fp16 with a grad scaler) on CUDA; ignored on CPU
    channels_last: bool = True  # NHWC model and batches (faster on CUDA and CPU)
    augment: str = "auto"  # cpu (DataLoader workers) | device (whole batches where the model runs) | auto: device
    compile: bool = False  # torch.compile the model (the first epoch pays the compile time)

    @property
    def mixes_images(self) -> bool:
        """Mixup or cutmix: the targets are class distributions, not class indices."""
        return bool(self.mixup_alpha or self.cutmix_alpha)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CHOICES = {
    "pretrained": choices.PRETRAINED,
    "loss": choices.LOSS_KINDS,
    "weighting": choices.WEIGHTINGS,
    "select_on": choices.SELECTION_METRICS,
    "synthetic": choices.SYNTHETIC_MODES,
    "cvae_resolution": choices.CVAE_RESOLUTIONS,
    "augment": choices.AUGMENT,
    "auto_augment": choices.AUTO_AUGMENT,
}
POSITIVE = ("image_size", "epochs", "batch_size", "lr", "synthetic_target", "cvae_epochs", "cvae_latent",
            "cvae_beta", "bootstrap_replicates", "val_fraction", "test_fraction")
NON_NEGATIVE = ("dropout", "mel_multiplier", "label_smoothing", "focal_gamma", "weight_decay",
                "warmup_epochs", "grad_clip", "patience", "num_workers", "cvae_kl_warmup", "ema_decay",
                "mixup_alpha", "cutmix_alpha")
FRACTIONS = ("synthetic_target", "cvae_kl_warmup", "val_fraction", "test_fraction")  # at most 1


def from_dict(values: dict[str, Any], source: str = "config") -> RunConfig:
    """Build and validate a RunConfig; every error names the key and what it accepts."""
    known = {f.name: f for f in fields(RunConfig)}
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"{source}: unknown key {key!r}{hint}; valid keys: {', '.join(known)}")
    converted = {key: _typed(key, value, known[key].type, source) for key, value in values.items()}
    config = RunConfig(**converted)
    _check_values(config, source)
    return config


def _typed(key: str, value: Any, annotation: str, source: str) -> Any:
    optional = "None" in annotation
    if value is None and optional:
        return None
    kind = annotation.split("|")[0].strip()
    if kind == "float" and isinstance(value, str):
        value = _float_or_text(value)  # YAML 1.1 reads 1e-4 (no dot) as text
    ok = {
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
    }[kind]
    if not ok:
        raise ConfigError(f"{source}: {key} must be {kind}{' or null' if optional else ''}; got {value!r}")
    return float(value) if kind == "float" else value


def _float_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _check_values(config: RunConfig, source: str) -> None:
    for key, allowed in CHOICES.items():
        value = getattr(config, key)
        if key == "pretrained" and (value in allowed or Path(value).suffix in (".pth", ".pt", ".bin", ".safetensors")):
            continue
        if value not in allowed:
            raise ConfigError(f"{source}: {key}={value!r} is not one of {', '.join(map(str, allowed))}"
                              + (" (or a weights file path)" if key == "pretrained" else ""))
    for key in POSITIVE:
        if getattr(config, key) <= 0:
            raise ConfigError(f"{source}: {key} must be > 0; got {getattr(config, key)}")
    for key in NON_NEGATIVE:
        if getattr(config, key) < 0:
            raise ConfigError(f"{source}: {key} must be >= 0; got {getattr(config, key)}")
    if not config.ema_decay < 1:
        raise ConfigError(f"{source}: ema_decay must be below 1 (0 = off); got {config.ema_decay}")
    if config.mixes_images and config.batch_size % 2:
        raise ConfigError(f"{source}: mixup and cutmix mix each batch with its reverse: batch_size must be even; "
                          f"got {config.batch_size}")
    if not config.dropout < 1 or not config.label_smoothing < 1:
        raise ConfigError(f"{source}: dropout and label_smoothing must be below 1")
    for key in FRACTIONS:
        if getattr(config, key) > 1:
            raise ConfigError(f"{source}: {key} is a fraction, at most 1; got {getattr(config, key)}")
    if config.val_fraction + config.test_fraction >= 1:
        raise ConfigError(f"{source}: val_fraction + test_fraction must leave images to train on; got "
                          f"{config.val_fraction} + {config.test_fraction}")
    try:
        check_backbone(config.backbone)
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from None


def check_backbone(backbone: str) -> None:
    """Raise ValueError naming close matches when timm has no model of this name (timm, and so
    torch, load here: when a config is validated, not when this module is imported)."""
    import timm

    if timm.is_model(backbone):
        return
    # Ties broken alphabetically, so 'efficientnet_bo' suggests b0..b4 rather than b8..b4.
    scores = {name: difflib.SequenceMatcher(None, backbone, name).ratio() for name in timm.list_models()}
    close = sorted((n for n, s in scores.items() if s >= 0.6), key=lambda n: (-scores[n], n))[:5]
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise ValueError(f"unknown timm backbone {backbone!r}{hint}")


def same_runs(configs: dict[str, RunConfig]) -> dict[str, str]:
    """{arm: the earlier arm it repeats} for arms whose resolved configs differ in their name only:
    a profile that overrides what set them apart (the demo's one backbone, size and epoch count)."""
    first, same = {}, {}
    for arm, cfg in configs.items():
        key = repr(sorted({**cfg.to_dict(), "name": None}.items()))
        same_as = first.setdefault(key, arm)
        if same_as != arm:
            same[arm] = same_as
    return same


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of key: value; got {type(values).__name__}")
    return values


def profile_path(config_path: str | Path, profile: str) -> Path:
    """Profiles live beside the ablation configs: <configs>/profiles/<profile>.yaml."""
    path = Path(config_path).parent / "profiles" / f"{profile}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"unknown profile {profile!r}; available: {', '.join(available) or 'none'}")
    return path


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`["lr=1e-3", "sampler=true"]` -> {"lr": 0.001, "sampler": True} (values parsed as YAML)."""
    values = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r} must look like key=value")
        values[key.strip()] = yaml.safe_load(text)
    return values


def load_config(path: str | Path, profile: str | None = None, overrides: list[str] | dict | None = None) -> RunConfig:
    """The ablation's YAML, then the profile's overrides, then the command line's."""
    values = load_yaml(path)
    values.setdefault("name", Path(path).stem)
    if profile and profile != "full":
        values.update(load_yaml(profile_path(path, profile)))
    if overrides:
        values.update(overrides if isinstance(overrides, dict) else parse_overrides(overrides))
    return from_dict(values, source=str(path))
