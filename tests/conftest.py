"""Shared fixtures: the real HAM10000 material (skipped when absent) and a small demo dataset."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("DERMABLATE_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
HAM = SHARED / "ham10000"

needs_ham = pytest.mark.skipif(
    not (HAM / "HAM10000_metadata.csv").is_file(),
    reason=f"real HAM10000 material not found under {HAM} (set DERMABLATE_SHARED to the shared folder)",
)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keep image caches of the test run out of the user's ~/.cache."""
    os.environ["DERMABLATE_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A small synthetic dataset with masks, built once per test session."""
    from core.data.demo import make_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    make_demo_dataset(root, n=240, seed=0, masks=True)
    return root


@pytest.fixture(scope="session")
def smoke_sweep(demo_root, tmp_path_factory) -> Path:
    """RESULTS/smoke: every ablation config trained with the smoke profile on the demo data,
    plus summary.csv, splits.csv and sweep.json, as a sweep writes them (no Ray)."""
    from tests.sweep_fixture import build_smoke_sweep

    return build_smoke_sweep(tmp_path_factory.mktemp("results") / "smoke", demo_root)


@pytest.fixture(scope="session")
def trained_run(demo_root, tmp_path_factory) -> tuple[Path, Path]:
    """A smoke-trained run folder of the baseline arm (genuine best.pt, metrics.json), and the
    checkpoint state of its last epoch saved as core saves last.pt and Ray saves state.pt."""
    import torch

    from core.config import load_config
    from core.training import fit
    from tests.sweep_fixture import CONFIGS

    out = tmp_path_factory.mktemp("trained") / "baseline"
    state = out.parent / "state.pt"
    fit(load_config(CONFIGS / "baseline.yaml", "smoke"), demo_root, out,
        on_epoch_end=lambda epoch, row, checkpoint: torch.save(checkpoint, state))
    return out, state
