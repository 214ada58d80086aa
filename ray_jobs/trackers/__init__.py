"""The sweep's experiment trackers: Ray Tune's own logger callbacks, one tracker run per trial.

`python ablations/run_all.py --tracker tensorboard|mlflow|wandb` (repeatable) adds Tune's
`TBXLoggerCallback`, `MLflowLoggerCallback` or `WandbLoggerCallback` to the Tuner, each
subclassed in this package's modules (imported only when asked for: Ray's MLflow and W&B
integrations import their library). They run in the driver. A trial's run is named after
its arm (and its sample or seed: `Trials.name`, also Tune's trial name), holds the trial's
resolved RunConfig as parameters and every epoch at step = epoch, and, when the trial ends,
the final test figures and the key files of its run folder (core/tracking.py).

Every epoch a tracker logs is a row of the trial's history.csv, the one record of a run's
progress (`FollowsHistory`); a Tune result only says that the record has grown. So a run
that finished after the driver last saved Tune's state, its driver then killed, needs no
reports on --resume: its trial's end logs the epochs its tracker run lacks.
What each subclass adds to Ray's callback:

- TensorBoard: the config as text, the final figures as scalars and in the HPARAMS tab
  against the trial's sampled parameters. Event files: RESULTS/SWEEP/ray/tune/<trial>/.
  Each new writer (a retry, a --resume) logs the run's epochs from the first, and opens
  with purge_step=1, so TensorBoard drops the copies an earlier writer left.
- MLflow: one experiment per sweep (`dermablate-<sweep name>`); runs tagged with arm,
  trial and sweep, so that a --resume continues each trial's run after the last epoch it
  holds (its latest `epoch` metric); params and metrics
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

from ray.tune import Callback
from ray.tune.experiment import Trial

from core import results, tracking
from core.config import ConfigError
from ray_jobs import storage
from ray_jobs.summary import read_metrics
from ray_jobs.trainable import run_folder, trial_config

LIBRARIES = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}  # what each callback imports
# Each callback's module, imported only when asked for: Ray's MLflow and W&B integrations import their library.
CALLBACKS = {"tensorboard": "tensorboard_callback.TensorBoardTracker", "mlflow": "mlflow_callback.MLflowTracker",
             "wandb": "wandb_callback.WandbTracker"}


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

    def history(self, trial: Trial) -> list[dict]:
        """The rows of the trial's history.csv so far (none before its first epoch)."""
        path = storage.join(self.run_dir(trial), results.HISTORY)
        if not storage.exists(path):
            return []
        return storage.read_csv(path).to_dict("records")

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


class FollowsHistory:
    """The trackers' common part, first among each one's bases: a trial's epochs are logged from
    its history.csv, each once, after the last one its tracker run holds (`logged`)."""

    def __init__(self, trials: Trials, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.trials = trials
        self.logged: dict[Trial, int] = {}  # the last epoch each trial's tracker run holds

    def log_trial_result(self, iteration: int, trial: Trial, result: dict):
        self.log_history(trial, upto=result.get("epoch"))

    def log_history(self, trial: Trial, upto: int | None = None) -> None:
        """Log the epochs after the last one logged, up to `upto` (the epoch Tune just received;
        None: all of them). Not past it: a retry goes on from that epoch's checkpoint, so an epoch
        written after it may be trained again."""
        for row in self.trials.history(trial):
            epoch = int(row["epoch"])
            if epoch > self.logged.get(trial, 0) and (upto is None or epoch <= upto):
                self.log_epoch(trial, {**row, "epoch": epoch})
                self.logged[trial] = epoch

    def log_epoch(self, trial: Trial, row: dict) -> None:
        raise NotImplementedError


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
