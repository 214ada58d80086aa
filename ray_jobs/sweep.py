"""The driver side of a sweep: shared inputs made once, then every arm's trials under Ray Tune.

    RESULTS/<sweep>/
      sweep.json, splits.csv, summary.csv   the results contract (docs/results-contract.md)
      <arm>/ ...                            the arm's run folder (its best sample)
      <arm>/samples/<trial_id>/             the other samples, with --samples K > 1
      <arm>/seeds/seed_<n>/                 the other training seeds, with --seeds N > 1
      ray/tune/                             Tune's experiment state (for --resume)
      ray/train/<arm>-<trial_id>/           each trial's Train run and its checkpoints
"""
from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import ray
import timm
import torch
from ray import tune

from core import results
from core.config import RunConfig, same_runs
from core.data.check import cached_check, usable_metadata
from core.data.dataset import load_dataset
from core.data.metadata import DatasetError
from core.data.pairs import AUDIT_FILE
from core.data.split import duplicates_report, lesion_split
from core.training import build_image_caches
from ray_jobs import permanent, storage, trackers
from ray_jobs.arms import PRE_STEPS
from ray_jobs.resources import TRIAL_RESOURCES, Resources
from ray_jobs.scheduler import make_scheduler
from ray_jobs.search import param_space
from ray_jobs.summary import SummaryCallback, read_summary
from ray_jobs.trainable import RAY_DIR, TUNE_EXPERIMENT, run_trial, trial_folder, tune_storage

REPO = Path(__file__).resolve().parents[1]
# The console's table: a row per trial (named after its arm), its status, and the live figure its arm selects on.
METRIC_COLUMNS = {"epoch": "epoch", "select_on": "selects on", "select_value": "value", "val_loss": "val_loss",
                  "val_acc": "val_acc"}


@dataclass
class Sweep:
    """What defines a sweep; saved in sweep.json, so --resume continues the same one."""

    results: str  # the sweep folder: absolute path or URI
    profile: str
    data_root: str
    arms: list[str]
    samples: int = 1
    seeds: int = 1  # training seeds per arm (each arm's config seed, +1, ...)
    scheduler: str = "asha"
    overrides: dict = field(default_factory=dict)
    split_seed: int = 0
    retries: int = 2  # Tune-level retries of a failed trial, each resuming from its checkpoint
    resources: Resources | None = None
    trackers: list[str] = field(default_factory=list)  # tensorboard | mlflow | wandb (ray_jobs/trackers/)
    tracking_uri: str | None = None  # MLflow's; None: $MLFLOW_TRACKING_URI or MLflow's default

    @property
    def splits_file(self) -> str:
        return storage.join(self.results, results.SPLITS)

    def run_overrides(self) -> dict:
        """Every arm trains on the sweep's one split."""
        return {**self.overrides, "splits_file": self.splits_file, "split_seed": self.split_seed}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Sweep:
        return cls(**{**values, "resources": Resources(**values["resources"]) if values["resources"] else None})


