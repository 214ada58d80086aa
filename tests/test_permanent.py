"""An error no retry can fix is recorded by the trial's first attempt; its retries raise it again at once.

Without Ray: `run_trial` runs in this process, its training replaced by a stand-in that fails
as Ray Train's fit does (a WorkerGroupError holding the worker's exception).
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from ray.train import ControllerError, WorkerGroupError
from ray.tune.experiment import Trial

from core.checkpoints import UntrustedCheckpoint
from core.config import ConfigError
from core.data.metadata import DatasetError
from ray_jobs import permanent, trainable
from ray_jobs.arms import load_arms
from ray_jobs.packing import PackedOutOfMemory
from ray_jobs.summary import arm_row

SMOKE = load_arms(["baseline"], "smoke", {})["baseline"]


def from_workers(error: Exception) -> WorkerGroupError:
    return WorkerGroupError(f"rank 0: {error!r}", {0: error})


@pytest.mark.parametrize("error", [ConfigError("lr must be positive"), DatasetError("ISIC_1.jpg is truncated"),
                                   UntrustedCheckpoint("state.pt holds objects"), PackedOutOfMemory("share 0.5")])
def test_errors_no_retry_can_fix_are_found_inside_ray_trains_wrappers(error):
    assert permanent.permanent_cause(from_workers(error), SMOKE) is error
    assert permanent.permanent_cause(ControllerError(error), SMOKE) is error
    try:
        raise RuntimeError("the trial failed") from error
    except RuntimeError as chained:
        assert permanent.permanent_cause(chained, SMOKE) is error


def test_a_missing_weights_error_is_permanent_and_other_runtime_errors_are_not(tmp_path):
    missing = load_arms(["baseline"], "full", {"pretrained": str(tmp_path / "imagenet.pth")})["baseline"]
    weights_error = RuntimeError("weights file ... does not exist")
    assert permanent.permanent_cause(from_workers(weights_error), missing) is weights_error
    # The same kind of error where the weights are at hand: a lost node, a timeout; a retry may help.
    assert permanent.permanent_cause(from_workers(RuntimeError("gloo: connection reset")), SMOKE) is None
    assert permanent.permanent_cause(from_workers(OSError("No space left on device")), SMOKE) is None


class FailingTraining:
    """Stands in for the trial's pre-step and Train run: fails with `error`, as Ray Train's fit does."""

    def __init__(self):
        self.runs, self.error = 0, None

    def __call__(self, *args):
        self.runs += 1
        raise self.error


@pytest.fixture
def training(monkeypatch) -> FailingTraining:
    monkeypatch.setattr(trainable.ray.tune, "get_context", lambda: SimpleNamespace(get_trial_id=lambda: "t_00000"))
    fake = FailingTraining()
    monkeypatch.setattr(trainable, "train", fake)
    return fake


@pytest.fixture
def trial(tmp_path) -> dict:
    sweep = {"results": str(tmp_path), "data_root": str(tmp_path / "data"), "samples": 1, "workers": 1,
             "cpus_per_worker": 1, "gpus_per_worker": 0}
    return {"sweep": sweep, "arm": "baseline", "arm_configs": {"baseline": SMOKE.to_dict()}}


def test_a_retry_after_a_permanent_error_raises_it_again_without_training(training, trial, tmp_path):
    training.error = from_workers(DatasetError("ISIC_1.jpg is truncated; run `python -m core.data check`"))
    with pytest.raises(WorkerGroupError):
        trainable.run_trial(trial)
    assert json.loads((tmp_path / "baseline" / permanent.FAILED_FILE).read_text()) == {
        "error": "DatasetError", "message": "ISIC_1.jpg is truncated; run `python -m core.data check`"}
    with pytest.raises(permanent.PermanentFailure, match=r"^DatasetError: ISIC_1.jpg is truncated; .* \(not retried"):
        trainable.run_trial(trial)  # Tune's retry
    assert training.runs == 1


def test_a_retry_after_another_error_trains_again(training, trial, tmp_path):
    training.error = from_workers(RuntimeError("gloo: connection reset by peer"))
    for _ in range(2):
        with pytest.raises(WorkerGroupError):
            trainable.run_trial(trial)
    assert training.runs == 2
    assert not (tmp_path / "baseline" / permanent.FAILED_FILE).exists()


def test_the_summary_shows_the_error_of_a_failed_arm(tmp_path):
    arm_dir = tmp_path / "baseline"
    arm_dir.mkdir()
    (arm_dir / permanent.FAILED_FILE).write_text(json.dumps({"error": "ConfigError", "message": "bad lr"}))
    failed = SimpleNamespace(status=Trial.ERROR, last_result={}, config={"arm": "baseline"})
    row = arm_row("baseline", str(arm_dir), [failed], running=None)
    assert (row["status"], row["error"]) == ("failed", "ConfigError: bad lr")
    retrying = SimpleNamespace(status=Trial.PENDING, last_result={}, config={"arm": "baseline"})
    assert arm_row("baseline", str(arm_dir), [retrying], running=None)["error"] is None


def test_a_new_start_of_the_sweep_forgets_the_records(tmp_path):
    for folder in (tmp_path / "baseline", tmp_path / "sampler" / "seeds" / "seed_43"):
        folder.mkdir(parents=True)
        (folder / permanent.FAILED_FILE).write_text("{}")
    permanent.clear_records(str(tmp_path), ["baseline", "sampler", "b2_mel_select"])
    assert not list(tmp_path.rglob(permanent.FAILED_FILE))
