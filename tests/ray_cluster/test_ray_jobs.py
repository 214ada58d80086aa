"""Smoke sweeps submitted as Ray Jobs to this folder's cluster (conftest.py), through its dashboard.

The first sweep draws two hyperparameter samples of one arm, so it also shows the per-arm
ASHA scheduler and the best sample landing in the arm's folder; the second trains one arm
with two training seeds. The first logs to MLflow, the second to W&B (offline): one run
per sample or seed, named so.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core.tracking import final_figures
from dashboards.reporting import build_report
from tests import tracker_stores as stores

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def submit(cluster, *run_all_args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ray_jobs.submit", "--address", cluster.dashboard, "--no-pip", "--",
                           *run_all_args], cwd=REPO, env={**cluster.env, **(env or {})}, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def job(ray_cluster, demo_root, tmp_path_factory):
    results = tmp_path_factory.mktemp("job") / "results"
    # MLflow's own variable names the store (the recovery test's sweep names it with --tracking-uri).
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{results.parent / 'mlflow.db'}"}
    done = submit(ray_cluster, "--data-root", str(demo_root), "--profile", "smoke", "--arms", "sampler",
                  "--samples", "2", "--results", str(results), "--name", "job", "--tracker", "mlflow", env=env)
    return done, results / "job"


def test_the_job_succeeds_and_its_log_is_followed(job):
    done, _ = job
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "submitted raysubmit_" in done.stdout
    assert "sweep finished; results in" in done.stdout  # run_all's own output, from the job's log
    assert "SUCCEEDED" in done.stdout


def test_the_console_shows_each_trials_status_and_selection_metric_not_trains_checkpoint_lines(job):
    done, _ = job
    header = next(line for line in done.stdout.splitlines() if "| Trial name" in line and "selects on" in line)
    assert [c.strip() for c in header.strip("|").split("|")][:2] == ["Trial name", "status"]
    assert any("| TERMINATED |" in line and "| val_macro_f1 |" in line for line in done.stdout.splitlines())
    assert "Checkpoint successfully created" not in done.stdout and "Reporting training result" not in done.stdout


def test_the_job_writes_the_results_contract(job):
    _, sweep = job
    record = json.loads((sweep / "sweep.json").read_text())
    assert record["status"] == "finished" and record["profile"] == "smoke" and record["samples"] == 2
    assert record["synthetic_data"] and record["git_commit"]  # the job's copy has no .git: submit passes it
    assert record["ended"] and record["runs"][-1]["ended"] == record["ended"] >= record["started"]
    summary = pd.read_csv(sweep / "summary.csv")
    assert summary[["arm", "status"]].values.tolist() == [["sampler", "finished"]]
    for name in ("config.json", "history.csv", "metrics.json", "predictions_val.csv", "predictions_test.csv",
                 "best.pt"):
        assert (sweep / "sampler" / name).is_file()


def test_the_report_of_a_real_sweep_shows_when_it_started_and_ended(job, tmp_path):
    _, sweep = job
    record = json.loads((sweep / "sweep.json").read_text())
    text = build_report(sweep, tmp_path, gradcam_examples=0).read_text()
    assert f"- **started**: `{record['started']}`" in text and f"- **ended**: `{record['ended']}`" in text


def test_the_other_sample_stays_under_samples(job):
    _, sweep = job
    (other,) = (sweep / "sampler" / "samples").iterdir()
    assert (other / "config.json").is_file()
    configs = [json.loads((d / "config.json").read_text()) for d in (sweep / "sampler", other)]
    assert configs[0]["lr"] != configs[1]["lr"]  # two draws from the search space


def test_mlflow_has_a_run_per_sample_with_its_sampled_config_and_final_figures(job):
    _, sweep = job
    uri = f"sqlite:///{sweep.parents[1] / 'mlflow.db'}"
    runs = stores.mlflow_runs(uri, "dermablate-job").set_index("tags.trial_id")
    (other,) = (sweep / "sampler" / "samples").iterdir()
    best = json.loads((sweep / "sampler" / "config.json").read_text())
    best_trial = next(t for t in runs.index if t != other.name)  # the other run folder is named by its trial id
    assert sorted(runs.index) == sorted([other.name, best_trial])
    for trial_id, run_dir in ((best_trial, sweep / "sampler"), (other.name, other)):
        run = runs.loc[trial_id]
        assert run["tags.mlflow.runName"] == f"sampler-sample-{trial_id}" and run["status"] == "FINISHED"
        config = json.loads((run_dir / "config.json").read_text())
        assert float(run["params.lr"]) == config["lr"]
        epochs = [step for step, _ in stores.mlflow_history(uri, run["run_id"], "epoch")]
        if epochs[-1] < config["epochs"]:
            # Stopped early by ASHA: Tune took no later epoch, and the run has no final figures. (Its Train
            # run may still have finished and written metrics.json: a smoke epoch is quicker than the stop.)
            assert pd.isna(run["metrics.test_acc"])
            continue
        figures = final_figures(json.loads((run_dir / "metrics.json").read_text()))
        assert {k: run[f"metrics.{k}"] for k in figures} == pytest.approx(figures)
    assert float(runs.loc[best_trial, "params.lr"]) == best["lr"]


@pytest.fixture(scope="module")
def seeded_submission(ray_cluster, demo_root, tmp_path_factory):
    """One arm, two training seeds, run quietly (-q): the sweep folder and the submit command's output."""
    results = tmp_path_factory.mktemp("seeds") / "results"
    done = submit(ray_cluster, "--data-root", str(demo_root), "--profile", "smoke", "--arms", "baseline",
                  "--seeds", "2", "--results", str(results), "--name", "seeds", "--tracker", "wandb", "-q")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return results / "seeds", done


