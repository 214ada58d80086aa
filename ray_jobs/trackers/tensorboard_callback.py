"""TensorBoard: Ray Tune's TBXLoggerCallback, with the config as text and the final figures (ray_jobs/trackers)."""
from __future__ import annotations

import functools

from ray.air.constants import TRAINING_ITERATION
from ray.tune.experiment import Trial
from ray.tune.logger import TBXLoggerCallback

from core import tracking
from ray_jobs.trackers import FollowsHistory, Trials


class TensorBoardTracker(FollowsHistory, TBXLoggerCallback):
    def __init__(self, trials: Trials):
        super().__init__(trials)
        # Each writer a trial gets logs its epochs from the first; TensorBoard drops the steps an
        # earlier writer (before a retry or a --resume) left, from the purge step on.
        self._summary_writer_cls = functools.partial(self._summary_writer_cls, purge_step=1)

    def log_trial_start(self, trial: Trial):
        super().log_trial_start(trial)
        self.logged[trial] = 0
        config = "\n".join(f"    {k}: {v}" for k, v in self.trials.params(trial).items())
        self._trial_writer[trial].add_text("config", config)

    def log_epoch(self, trial: Trial, row: dict):
        TBXLoggerCallback.log_trial_result(self, row["epoch"], trial, {**row, TRAINING_ITERATION: row["epoch"]})

    def log_trial_end(self, trial: Trial, failed: bool = False):
        self.log_history(trial)
        metrics = self.trials.finished(trial)
        if metrics and trial in self._trial_writer:
            # As one more result: scalars at the last epoch, and the HPARAMS tab's figures.
            TBXLoggerCallback.log_trial_result(self, 0, trial, {**tracking.final_figures(metrics),
                                                                TRAINING_ITERATION: metrics["epochs_run"]})
        super().log_trial_end(trial, failed)
