"""A real `ray start --head` on 127.0.0.1, a smoke sweep submitted to it as a Ray Job, `ray stop`.

The sweep draws two hyperparameter samples of one arm, so it also shows the per-arm
ASHA scheduler and the best sample landing in the arm's folder.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ADDRESS = "http://127.0.0.1:8265"


@pytest.fixture(scope="module")
def ray_env():
    """`ray start --head` with auth off (loopback only); `ray stop` after the module."""
    # The job's `python` is the one on the PATH of `ray start`: this venv's.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([BIN / "ray", "start", "--head", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                    "--include-dashboard=true", "--dashboard-host=127.0.0.1", "--disable-usage-stats"],
                   env=env, check=True, capture_output=True, timeout=120)
    yield env
    subprocess.run([BIN / "ray", "stop", "--force"], env=env, capture_output=True, timeout=120)


def submit(env, *run_all_args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ray_jobs.submit", "--address", ADDRESS, "--no-pip", "--",
                           *run_all_args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def job(ray_env, demo_root, tmp_path_factory):
    results = tmp_path_factory.mktemp("job") / "results"
    done = submit(ray_env, "--data-root", str(demo_root), "--profile", "smoke", "--arms", "sampler",
                  "--samples", "2", "--results", str(results), "--name", "job")
    return done, results / "job"


def test_the_job_succeeds_and_its_log_is_followed(job):
    done, _ = job
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "submitted raysubmit_" in done.stdout
    assert "sweep finished; results in" in done.stdout  # run_all's own output, from the job's log
    assert "SUCCEEDED" in done.stdout


def test_the_job_writes_the_results_contract(job):
    _, sweep = job
    record = json.loads((sweep / "sweep.json").read_text())
    assert record["status"] == "finished" and record["profile"] == "smoke" and record["samples"] == 2
    assert record["synthetic_data"] and record["git_commit"]  # the job's copy has no .git: submit passes it
    summary = pd.read_csv(sweep / "summary.csv")
    assert summary[["arm", "status"]].values.tolist() == [["sampler", "finished"]]
    for name in ("config.json", "history.csv", "metrics.json", "predictions_val.csv", "predictions_test.csv",
                 "best.pt"):
        assert (sweep / "sampler" / name).is_file()


def test_the_other_sample_stays_under_samples(job):
    _, sweep = job
    (other,) = (sweep / "sampler" / "samples").iterdir()
    assert (other / "config.json").is_file()
    configs = [json.loads((d / "config.json").read_text()) for d in (sweep / "sampler", other)]
    assert configs[0]["lr"] != configs[1]["lr"]  # two draws from the search space


def test_a_failing_job_returns_its_exit_status(ray_env, tmp_path):
    done = submit(ray_env, "--profile", "tiny", "--results", str(tmp_path / "results"))
    assert done.returncode == 2
    assert "unknown profile 'tiny'" in done.stdout and "FAILED" in done.stdout
