"""Weights & Biases: Ray Tune's WandbLoggerCallback, with the resolved config and final figures (ray_jobs/trackers).

After a --resume a trial's run is continued online (its id is the trial's) and logged from
epoch 1 again: W&B keeps the steps it already had and drops the repeats.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pyarrow.fs
import wandb
from ray.air.constants import TRAINING_ITERATION
from ray.air.integrations.wandb import WandbLoggerCallback, _QueueItem
from ray.tune.experiment import Trial

from core import tracking
from ray_jobs.trackers import FollowsHistory, Trials


class WandbTracker(FollowsHistory, WandbLoggerCallback):
    def __init__(self, trials: Trials):
        # The init config is the trial's own choices (arm, sampled values): not every arm's config.
        # The run's id is the trial's: online, a --resume continues it.
        # Quiet: no history and summary per trial on the console when each run ends.
        super().__init__(trials, project=os.environ.get("WANDB_PROJECT", tracking.PROJECT), group=trials.sweep_name,
                         excludes=["arm_configs", "sweep"], resume="allow", settings=wandb.Settings(quiet=True))
        self._staged: str | None = None  # a folder for the files the logging actors have yet to read

    def log_epoch(self, trial: Trial, row: dict):
        # Each result's `config` updates the run's config: the resolved one, not Tune's trial config.
        result = {**row, "config": self.trials.params(trial), TRAINING_ITERATION: row["epoch"]}
        WandbLoggerCallback.log_trial_result(self, row["epoch"], trial, result)

    def log_trial_end(self, trial: Trial, failed: bool = False):
        self.log_history(trial)
        metrics = self.trials.finished(trial)
        if metrics and trial in self._trial_queues:
            WandbLoggerCallback.log_trial_result(self, 0, trial, {**tracking.final_figures(metrics),
                                                                  TRAINING_ITERATION: metrics["epochs_run"]})
            # The logging actor reads the folder later: it stays until the experiment ends.
            self._staged = self._staged or tempfile.mkdtemp(prefix="dermablate-wandb-")
            folder = self.trials.stage_files(trial, Path(self._staged) / trial.trial_id)
            self._trial_queues[trial].put((_QueueItem.CHECKPOINT, str(folder)))  # Ray's folder artifact
        super().log_trial_end(trial, failed)

    def on_experiment_end(self, trials, **info):
        super().on_experiment_end(trials, **info)  # waits for the logging actors to finish their runs
        # Tune's last upload of the trial folders came before that wait: upload the finished runs again.
        for trial in trials:
            local = Path(trial.local_path) / "wandb"
            if local.is_dir():
                pyarrow.fs.copy_files(str(local), f"{trial.path}/wandb",
                                      destination_filesystem=trial.storage.storage_filesystem)
        if self._staged:
            shutil.rmtree(self._staged, ignore_errors=True)
