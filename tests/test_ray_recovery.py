"""Failures mid-sweep: a Train worker dies, then the driver dies; nothing is lost or done twice.

One scenario, run once for the module (Ray start-ups are the expensive part here): the
eight-arm smoke sweep, two trials at a time. The first worker to finish epoch 2 is killed
(once, by ray_jobs.faults, which writes its arm into the marker); Tune retries the trial
and its Train run resumes from the epoch-1 checkpoint. Once that arm's reports are saved,
two arms have finished and an unfinished one has a checkpoint, the driver is SIGKILLed;
then `run_all.py --resume` finishes the sweep without touching the finished arms.

The sweep also logs to MLflow (a SQLite store) and TensorBoard, whose runs the resume
continues: at the end each arm has one finished MLflow run and its TensorBoard events.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from core.arms import study_arms
from core.config import same_runs
from core.tracking import final_figures
from ray_jobs.arms import load_arms
from ray_jobs.faults import KILL_AT_EPOCH, KILL_MARKER
from tests import tracker_stores as stores

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ARMS = study_arms()  # all eight
# long_mel_select's folder copies b2_mel_select's. (Not through ray_jobs.sweep: test_ray_lost_node's probes,
# imported with this module in Ray's workers, must be in place before ray_jobs.trainable is imported.)
TRAINED = [arm for arm in ARMS if arm not in same_runs(load_arms(None, "smoke", {}))]
EPOCHS = 4


def run_all_command(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "ablations" / "run_all.py"), *args]


def trial_dirs(sweep: Path, arm: str) -> list[Path]:
    """The arm's trial folder under ray/tune/: <arm>_<trial id> (`baseline_*` alone matches baseline_synth too)."""
    return [d for d in (sweep / "ray" / "tune").glob(f"{arm}_*_*") if d.name.rsplit("_", 2)[0] == arm]


def reported(sweep: Path, arm: str) -> list[dict]:
    """The results Tune received from the arm's trial, in order, across its retries.

    Tune copies them to the sweep folder when it saves its experiment state (every few seconds).
    """
    results = [d / "result.json" for d in trial_dirs(sweep, arm) if (d / "result.json").is_file()]
    lines = results[0].read_text().splitlines() if results else []
    return [json.loads(line) for line in lines if line.strip()]


def reported_epochs(sweep: Path, arm: str, after: float = 0) -> list[int]:
    return [r["epoch"] for r in reported(sweep, arm) if r["timestamp"] > after]


def finished(sweep: Path) -> list[str]:
    return [arm for arm in ARMS if (sweep / arm / "metrics.json").exists()]


def summarized_as_finished(sweep: Path) -> list[str]:
    """Arms the driver has recorded as finished in summary.csv (written after the trial ends)."""
    if not (sweep / "summary.csv").exists():
        return []
    summary = pd.read_csv(sweep / "summary.csv")
    return summary.loc[summary["status"] == "finished", "arm"].tolist()


def checkpointed(sweep: Path) -> list[str]:
    """Arms whose Train run has registered a checkpoint (its manager's snapshot names one)."""
    def registered(snapshot: Path) -> bool:
        try:
            return bool(json.loads(snapshot.read_text()).get("latest_checkpoint_result"))
        except ValueError:  # caught mid-write
            return False

    return [arm for arm in ARMS
            if any(registered(s) for s in (sweep / "ray" / "train").glob(f"{arm}-*/checkpoint_manager_snapshot.json"))]


