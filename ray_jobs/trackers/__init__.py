"""The sweep's experiment trackers: Ray Tune's own logger callbacks, one tracker run per trial.

`python ablations/run_all.py --tracker tensorboard|mlflow|wandb` (repeatable) adds Tune's
`TBXLoggerCallback`, `MLflowLoggerCallback` or `WandbLoggerCallback` to the Tuner, each
subclassed in this package's modules (imported only when asked for: Ray's MLflow and W&B
integrations import their library). They run in the driver. A trial's run is named after
its arm (and its sample or seed: `Trials.name`, also Tune's trial name), holds the trial's
resolved RunConfig as parameters and every epoch's result at step = epoch, and, when the
trial ends, the final test figures and the key files of its run folder (core/tracking.py).
What each subclass adds to Ray's callback:

- TensorBoard: the config as text, the final figures as scalars and in the HPARAMS tab
  against the trial's sampled parameters. Event files: RESULTS/SWEEP/ray/tune/<trial>/.
- MLflow: one experiment per sweep (`dermablate-<sweep name>`); runs tagged with arm,
  trial and sweep, so that a --resume continues each trial's run; params and metrics
  written in one batch per result (Ray writes each value in its own transaction: 40x
  slower on a SQLite store, measured); a SQLite store's files beside it (mlruns/).
- W&B: project $WANDB_PROJECT or dermablate, group = the sweep's name; the key files as
  the artifact Ray makes of a folder (`checkpoint_<run name>`). WANDB_MODE=offline keeps
  the runs on disk, in RESULTS/SWEEP/ray/tune/<trial>/wandb/.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from ray.air.constants import TRAINING_ITERATION
from ray.tune import Callback
from ray.tune.experiment import Trial

from core import tracking
from core.config import ConfigError
from ray_jobs import storage
from ray_jobs.summary import read_metrics
from ray_jobs.trainable import run_folder, trial_config

LIBRARIES = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}  # what each callback imports
# Each callback's module, imported only when asked for: Ray's MLflow and W&B integrations import their library.
CALLBACKS = {"tensorboard": "tensorboard_callback.TensorBoardTracker", "mlflow": "mlflow_callback.MLflowTracker",
             "wandb": "wandb_callback.WandbTracker"}
NOT_METRICS = ("pid", "timestamp")  # numbers in every Tune result that are not figures of the run


@dataclass
class Trials:
    """What the trackers need to know of a sweep's trials: names, configs, run folders."""

    results: str  # the sweep folder
    samples: int = 1
    seeds: int = 1

    @property
    def sweep_name(self) -> str:
        return self.results.rstrip("/").rsplit("/", 1)[-1]

    def name(self, trial: Trial) -> str:
        """The trial's name in Tune's table and each tracker: baseline, sampler-sample-<trial id>, baseline-seed43."""
        seed = trial_config(trial.config).seed if self.seeds > 1 else None
        return tracking.run_name(trial.config["arm"], sample=trial.trial_id if self.samples > 1 else None, seed=seed)

    def params(self, trial: Trial) -> dict:
        """The trial's resolved RunConfig (its arm's, with its sampled values and seed)."""
        return trial_config(trial.config).to_dict()

    def tags(self, trial: Trial) -> dict:
        seed = trial_config(trial.config).seed
        return {"arm": trial.config["arm"], "trial_id": trial.trial_id, "seed": str(seed), "sweep": self.results}

    def run_dir(self, trial: Trial) -> str:
        arm, seed = trial.config["arm"], trial_config(trial.config).seed
        return run_folder(storage.join(self.results, arm), trial.trial_id, self.samples,
                          trial.config.get("seed_offset", 0), seed)

    def finished(self, trial: Trial) -> dict | None:
        """The trial's metrics.json, None if it wrote none (failed, or stopped early by ASHA)."""
        return read_metrics(self.run_dir(trial))

    def stage_files(self, trial: Trial, folder: Path) -> Path:
        """Copy the key files of the trial's run folder (on any storage) into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        run = self.run_dir(trial)
        for name in tracking.KEY_FILES:
            if storage.exists(storage.join(run, name)):
                with storage.local_copy(storage.join(run, name)) as path:
                    shutil.copy(path, folder / name)
        return folder


def step(result: dict) -> int:
    """The step a tracker logs a result at: its epoch (Tune's training_iteration restarts after a --resume)."""
    return int(result.get("epoch") or result[TRAINING_ITERATION])


def callback_class(tracker: str) -> type[Callback]:
    module, name = CALLBACKS[tracker].split(".")
    return getattr(import_module(f"{__name__}.{module}"), name)


def check(trackers: list[str]) -> None:
    """Before anything runs: each tracker's library is installed and W&B can log (an API key, or WANDB_MODE)."""
    for tracker in trackers:
        tracking.require(tracker, LIBRARIES[tracker])
    if "wandb" in trackers:
        try:
            callback_class("wandb")(Trials("")).setup()  # Ray's own check of the API key and project
        except ValueError as e:
            raise ConfigError(f"--tracker wandb: {e}; or set WANDB_MODE=offline to keep the runs on disk") from None


def callbacks(trials: Trials, trackers: list[str], tracking_uri: str | None) -> list[Callback]:
    """One Tune callback per tracker asked for."""
    made = []
    for tracker in dict.fromkeys(trackers):
        cls = callback_class(tracker)
        made.append(cls(trials, tracking_uri) if tracker == "mlflow" else cls(trials))
    return made
