"""summary.csv while the sweep runs, and each arm's folder once all its samples are done.

`SummaryCallback` is a Tune callback in the driver. When a trial starts, ends or fails,
it rewrites summary.csv (one row per arm: pending, running, finished or failed, a failed
one with its error when no retry could fix it: ray_jobs/permanent.py). When
every sample of an arm has ended, it settles the arm: with several samples, the best
finished one (on the arm's own select_on, by core's selection key) moves from
`<arm>/samples/<trial_id>/` into `<arm>/`, the others stay under `<arm>/samples/`. With
several seeds an arm is finished once every seed's trial has ended. An arm that repeats an
earlier arm's run (`same_run_as`: on this profile their configs differ in name only) has no
trials of its own: once that arm has finished, its folder becomes a copy of that arm's.
"""
from __future__ import annotations

import tempfile

import pandas as pd
from ray import tune
from ray.tune.experiment import Trial

from core import results
from core.evaluation import selection_key
from ray_jobs import storage
from ray_jobs.permanent import recorded_error


def ended(trial: Trial) -> bool:
    """Finished, stopped by the scheduler, or failed for good; not just cleaned up at an interrupt."""
    return trial.status == Trial.ERROR or bool(trial.last_result.get("done"))


def all_ended(trials: list[Trial], expected: int) -> bool:
    """Every one of an arm's `expected` trials has ended: Tune makes trials as slots free up, so
    those made so far having ended is not enough."""
    return len(trials) >= max(expected, 1) and all(ended(t) for t in trials)


def settle(arm_dir: str, select_on: str) -> None:
    """Move the best finished sample of an arm into the arm's folder (once)."""
    if storage.exists(storage.join(arm_dir, results.METRICS)):
        return
    samples = storage.join(arm_dir, results.SAMPLES_DIR)
    scored = []
    for name in storage.list_dirs(samples):
        metrics_file = storage.join(samples, name, results.METRICS)
        if storage.exists(metrics_file):
            val = storage.read_json(metrics_file)["val"]
            scored.append((selection_key(val, select_on), name))
    if scored:
        storage.move_dir(storage.join(samples, max(scored)[1]), arm_dir)


def arm_row(arm: str, arm_dir: str, trials: list[Trial], running: Trial | None, seeds: int = 1) -> dict:
    done = all_ended(trials, seeds)
    status = ("failed" if done
              else "running" if any(t is running or t.status == Trial.RUNNING for t in trials) else "pending")
    metrics = read_metrics(arm_dir)
    if metrics and (seeds == 1 or done):
        status = "finished"
    seed_dirs = storage.join(arm_dir, results.SEEDS_DIR)
    seed_metrics = [read_metrics(storage.join(seed_dirs, name)) for name in storage.list_dirs(seed_dirs)]
    wall = sum(t.last_result.get("time_total_s", 0.0) for t in trials)
    row = results.summary_row(arm, status, metrics, [m for m in seed_metrics if m], round(wall, 1))
    if status == "failed":
        row["error"] = recorded_error(arm_dir)
    return row


def read_metrics(run_dir: str) -> dict | None:
    """A run folder's metrics.json on any storage (a path or a URI); None while it has none."""
    path = storage.join(run_dir, results.METRICS)
    return storage.read_json(path) if storage.exists(path) else None


def read_summary(sweep_dir: str) -> pd.DataFrame:
    return storage.read_csv(storage.join(sweep_dir, results.SUMMARY))


def copy_run(src_arm_dir: str, dest_arm_dir: str) -> None:
    """An arm's folder, its seeds' and samples' included, as a copy of another finished arm's (once)."""
    if not storage.exists(storage.join(dest_arm_dir, results.METRICS)):
        # metrics.json marks a run folder finished: each lands after the rest of its folder.
        storage.copy_tree(src_arm_dir, dest_arm_dir, last=results.METRICS)


class SummaryCallback(tune.Callback):
    def __init__(self, results: str, select_on: dict[str, str], samples: int, seeds: int = 1,
                 same_run_as: dict[str, str] | None = None):
        self.results, self.select_on, self.samples, self.seeds = results, select_on, samples, seeds
        self.same_run_as = same_run_as or {}  # {arm: the arm whose trials it shares}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.update(trials, running=trial)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.update(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.update(trials)

    def on_experiment_end(self, trials, **info):
        self.update(trials)

    def update(self, trials: list[Trial], running: Trial | None = None) -> None:
        rows = []
        for arm, select_on in self.select_on.items():
            arm_dir, trained_as = storage.join(self.results, arm), self.same_run_as.get(arm, arm)
            mine = [t for t in trials if t.config["arm"] == trained_as]
            done = all_ended(mine, self.samples * self.seeds)
            if self.samples > 1 and done:
                settle(arm_dir, select_on)
            source = storage.join(self.results, trained_as)
            if trained_as != arm and done and read_metrics(source):
                copy_run(source, arm_dir)
            rows.append(arm_row(arm, arm_dir, mine, running, self.seeds))
        with tempfile.TemporaryDirectory() as local:
            storage.put_file(results.write_summary(local, rows), storage.join(self.results, results.SUMMARY))