def wait_until(condition, process: subprocess.Popen, what: str, timeout: float = 500) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the sweep ended (exit {process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def interrupted(demo_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recovery")
    results, marker = tmp / "results", tmp / "killed-once"
    common = ["--results", str(results), "--name", "sweep"]
    tracking_uri = f"sqlite:///{tmp / 'mlflow.db'}"
    env = {**os.environ, KILL_AT_EPOCH: "2", KILL_MARKER: str(marker)}
    log = (tmp / "first.log").open("w")
    first = subprocess.Popen(
        run_all_command(*common, "--data-root", str(demo_root), "--profile", "smoke", "--set", f"epochs={EPOCHS}",
                        "--max-concurrent", "2", "--tracker", "mlflow", "--tracker", "tensorboard",
                        "--tracking-uri", tracking_uri),
        env=env, stdout=log, stderr=subprocess.STDOUT)
    sweep = results / "sweep"
    try:
        wait_until(lambda: marker.exists() and marker.read_text(), first, "the injected worker failure")
        killed_arm = marker.read_text()
        # Its reports are read now: a restored sweep rewrites Tune's result files from its saved state.
        wait_until(lambda: len(reported(sweep, killed_arm)) >= EPOCHS, first, f"Tune state saved after {killed_arm}")
        killed_arm_reports = reported_epochs(sweep, killed_arm)
        wait_until(lambda: len(summarized_as_finished(sweep)) >= 2, first, "two arms finished")
        wait_until(lambda: set(checkpointed(sweep)) - set(finished(sweep)), first,
                   "a checkpoint of an unfinished arm")
        killed_at = time.time()
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
        log.close()
    done_before = {arm: (sweep / arm / "metrics.json").stat().st_mtime_ns for arm in finished(sweep)}
    checkpointed_before = set(checkpointed(sweep)) - set(done_before)
    summary_before = pd.read_csv(sweep / "summary.csv")
    resumed = subprocess.run(run_all_command(*common, "--resume"), env=env, capture_output=True, text=True,
                             timeout=900)
    (tmp / "resume.log").write_text(resumed.stdout + resumed.stderr)
    return {"sweep": sweep, "killed_arm": killed_arm, "killed_arm_reports": killed_arm_reports,
            "done_before": done_before, "resumed": resumed,
            "summary_before": summary_before, "killed_at": killed_at,
            "checkpointed_before": checkpointed_before, "tracking_uri": tracking_uri}


def test_a_killed_worker_is_retried_from_its_last_checkpoint(interrupted):
    assert interrupted["killed_arm"] in ARMS  # the worker really was killed at epoch 2
    # Reported: epoch 1, then (killed before epoch 2's report) epochs 2.. from the epoch-1
    # checkpoint. A restart from scratch would have reported epoch 1 twice.
    assert interrupted["killed_arm_reports"] == list(range(1, EPOCHS + 1))
    assert (interrupted["sweep"] / interrupted["killed_arm"] / "metrics.json").is_file()


def test_every_arm_has_one_history_row_per_epoch(interrupted):
    for arm in ARMS:
        history = pd.read_csv(interrupted["sweep"] / arm / "history.csv")
        assert history["epoch"].tolist() == list(range(1, EPOCHS + 1)), arm


def test_the_driver_was_killed_mid_sweep(interrupted):
    assert 2 <= len(interrupted["done_before"]) < len(ARMS)
    statuses = dict(zip(interrupted["summary_before"]["arm"], interrupted["summary_before"]["status"], strict=True))
    # An arm may have written metrics.json just before the kill, before the driver recorded it:
    # the summary may lag the folders, never lead them.
    recorded = {arm for arm, status in statuses.items() if status == "finished"}
    assert len(recorded) >= 2 and recorded <= set(interrupted["done_before"])
    assert {"running", "pending"} & set(statuses.values())


def test_resume_finishes_all_eight_arms(interrupted):
    assert interrupted["resumed"].returncode == 0, interrupted["resumed"].stdout[-3000:]
    summary = pd.read_csv(interrupted["sweep"] / "summary.csv")
    assert sorted(summary["arm"]) == sorted(ARMS) and len(ARMS) == 8
    assert set(summary["status"]) == {"finished"}
    record = json.loads((interrupted["sweep"] / "sweep.json").read_text())
    assert record["status"] == "finished" and len(record["runs"]) == 2


def test_resume_does_not_rerun_a_finished_arm(interrupted):
    sweep = interrupted["sweep"]
    for arm, mtime in interrupted["done_before"].items():
        assert (sweep / arm / "metrics.json").stat().st_mtime_ns == mtime, arm
        # An arm that finished after the driver last saved Tune's state reports nothing more: its
        # trackers log what they lack from its history.csv. Whatever a trial reports is history.csv's.
        late = [r for r in reported(sweep, arm) if r["timestamp"] > interrupted["killed_at"]]
        epochs = [r["epoch"] for r in late]
        assert epochs == [] or (epochs == list(range(epochs[0], EPOCHS + 1)) and epochs[0] > 1), arm
        history = pd.read_csv(sweep / arm / "history.csv").set_index("epoch")
        assert all(r["val_macro_f1"] == history.loc[r["epoch"], "val_macro_f1"] for r in late), arm


def test_interrupted_arms_continue_from_their_checkpoints(interrupted):
    # After the resume their Train runs went on from a checkpoint: epoch 1 is not trained again.
    assert interrupted["checkpointed_before"]
    for arm in interrupted["checkpointed_before"]:
        epochs = reported_epochs(interrupted["sweep"], arm, after=interrupted["killed_at"])
        # empty when its checkpoint was already the last epoch's: then it only evaluated
        assert epochs == [] or (epochs == list(range(epochs[0], EPOCHS + 1)) and epochs[0] > 1), arm


# ------------------------------------------------------------------------- the trackers, across the resume


def logged_epochs_match_history(logged: list[tuple[int, float]], history: pd.Series) -> bool:
    """Each epoch logged once, in order, with history.csv's value; the last one always (an epoch
    reported just as the driver was killed may be missing: the resume goes on after its checkpoint)."""
    steps = [step for step, _ in logged]
    return (steps == sorted(set(steps)) and steps[-1] == EPOCHS
            and all(value == pytest.approx(history[step - 1]) for step, value in logged))


def test_mlflow_has_one_finished_run_per_arm_with_its_config_epochs_and_final_figures(interrupted):
    sweep, uri = interrupted["sweep"], interrupted["tracking_uri"]
    runs = stores.mlflow_runs(uri, "dermablate-sweep")
    # One run per trial: the arms the driver was killed in continued theirs after the resume.
    assert sorted(runs["tags.mlflow.runName"]) == sorted(TRAINED) and len(runs) == 7
    assert set(runs["status"]) == {"FINISHED"}
    for _, run in runs.iterrows():
        arm = run["tags.mlflow.runName"]
        config = json.loads((sweep / arm / "config.json").read_text())
        assert {k: run[f"params.{k}"] for k in config} == {k: str(v) for k, v in config.items()}, arm
        figures = final_figures(json.loads((sweep / arm / "metrics.json").read_text()))
        assert {k: run[f"metrics.{k}"] for k in figures} == pytest.approx(figures), arm
        history = pd.read_csv(sweep / arm / "history.csv")
        assert logged_epochs_match_history(stores.mlflow_history(uri, run["run_id"], "val_macro_f1"),
                                           history["val_macro_f1"]), arm
        assert stores.mlflow_artifacts(uri, run["run_id"]) == sorted(
            ["config.json", "history.csv", "metrics.json", "predictions_val.csv", "predictions_test.csv"]), arm
    uninterrupted = set(interrupted["done_before"])
    for _, run in runs[runs["tags.mlflow.runName"].isin(uninterrupted)].iterrows():
        assert [s for s, _ in stores.mlflow_history(uri, run["run_id"], "epoch")] == list(range(1, EPOCHS + 1))


def test_tensorboard_reads_each_arms_epochs_and_final_figures(interrupted):
    sweep = interrupted["sweep"]
    for arm in TRAINED:
        (trial_dir,) = trial_dirs(sweep, arm)
        assert list(trial_dir.glob("events.out.tfevents.*")), arm
        scalars = stores.tensorboard_scalars(trial_dir)
        history = pd.read_csv(sweep / arm / "history.csv")
        # event files hold float32
        assert logged_epochs_match_history(scalars["ray/tune/val_macro_f1"], history["val_macro_f1"]), arm
        figures = final_figures(json.loads((sweep / arm / "metrics.json").read_text()))
        assert {k: scalars[f"ray/tune/{k}"][-1] for k in figures} == {
            k: (EPOCHS, pytest.approx(v)) for k, v in figures.items()}, arm
        assert f"    name: {arm}\n" in stores.tensorboard_text(trial_dir, "config/text_summary"), arm
