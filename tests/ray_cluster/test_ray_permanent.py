"""In a real Ray sweep, an error no retry can fix is trained once: Tune's retries stop before training.

A probe (tests/ray_probes.py) makes the Train worker's `fit` fail with a DatasetError, as
a truncated image found mid-training would, and counts its calls. The sweep is the
sweep's own (`ray_jobs.sweep.run`): the baseline arm at the smoke profile, two retries.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.ray_probes import PROBE_DIR, patch_on_import, run_probed_sweep

pytestmark = pytest.mark.slow

PLANTED = "ISIC_0024306.jpg is truncated; run `python -m core.data check` (planted by the test)"


def install_probes() -> None:
    if os.environ.get(PROBE_DIR):
        patch_on_import("ray_jobs.trainable", probe)


def probe(trainable) -> None:
    from core.data.metadata import DatasetError

    def failing_fit(*args, **kwargs):
        with (Path(os.environ[PROBE_DIR]) / "fit-calls").open("a") as f:
            f.write("1\n")
        raise DatasetError(PLANTED)

    trainable.fit = failing_fit


@pytest.fixture(scope="module")
def failed_sweep(ray_cluster, demo_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("permanent")
    probes = tmp / "probes"
    probes.mkdir()
    status, summary, _ = run_probed_sweep(ray_cluster.address, install_probes, probes, results=str(tmp / "results"),
                                          profile="smoke", data_root=str(demo_root), arms=["baseline"], retries=2)
    tune_error = next((tmp / "results" / "ray" / "tune").glob("baseline_*/error.txt")).read_text()
    return {"status": status, "summary": summary, "calls": (probes / "fit-calls").read_text().count("1"),
            "arm_dir": tmp / "results" / "baseline", "tune_error": tune_error}


def test_the_error_is_trained_once_not_three_times(failed_sweep):
    assert failed_sweep["calls"] == 1
    # Tune did retry (its last error is the retry's), and the retry raised before training.
    assert f"PermanentFailure: DatasetError: {PLANTED} (not retried" in failed_sweep["tune_error"]


def test_the_summary_shows_the_arm_failed_with_the_error(failed_sweep):
    assert failed_sweep["status"] == "failed"
    row = failed_sweep["summary"].set_index("arm").loc["baseline"]
    assert row["status"] == "failed" and row["error"] == f"DatasetError: {PLANTED}"
    assert json.loads((failed_sweep["arm_dir"] / "failed.json").read_text())["error"] == "DatasetError"
