"""Experiment trackers for one run: TensorBoard, MLflow and Weights & Biases, each through its own client.

    python -m core.train ... --tracker mlflow [--tracker tensorboard --tracker wandb] [--tracking-uri URI]

Each tracker gets one run, named after the arm: the resolved config as its parameters,
every epoch's history row (step = epoch), and at the end the final test figures
(`final_figures`) and the run folder's key files (`KEY_FILES`). Where they go:

- tensorboard: event files in RUN_DIR/tensorboard/ (`tensorboard --logdir RUN_DIR`)
- mlflow: --tracking-uri, else $MLFLOW_TRACKING_URI, else MLflow's default (mlflow.db and
  mlruns/ in the current folder; `mlflow ui` there); experiment $MLFLOW_EXPERIMENT_NAME or dermablate
- wandb: project $WANDB_PROJECT or dermablate, files in RUN_DIR/wandb/ (or $WANDB_DIR);
  WANDB_MODE=offline keeps the run on disk (`wandb sync` uploads it later)

The sweep does the same through Ray Tune's own callbacks (ray_jobs/trackers/), with the
names, figures and files defined here. The libraries are optional (requirements-tracking.txt):
asking for one that is not installed is a ConfigError that names the pip command.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

from core import results
from core.choices import TRACKERS
from core.config import ConfigError

REQUIREMENTS = Path(__file__).resolve().parents[1] / "requirements-tracking.txt"
PROJECT = "dermablate"  # the MLflow experiment and W&B project of single runs, unless the environment names one
# What a tracker keeps of a finished run; the weights (best.pt) stay in the run folder.
KEY_FILES = (results.CONFIG, results.HISTORY, results.METRICS, results.predictions_name("val"),
             results.predictions_name("test"), results.predictions_name("val", "_tta"),
             results.predictions_name("test", "_tta"))


def require(tracker: str, module: str | None = None):
    """Import the tracker's library (or `module`), or raise a ConfigError naming the pip command."""
    if tracker not in TRACKERS:
        raise ConfigError(f"unknown tracker {tracker!r}; choose from {', '.join(TRACKERS)}")
    name = module or tracker
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ConfigError(f"--tracker {tracker} needs the {name} package, which is not installed: "
                          f"{sys.executable} -m pip install -r {REQUIREMENTS}") from None


def check(trackers: list[str]) -> None:
    """Every tracker's library is installed, or a ConfigError names the pip command."""
    for tracker in trackers:
        require(tracker)


def run_name(arm: str, sample: str | None = None, seed: int | None = None) -> str:
    """A tracker run's name: the arm, then its sample (a trial id) or training seed when the sweep repeats it."""
    return arm + (f"-sample-{sample}" if sample else "") + (f"-seed{seed}" if seed is not None else "")


def final_figures(metrics: dict) -> dict[str, float]:
    """What a tracker logs when a run ends, from its metrics.json: the summary's test headline
    (accuracy, macro-F1, balanced accuracy, melanoma recall and AUC), the macro AUC, and at each
    validation-chosen melanoma operating point the threshold and the test precision, recall and
    specificity (test_mel_at_recall90_precision, ...). Figures that are None (no melanoma) are left out."""
    figures = {**results.headline(metrics), "test_macro_auc": metrics["test"]["macro_auc"],
               "selected_epoch": metrics["selected_epoch"]}
    for point in metrics["mel_operating_points"]["chosen_on_val"]:
        for key in ("threshold", "precision", "recall", "specificity"):
            figures[f"test_mel_at_recall{round(point['target_recall'] * 100)}_{key}"] = point[key]
    return {name: float(value) for name, value in figures.items() if value is not None}