@pytest.fixture(scope="module")
def seeded_job(seeded_submission):
    return seeded_submission[0]


def test_quiet_prints_the_summary_alone(seeded_submission):
    """-q: of run_all, the job's log holds the summary table and its closing lines; no Ray start-up line,
    Tune table, worker output or progress message. (Ray's job manager and raylet warnings stay.)"""
    _, done = seeded_submission
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["arm", "status", "seeds"])
    assert lines[header + 1].startswith("baseline finished")
    sweep = seeded_submission[0]
    assert [line.split(";")[0] for line in lines[header + 2:header + 6]] == [
        "SYNTHETIC demo data: these figures say nothing about HAM10000 or skin lesions.", "sweep finished",
        f"report: python -m dashboards.report --sweep {sweep} --out {sweep / 'report'}",
        f"dashboard: python -m dashboards --results {sweep.parent}"]
    for noise in ("== Status ==", "| Trial name", "RayTrainWorker", "epoch 1:", "image cache at", "arm(s) x",
                  "Ray cluster", "Ray instance", "GPU share"):
        assert noise not in done.stdout + done.stderr, noise


def test_each_seed_trains_the_same_split_with_its_own_seed(seeded_job):
    runs = [seeded_job / "baseline", seeded_job / "baseline" / "seeds" / "seed_1"]
    configs = [json.loads((run / "config.json").read_text()) for run in runs]
    assert [c["seed"] for c in configs] == [0, 1]
    assert configs[0] | {"seed": 1} == configs[1]  # nothing else differs
    splits = [pd.read_csv(run / "splits.csv") for run in runs]
    assert splits[0].equals(splits[1])
    predictions = [pd.read_csv(run / "predictions_test.csv") for run in runs]
    assert list(predictions[0]["image_id"]) == list(predictions[1]["image_id"])
    assert not predictions[0].equals(predictions[1])  # another seed, another model


def test_the_summary_gives_mean_and_std_over_the_seeds(seeded_job):
    row = pd.read_csv(seeded_job / "summary.csv").set_index("arm").loc["baseline"]
    assert row["status"] == "finished" and row["seeds"] == 2
    runs = [seeded_job / "baseline", seeded_job / "baseline" / "seeds" / "seed_1"]
    f1 = [json.loads((run / "metrics.json").read_text())["test"]["macro_f1"] for run in runs]
    assert row["test_macro_f1"] == pytest.approx(f1[0])  # the arm's own row is its first seed
    assert row["test_macro_f1_mean"] == pytest.approx(sum(f1) / 2)
    assert row["test_macro_f1_std"] == pytest.approx(abs(f1[0] - f1[1]) / 2 ** 0.5)
    assert json.loads((seeded_job / "sweep.json").read_text())["seeds"] == 2


def test_wandb_offline_writes_a_run_per_seed_with_its_config_epochs_and_final_figures(seeded_job):
    for seed, run_dir in ((0, seeded_job / "baseline"), (1, seeded_job / "baseline" / "seeds" / "seed_1")):
        (trial_dir,) = [d for d in (seeded_job / "ray" / "tune").glob("baseline_*")
                        if json.loads((d / "params.json").read_text()).get("seed_offset") == seed]
        run = stores.wandb_run(trial_dir / "wandb")
        assert run["name"] == f"baseline-seed{seed}" and run["exit_code"] == 0
        assert run["config"]["seed"] == seed and run["config"]["select_on"] == "val_macro_f1"
        history = pd.read_csv(run_dir / "history.csv")
        assert [run["history"][e]["val_acc"] for e in history["epoch"]] == pytest.approx(list(history["val_acc"]))
        figures = final_figures(json.loads((run_dir / "metrics.json").read_text()))
        assert {k: run["history"][len(history)][k] for k in figures} == pytest.approx(figures)
        assert run["artifacts"] == {f"checkpoint_baseline-seed{seed}": sorted(
            ["config.json", "history.csv", "metrics.json", "predictions_val.csv", "predictions_test.csv"])}


def test_a_failing_job_returns_its_exit_status(ray_cluster, tmp_path):
    done = submit(ray_cluster, "--profile", "tiny", "--results", str(tmp_path / "results"))
    assert done.returncode == 2
    assert "unknown profile 'tiny'" in done.stdout and "FAILED" in done.stdout
