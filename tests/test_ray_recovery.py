"""Failures mid-sweep: a Train worker dies, then the driver dies; nothing is lost or done twice.

One scenario, run once for the module (Ray start-ups are the expensive part here): a
two-arm smoke sweep, one trial at a time. The first arm's worker is killed at epoch 2
(once, by ray_jobs.faults); Tune retries the trial and its Train run resumes from the
epoch-1 checkpoint. While the second arm trains, the driver is SIGKILLed; then
`run_all.py --resume` finishes the sweep without touching the first arm.
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

from ray_jobs.faults import KILL_AT_EPOCH, KILL_MARKER

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ARMS = ("baseline", "sampler")  # run in this order, one at a time
EPOCHS = 6  # long enough for the driver to be killed while the second arm trains


def run_all_command(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "ablations" / "run_all.py"), *args]


def reported(sweep: Path, arm: str) -> list[dict]:
    """The results Tune received from the arm's trial, in order, across its retries.

    Tune copies them to the sweep folder when it saves its experiment state (every few seconds).
    """
    results = list((sweep / "ray" / "tune").glob(f"{arm}_*/result.json"))
    lines = results[0].read_text().splitlines() if results else []
    return [json.loads(line) for line in lines if line.strip()]


def reported_epochs(sweep: Path, arm: str, after: float = 0) -> list[int]:
    return [r["epoch"] for r in reported(sweep, arm) if r["timestamp"] > after]


def wait_until(condition, process: subprocess.Popen, what: str, timeout: float = 400) -> None:
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
    env = {**os.environ, KILL_AT_EPOCH: "2", KILL_MARKER: str(marker)}
    log = (tmp / "first.log").open("w")
    first = subprocess.Popen(
        run_all_command(*common, "--data-root", str(demo_root), "--profile", "smoke", "--arms", *ARMS,
                        "--set", f"epochs={EPOCHS}", "--max-concurrent", "1"),
        env=env, stdout=log, stderr=subprocess.STDOUT)
    sweep = results / "sweep"
    try:
        wait_until((sweep / ARMS[0] / "metrics.json").exists, first, f"{ARMS[0]} finished")
        finished_arm = (sweep / ARMS[0] / "metrics.json").stat().st_mtime_ns
        wait_until(lambda: len(reported(sweep, ARMS[0])) >= EPOCHS, first, f"Tune state saved after {ARMS[0]}")
        wait_until(lambda: any((sweep / "ray" / "train").glob(f"{ARMS[1]}-*/checkpoint_manager_snapshot.json")),
                   first, f"a checkpoint of {ARMS[1]}")
        killed_at = time.time()
        first.send_signal(signal.SIGKILL)
        first.wait()
        second_arm_was_done = (sweep / ARMS[1] / "metrics.json").exists()
    finally:
        if first.poll() is None:
            first.kill()
        log.close()
    summary_before = pd.read_csv(sweep / "summary.csv")
    resumed = subprocess.run(run_all_command(*common, "--resume"), env=env, capture_output=True, text=True,
                             timeout=600)
    (tmp / "resume.log").write_text(resumed.stdout + resumed.stderr)
    return {"sweep": sweep, "marker": marker, "finished_arm_mtime": finished_arm, "resumed": resumed,
            "summary_before": summary_before, "killed_at": killed_at, "second_arm_was_done": second_arm_was_done}


def test_a_killed_worker_is_retried_from_its_last_checkpoint(interrupted):
    assert interrupted["marker"].exists()  # the worker really was killed at epoch 2
    # Reported: epoch 1, then (killed before epoch 2's report) epochs 2 and 3 from the
    # epoch-1 checkpoint. A restart from scratch would have reported epoch 1 twice.
    assert reported_epochs(interrupted["sweep"], ARMS[0]) == list(range(1, EPOCHS + 1))


def test_every_arm_has_one_history_row_per_epoch(interrupted):
    for arm in ARMS:
        history = pd.read_csv(interrupted["sweep"] / arm / "history.csv")
        assert history["epoch"].tolist() == list(range(1, EPOCHS + 1))


def test_the_driver_was_killed_mid_sweep(interrupted):
    assert not interrupted["second_arm_was_done"]
    statuses = dict(zip(interrupted["summary_before"]["arm"], interrupted["summary_before"]["status"]))
    assert statuses == {ARMS[0]: "finished", ARMS[1]: "running"}


def test_resume_finishes_every_arm(interrupted):
    assert interrupted["resumed"].returncode == 0, interrupted["resumed"].stdout[-3000:]
    summary = pd.read_csv(interrupted["sweep"] / "summary.csv")
    assert summary["status"].tolist() == ["finished", "finished"]
    record = json.loads((interrupted["sweep"] / "sweep.json").read_text())
    assert record["status"] == "finished" and len(record["runs"]) == 2


def test_resume_does_not_rerun_a_finished_arm(interrupted):
    sweep = interrupted["sweep"]
    assert (sweep / ARMS[0] / "metrics.json").stat().st_mtime_ns == interrupted["finished_arm_mtime"]
    assert reported_epochs(sweep, ARMS[0], after=interrupted["killed_at"]) == []


def test_the_resumed_arm_continued_from_its_checkpoint(interrupted):
    # After the resume its Train run went on from a checkpoint: epoch 1 is not trained again.
    epochs = reported_epochs(interrupted["sweep"], ARMS[1], after=interrupted["killed_at"])
    assert epochs == list(range(epochs[0], EPOCHS + 1)) and epochs[0] > 1
