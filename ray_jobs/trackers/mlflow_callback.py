"""MLflow: Ray Tune's MLflowLoggerCallback, one run per trial continued by --resume (ray_jobs/trackers).

MLflow's store is written at once, not with Tune's saved state: a run continued after a
--resume goes on after the last epoch it holds, its latest `epoch` metric.

The store is resolved once, when the callback is made: --tracking-uri, else
$MLFLOW_TRACKING_URI, else MLflow's default. Ray's own setup passes its tracking URI to
`mlflow.set_tracking_uri`, and None there unsets $MLFLOW_TRACKING_URI: Ray would then start
runs in the default store while this callback's client logs to the variable's.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.tune.experiment import Trial

from core import tracking
from ray_jobs.trackers import FollowsHistory, Trials


class MLflowTracker(FollowsHistory, MLflowLoggerCallback):
    def __init__(self, trials: Trials, tracking_uri: str | None):
        import mlflow

        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or f"{tracking.PROJECT}-{trials.sweep_name}"
        super().__init__(trials, tracking_uri or mlflow.get_tracking_uri(), experiment_name=experiment,
                         tags={"sweep": trials.results})

    def setup(self, *args, **kwargs):
        import mlflow

        # The experiment first, its files beside a SQLite store; Ray's setup then finds it.
        self.mlflow_util.setup_mlflow(tracking_uri=self.tracking_uri, experiment_name=self.experiment_name,
                                      artifact_location=tracking.artifact_location(self.tracking_uri))
        super().setup(*args, **kwargs)
        self.client = mlflow.MlflowClient(self.tracking_uri)

    def log_trial_start(self, trial: Trial):
        if trial in self._trial_runs:  # a retry of the trial in this driver
            return
        found = self.client.search_runs(
            [self.mlflow_util.experiment_id],
            f"tags.trial_id = '{trial.trial_id}' and tags.sweep = '{self.trials.results}'", max_results=1)
        if found:  # started before a --resume: continue it
            self._trial_runs[trial] = found[0].info.run_id
            self.logged[trial] = int(found[0].data.metrics.get("epoch", 0))
            return
        run = self.mlflow_util.start_run(run_name=str(trial), tags={**self.tags, **self.trials.tags(trial)})
        self._trial_runs[trial] = run.info.run_id
        self._log_batch(trial, params=self.trials.params(trial))

    def log_epoch(self, trial: Trial, row: dict):
        self._log_batch(trial, metrics=tracking.epoch_metrics(row), at=row["epoch"])

    def log_trial_end(self, trial: Trial, failed: bool = False):
        self.log_history(trial)
        metrics = self.trials.finished(trial)
        if metrics:
            self._log_batch(trial, metrics=tracking.final_figures(metrics), at=metrics["epochs_run"])
            with tempfile.TemporaryDirectory() as folder:
                self.client.log_artifacts(self._trial_runs[trial], str(self.trials.stage_files(trial, Path(folder))))
        super().log_trial_end(trial, failed)

    def _log_batch(self, trial: Trial, params: dict | None = None, metrics: dict | None = None, at: int = 0):
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        self.client.log_batch(self._trial_runs[trial],
                              metrics=[Metric(k, v, now, at) for k, v in (metrics or {}).items()],
                              params=[Param(k, str(v)) for k, v in (params or {}).items()])