def epoch_metrics(row: dict) -> dict[str, float]:
    """The numbers of a history row (or a Tune result), as a tracker logs them."""
    return {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def artifact_location(tracking_uri: str) -> str | None:
    """Where a new MLflow experiment keeps its files: beside a SQLite store's file (mlruns/), so that
    the store is one folder; elsewhere (a server) MLflow's own choice."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    return str(Path(tracking_uri[len(prefix):]).resolve().parent / "mlruns")


def key_files(run_dir: Path) -> list[Path]:
    return [Path(run_dir) / name for name in KEY_FILES if (Path(run_dir) / name).is_file()]


# --------------------------------------------------------------------------- single runs (core.train)


class TensorBoardRun:
    def __init__(self, name: str, params: dict, run_dir: Path):
        require("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        self.writer.add_text("config", f"```\n{json.dumps(params, indent=2)}\n```")
        self.params = params

    def log_epoch(self, row: dict) -> None:
        for key, value in epoch_metrics(row).items():
            self.writer.add_scalar(key, value, global_step=row["epoch"])
        self.writer.flush()

    def finish(self, run_dir: Path, metrics: dict | None) -> None:
        if metrics:
            from torch.utils.tensorboard.summary import hparams

            figures = final_figures(metrics)
            for key, value in figures.items():
                self.writer.add_scalar(key, value, global_step=metrics["epochs_run"])
            params = {k: v for k, v in self.params.items() if isinstance(v, (bool, int, float, str))}
            for summary in hparams(params, figures):  # the HPARAMS tab: config against final figures
                self.writer.file_writer.add_summary(summary)
        self.writer.close()


class MLflowRun:
    def __init__(self, name: str, params: dict, tracking_uri: str | None):
        self.mlflow = mlflow = require("mlflow")
        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT)
        if mlflow.get_experiment_by_name(experiment) is None:
            mlflow.create_experiment(experiment, artifact_location(mlflow.get_tracking_uri()))
        mlflow.set_experiment(experiment)
        self.run = mlflow.start_run(run_name=name, tags={"arm": params["name"]})
        mlflow.log_params(params)

    def log_epoch(self, row: dict) -> None:
        self.mlflow.log_metrics(epoch_metrics(row), step=row["epoch"])

    def finish(self, run_dir: Path, metrics: dict | None) -> None:
        if metrics:
            self.mlflow.log_metrics(final_figures(metrics), step=metrics["epochs_run"])
            for path in key_files(run_dir):
                self.mlflow.log_artifact(str(path))
        self.mlflow.end_run("FINISHED" if metrics else "FAILED")


class WandbRun:
    def __init__(self, name: str, params: dict, run_dir: Path):
        self.wandb = wandb = require("wandb")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", PROJECT), name=name, config=params,
                              mode=os.environ.get("WANDB_MODE"),  # read per run: W&B caches it per process
                              dir=os.environ.get("WANDB_DIR", str(run_dir)), job_type="train")

    def log_epoch(self, row: dict) -> None:
        self.run.log(epoch_metrics(row), step=row["epoch"])

    def finish(self, run_dir: Path, metrics: dict | None) -> None:
        if metrics:
            self.run.log(final_figures(metrics), step=metrics["epochs_run"])  # also the run's summary
            artifact = self.wandb.Artifact(f"run-{self.run.name}", type="run")
            for path in key_files(run_dir):
                artifact.add_file(str(path))
            self.run.log_artifact(artifact)
        self.run.finish(exit_code=0 if metrics else 1)


class Trackers:
    """The runs of the trackers asked for; what core.train calls."""

    def __init__(self, runs: list):
        self.runs = runs

    def log_epoch(self, row: dict) -> None:
        for run in self.runs:
            run.log_epoch(row)

    def finish(self, run_dir: Path, metrics: dict | None) -> None:
        """Final figures and key files of a finished run (`metrics`), or None: the run failed."""
        for run in self.runs:
            run.finish(run_dir, metrics)


def start(trackers: list[str], params: dict, run_dir: Path, tracking_uri: str | None = None,
          history: list[dict] = ()) -> Trackers:
    """Open one run per tracker for the run of `params` (a resolved config); `history` holds the
    rows of the epochs a resumed run has already trained, logged first."""
    check(trackers)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    opened = []
    for tracker in dict.fromkeys(trackers):
        if tracker == "tensorboard":
            opened.append(TensorBoardRun(run_name(params["name"]), params, run_dir))
        elif tracker == "mlflow":
            opened.append(MLflowRun(run_name(params["name"]), params, tracking_uri))
        else:
            opened.append(WandbRun(run_name(params["name"]), params, run_dir))
    runs = Trackers(opened)
    for row in history:
        runs.log_epoch(row)
    return runs