def git_commit() -> str | None:
    """The code's commit: $DERMABLATE_GIT_COMMIT (set by ray_jobs.submit), else git's HEAD."""
    if os.environ.get("DERMABLATE_GIT_COMMIT"):
        return os.environ["DERMABLATE_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def check_data(sweep: Sweep, run_configs: dict[str, RunConfig], record: dict | None) -> tuple[dict, pd.DataFrame]:
    """Check the dataset once and split it once; raises DatasetError before anything is written.

    `record` is the sweep.json of a sweep being resumed: its data must not have changed.
    """
    cfg = next(iter(run_configs.values()))
    ds = load_dataset(sweep.data_root)
    report = cached_check(ds, cfg.cache_dir)
    meta = usable_metadata(ds, report, cfg.skip_bad_images)
    splits = lesion_split(meta, seed=sweep.split_seed, val_frac=cfg.val_fraction, test_frac=cfg.test_fraction,
                          duplicates=cfg.duplicates_file)
    facts = {"data_fingerprint": ds.fingerprint(), "synthetic_data": ds.synthetic,
             "excluded_images": len(report.excluded()), "split_sizes": splits["split"].value_counts().to_dict(),
             "duplicates": None, "same_run_as": same_runs(run_configs)}
    if cfg.duplicates_file:  # the links the pairs added, and the crossings they avoided
        facts["duplicates"] = {"file": cfg.duplicates_file,
                               **duplicates_report(meta, cfg.duplicates_file, splits, sweep.split_seed)}
    if record and record["data_fingerprint"] != facts["data_fingerprint"]:
        raise DatasetError(f"{sweep.data_root} changed since the sweep started (fingerprint "
                           f"{record['data_fingerprint']}, now {facts['data_fingerprint']}); start a new sweep")
    return facts, splits


def audit_line(duplicates: dict | None, data_root: str) -> str:
    """What the split did about leaks between lesion_ids (check_data's "duplicates"), for the console."""
    if duplicates is None:
        return (f"no leak audit applied: no duplicates_file set and no {AUDIT_FILE} in {data_root}; "
                f"`python -m core.data duplicates --data-root {data_root}` writes one there")
    return (f"leak audit applied: {duplicates['file']}, {duplicates['pairs']} pair(s), "
            f"{duplicates['links_applied']} extra link(s); {duplicates['crossing_without']} pair(s) "
            "would otherwise have crossed splits")


def start(sweep: Sweep, run_configs: dict[str, RunConfig], facts: dict, splits: pd.DataFrame,
          record: dict | None) -> dict:
    """Build the image caches, then write splits.csv and sweep.json (a new one, or the resumed one's)."""
    with tempfile.TemporaryDirectory() as local:
        splits_file = results.write_splits(Path(local), splits)
        build_image_caches(list(run_configs.values()), sweep.data_root, splits_file)
        if not storage.exists(sweep.splits_file):
            storage.put_file(splits_file, sweep.splits_file)
    record = record or {
        "profile": sweep.profile,
        "data_root": sweep.data_root,
        **facts,
        "split_seed": sweep.split_seed,
        "arms": sweep.arms,
        "samples": sweep.samples,
        "seeds": sweep.seeds,
        "git_commit": git_commit(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
                     "ray": ray.__version__},
        "settings": sweep.to_dict(),
    }
    permanent.clear_records(sweep.results, sweep.arms)  # its cause may be fixed since the last start
    record = results.sweep_started(record, ray_address=ray.get_runtime_context().gcs_address)
    storage.write_json(storage.join(sweep.results, results.SWEEP_RECORD), record)
    return record


def console(sweep: Sweep, quiet: bool) -> dict:
    """Tune's console: the table of trials (a row per trial, named after its arm) every 30 s, or nothing."""
    if quiet:
        return {"verbose": 0, "progress_reporter": None}
    params = (["arm"] + (["lr", "weight_decay", "mel_multiplier"] if sweep.samples > 1 else [])
              + (["seed_offset"] if sweep.seeds > 1 else []))
    return {"verbose": 1,  # the progress table, not every result
            "progress_reporter": tune.CLIReporter(parameter_columns=params, metric_columns=METRIC_COLUMNS,
                                                  max_report_frequency=30)}


def trained_arms(run_configs: dict[str, RunConfig]) -> dict[str, RunConfig]:
    """The arms the sweep trains: not those that repeat an earlier arm's run (core.config.same_runs),
    whose folders become copies of that arm's once it has finished (ray_jobs.summary)."""
    same = same_runs(run_configs)
    return {arm: cfg for arm, cfg in run_configs.items() if arm not in same}


def make_tuner(sweep: Sweep, run_configs: dict[str, RunConfig], quiet: bool = False) -> tune.Tuner:
    """A new Tuner, or the interrupted one restored from the sweep's Tune state. `quiet`: no progress table."""
    trainable = tune.with_resources(run_trial, TRIAL_RESOURCES)
    experiment = tune_storage(sweep.results)
    if tune.Tuner.can_restore(experiment):
        # Finished trials stay finished; unfinished and failed ones start again, and their
        # Train runs resume from their last checkpoints.
        tuner = tune.Tuner.restore(experiment, trainable, resume_unfinished=True, resume_errored=True)
        # The restored RunConfig is the saved one: this start's -q (or its absence) decides the console.
        vars(tuner._local_tuner.get_run_config()).update(console(sweep, quiet))
        return tuner
    # Arms with a pre-step (baseline_synth's cVAE) run longest: start them first, so that the
    # short arms fill the other slots meanwhile rather than waiting behind them at the end.
    trained = trained_arms(run_configs)
    order = sorted(trained, key=lambda arm: arm not in PRE_STEPS)
    configs = {arm: trained[arm].to_dict() for arm in order}
    res = sweep.resources
    constants = {"results": sweep.results, "data_root": sweep.data_root, "samples": sweep.samples,
                 "workers": res.workers, "cpus_per_worker": res.cpus_per_worker,
                 "gpus_per_worker": res.gpus_per_worker}
    trials = trackers.Trials(sweep.results, sweep.samples, sweep.seeds)
    return tune.Tuner(
        trainable,
        param_space=param_space(configs, sweep.samples, constants, sweep.seeds),
        tune_config=tune.TuneConfig(
            num_samples=sweep.samples,
            scheduler=make_scheduler(sweep.scheduler, configs, sweep.samples),
            max_concurrent_trials=res.max_concurrent or None,
            reuse_actors=True,  # a finished trial's process (torch and core imported) runs the next trial
            trial_name_creator=trials.name,  # the arm (and its sample or seed), as the trackers name its run
            trial_dirname_creator=lambda trial: trial_folder(trial.config["arm"], trial.trial_id),
        ),
        run_config=tune.RunConfig(
            name=TUNE_EXPERIMENT,
            storage_path=storage.join(sweep.results, RAY_DIR),
            failure_config=tune.FailureConfig(max_failures=sweep.retries),
            **console(sweep, quiet),
            # The trackers first: they read a trial's run folder before SummaryCallback settles its samples.
            callbacks=[*trackers.callbacks(trials, sweep.trackers, sweep.tracking_uri),
                       SummaryCallback(sweep.results, {a: c.select_on for a, c in run_configs.items()},
                                       sweep.samples, sweep.seeds, same_runs(run_configs))],
        ),
    )


def run(sweep: Sweep, run_configs: dict[str, RunConfig], record: dict,
        quiet: bool = False) -> tuple[str, pd.DataFrame]:
    """Run (or resume) the sweep; returns its status and summary table. `quiet`: Tune prints nothing."""
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # Tune's CLIReporter table (the newer output ignores it)
    make_tuner(sweep, run_configs, quiet).fit()
    summary = read_summary(sweep.results)
    statuses = set(summary["status"])
    status = ("finished" if statuses == {"finished"} else "interrupted" if statuses & {"pending", "running"}
              else "failed")
    record = results.sweep_ended(record, status)
    storage.write_json(storage.join(sweep.results, results.SWEEP_RECORD), record)
    return status, summary
