"""The sweep's arms: one per ablation config file, and the step each may need first.

An arm exists because `ablations/configs/<arm>.yaml` exists: adding a config adds an arm to the
default sweep, unless core/arms.py lists it as beyond the study (those run only when named).
An arm that needs something made before it trains registers a pre-step in PRE_STEPS:
baseline_synth's cVAE. The trial runs it as a Ray task on one worker's resources, before
its Train run, so that the DDP ranks find the result in the cache instead of each making it.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core.arms import CONFIG_DIR, available, study_arms
from core.config import ConfigError, RunConfig, load_config
from core.cvae.store import ensure_cvae
from ray_jobs import storage

PreStep = Callable[[RunConfig, str], None]  # (the trial's resolved config, data root)


def cvae_pre_step(cfg: RunConfig, data_root: str) -> None:
    """baseline_synth: train (or find in the cache) the cVAE on the sweep's training split."""
    with storage.local_copy(cfg.splits_file) as splits_file:
        ensure_cvae(cfg, data_root, splits_file)


PRE_STEPS: dict[str, PreStep] = {"baseline_synth": cvae_pre_step}


def load_arms(names: list[str] | None, profile: str, overrides: dict,
              config_dir: Path = CONFIG_DIR) -> dict[str, RunConfig]:
    """Each named arm's config (the study's arms when `names` is empty) under a profile and overrides."""
    known = available(config_dir)
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        raise ConfigError(f"unknown arm(s) {', '.join(unknown)}; available: {', '.join(known)}")
    return {name: load_config(config_dir / f"{name}.yaml", profile, overrides)
            for name in names or study_arms(config_dir)}
