"""TensorBoard: Ray Tune's TBXLoggerCallback, with the config as text and the final figures (ray_jobs/trackers)."""
from __future__ import annotations

from ray.air.constants import TRAINING_ITERATION
from ray.tune.experiment import Trial
from ray.tune.logger import TBXLoggerCallback

from core import tracking
from ray_jobs.trackers import Trials, step


class TensorBoardTracker(TBXLoggerCallback):
    def __init__(self, trials: Trials):
        super().__init__()
        self.trials = trials

    def log_trial_start(self, trial: Trial):
        super().log_trial_start(trial)
        config = "\n".join(f"    {k}: {v}" for k, v in self.trials.params(trial).items())
        self._trial_writer[trial].add_text("config", config)

    def log_trial_result(self, iteration: int, trial: Trial, result: dict):
        super().log_trial_result(iteration, trial, {**result, TRAINING_ITERATION: step(result)})

    def log_trial_end(self, trial: Trial, failed: bool = False):
        metrics = self.trials.finished(trial)
        if metrics and trial in self._trial_writer:
            # As one more result: scalars at the last epoch, and the HPARAMS tab's figures.
            super().log_trial_result(0, trial, {**tracking.final_figures(metrics),
                                                TRAINING_ITERATION: metrics["epochs_run"]})
        super().log_trial_end(trial, failed)
