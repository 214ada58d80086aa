"""Which arms exist: one per config file in ablations/configs/, the source study's eight by default.

Importing this needs nothing beyond the standard library, so the GPU study script can list
the arms on a machine without Ray, and the sweep (ray_jobs) reads the list from below.
"""
from __future__ import annotations

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[1] / "ablations" / "configs"
BEYOND_THE_STUDY = ("best_single",)  # configs that are not the source study's arms: `--arms best_single`


def available(config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in config_dir.glob("*.yaml"))


def study_arms(config_dir: Path = CONFIG_DIR) -> list[str]:
    """The default sweep: every config but those beyond the study."""
    return [name for name in available(config_dir) if name not in BEYOND_THE_STUDY]

