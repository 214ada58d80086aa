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


REFERENCE = "baseline"  # every arm is compared with it
# The pairs beside those with the reference that the study's design sets against each other, each
# differing in one design choice: (reference, arm, the choice the arm makes).
DESIGN_PAIRS = (
    ("b2_260_acc_select", "b2_260_mel_sampler",
     "at EfficientNet-B2 260 px, the melanoma recipe (weights, sampler, x2 melanoma, melanoma-recall selection)"),
    ("long_mel_select", "b2_mel_select", "the melanoma recipe on EfficientNet-B2 instead of 30 epochs of B0"),
)


def comparisons(arms: list[str], same_run_as: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(reference, arm) for every arm against REFERENCE and each DESIGN_PAIRS pair whose arms both ran.
    An arm that repeats another's run (`same_run_as`: the profile made their configs one) is left out."""
    repeats = set(same_run_as or {})
    present = [arm for arm in arms if arm not in repeats]
    pairs = [(REFERENCE, arm) for arm in present if arm != REFERENCE] if REFERENCE in present else []
    return pairs + [(a, b) for a, b, _ in DESIGN_PAIRS if a in present and b in present]
