"""One Tune trial = one sample of one arm: a Ray Train DDP run of `core.training.fit`.

The trial function (`run_trial`) holds no CPU. It builds a `TorchTrainer` whose workers
each run `train_worker`: core's own loop, which wraps the model in DDP, shards with its
own samplers (the weighted one stays rebalanced on every rank), gathers evaluation
predictions, and writes from rank 0 only. Every epoch is reported to Ray Train with a
checkpoint; `TuneReportCallback` forwards rank 0's metrics to Tune. A trial that fails
for good records why, and its retries stop at once (`ray_jobs.permanent`).
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

import ray
import ray.train
import ray.train.torch
import ray.tune
import torch
from ray.experimental import tqdm_ray
from ray.train import Checkpoint
from ray.tune.integration.ray_train import TuneReportCallback
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from core import results
from core.checkpoints import load_checkpoint
from core.config import RunConfig, from_dict
from core.log import inherited, setup_logging, use_bar
from core.training import fit
from ray_jobs import faults, permanent, storage
from ray_jobs.arms import PRE_STEPS
from ray_jobs.packing import PackedOutOfMemory, out_of_memory_message

RAY_DIR, TUNE_EXPERIMENT = "ray", "tune"  # RESULTS/SWEEP/ray/: Ray's own state; ray/tune/: the Tune experiment
STATE_FILE = "state.pt"  # the checkpoint dict core hands to on_epoch_end
SAMPLED = ("lr", "weight_decay", "mel_multiplier")  # trial config keys that override the arm's config
# Ray Train's print patch both echoes and logs each print in a worker: every epoch line twice on the console.
WORKER_ENV = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}


def quiet_report_lines() -> None:
    """Ray Train logs every report at INFO under a logger named after its file, which LoggingConfig's
    level misses: one line per epoch and rank on the console. Keep that logger to warnings."""
    with contextlib.suppress(ImportError):
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)


def worker_console() -> None:
    """core's messages at the driver's level (-v/-q), and its progress bars as Ray's tqdm, which the
    driver draws on its console (a plain tqdm in a worker has no terminal, so it shows nothing)."""
    level, bars = inherited()
    # A Train worker's root logger already prints to the console (Ray Train's handler): not twice.
    setup_logging(level, handler=not any(type(h).__module__.startswith("ray.") for h in logging.getLogger().handlers))
    if bars:
        use_bar(tqdm_ray.tqdm)


def run_pre_step(step, cfg: RunConfig, data_root: str) -> None:
    """The Ray task of an arm's pre-step (ray_jobs.arms.PRE_STEPS), with the driver's console."""
    worker_console()
    step(cfg, data_root)


def train_worker(config: dict) -> None:
    """Runs on every Train worker, inside the process group Ray Train set up."""
    quiet_report_lines()
    worker_console()
    rank = ray.train.get_context().get_world_rank()
    device = ray.train.torch.get_device()
    if device.type == "cpu" and config.get("cpus"):
        # Exactly the CPUs Ray reserved for this worker: torch's default (every core) would
        # oversubscribe a machine running several trials, and its spinning threads then crawl.
        torch.set_num_threads(max(1, int(config["cpus"])))

    # 1. Resume: a retried trial's Train run (same name) hands back its latest checkpoint.
    resume = resume_state(ray.train.get_checkpoint())

    with tempfile.TemporaryDirectory(prefix="dermablate-run-") as run_dir, \
            storage.local_copy(config["run_config"]["splits_file"]) as splits_file:
        cfg = from_dict({**config["run_config"], "splits_file": splits_file})

        def report(epoch: int, row: dict, state: dict) -> None:
            faults.maybe_kill(epoch, cfg.name)
            row = tune_row(row, cfg)
            if rank != 0:
                ray.train.report(row)  # every rank reports: it is a barrier
                return
            storage.put_dir(run_dir, config["out"])  # history.csv visible while the run goes on
            # 2. Checkpoint every epoch: rank 0 saves core's state, Ray persists it to storage.
            with tempfile.TemporaryDirectory() as folder:
                torch.save(state, Path(folder) / STATE_FILE)
                ray.train.report(row, checkpoint=Checkpoint.from_directory(folder))

        # 3. core's loop on this rank; rank 0 writes the run folder, then publishes it.
        try:
            fit(cfg, config["data_root"], run_dir, resume=resume, device=device, on_epoch_end=report)
        except torch.OutOfMemoryError as e:
            raise PackedOutOfMemory(out_of_memory_message(cfg.name, config["gpus"] or 1.0, e)) from None
        if rank == 0:
            storage.put_dir(run_dir, config["out"])


def tune_row(row: dict, cfg: RunConfig) -> dict:
    """What a trial reports each epoch: the history row, and beside it the metric the arm selects
    on, by name and value (the console's table)."""
    return {**row, "select_on": cfg.select_on, "select_value": row[cfg.select_on]}


def resume_state(checkpoint: Checkpoint | None) -> dict | None:
    """core's checkpoint state saved in a Ray checkpoint, or None to start afresh."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return load_checkpoint(Path(folder) / STATE_FILE)


def trial_config(config: dict) -> RunConfig:
    """The arm's resolved config with this trial's sampled hyperparameters and training seed on top."""
    arm_config = config["arm_configs"][config["arm"]]
    seed = arm_config["seed"] + config.get("seed_offset", 0)
    return from_dict({**arm_config, **{k: config[k] for k in SAMPLED if k in config}, "seed": seed})


def run_folder(arm_dir: str, trial_id: str, samples: int, seed_offset: int, seed: int) -> str:
    """Where a trial writes: the arm's folder, a sample's folder, or one of its other seeds' folders."""
    if samples > 1:
        return storage.join(arm_dir, results.SAMPLES_DIR, trial_id)
    if seed_offset:
        return storage.join(arm_dir, results.SEEDS_DIR, f"seed_{seed}")
    return arm_dir


def run_trial(config: dict) -> None:
    """The Tune function trainable: one TorchTrainer run for one sample of one arm."""
    sweep, arm = config["sweep"], config["arm"]
    trial_id = ray.tune.get_context().get_trial_id()
    arm_dir = storage.join(sweep["results"], arm)
    cfg = trial_config(config)
    out = run_folder(arm_dir, trial_id, sweep["samples"], config.get("seed_offset", 0), cfg.seed)
    # A run already written (or its arm's samples already settled) is not trained again, even
    # if Tune's experiment state was saved before it finished and the sweep was resumed. It reports
    # nothing: its history.csv holds every epoch, and the trackers log what they lack from it.
    done = {out, arm_dir} if sweep["samples"] > 1 else {out}
    if any(storage.exists(storage.join(folder, results.METRICS)) for folder in done):
        return
    permanent.raise_if_recorded(out)  # an earlier attempt failed for good: the same error, and no training
    try:
        train(config, cfg, out, trial_id)
    except Exception as e:
        permanent.record_if_permanent(out, e, cfg)
        raise


def tune_storage(results: str) -> str:
    """The sweep's Tune experiment folder (for --resume): each trial's results in <arm>_<trial id>/result.json."""
    return storage.join(results, RAY_DIR, TUNE_EXPERIMENT)


def trial_folder(arm: str, trial_id: str) -> str:
    return f"{arm}_{trial_id}"


def train_storage(results: str) -> str:
    """Where the sweep's Train runs keep their checkpoints, each in <arm>-<trial id>/."""
    return storage.join(results, RAY_DIR, "train")


def train(config: dict, cfg: RunConfig, out: str, trial_id: str) -> None:
    """The trial's pre-step, if its arm has one, then its Train run writing to `out`."""
    sweep, arm = config["sweep"], config["arm"]
    resources = {"CPU": sweep["cpus_per_worker"]}
    if sweep["gpus_per_worker"]:
        resources["GPU"] = sweep["gpus_per_worker"]

    if arm in PRE_STEPS:
        # 0. What the arm needs first (baseline_synth: its cVAE), as a task on one worker's resources,
        # outside this trial's placement group (which holds no CPU).
        step = ray.remote(run_pre_step).options(
            num_cpus=resources["CPU"], num_gpus=resources.get("GPU", 0),
            scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=None))
        ray.get(step.remote(PRE_STEPS[arm], cfg, sweep["data_root"]))

    trainer = ray.train.torch.TorchTrainer(
        train_worker,
        train_loop_config={"run_config": cfg.to_dict(), "data_root": sweep["data_root"], "out": out,
                           "cpus": resources["CPU"], "gpus": resources.get("GPU", 0.0)},
        # 1. N DDP workers; Ray starts the process group (NCCL on GPUs, gloo on CPUs).
        scaling_config=ray.train.ScalingConfig(num_workers=sweep["workers"], use_gpu=bool(sweep["gpus_per_worker"]),
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            # 2. One run name per trial: a Tune-level retry resumes it from its last checkpoint.
            name=f"{arm}-{trial_id}",
            storage_path=train_storage(sweep["results"]),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            failure_config=ray.train.FailureConfig(max_failures=0),  # retries belong to Tune
            # Train's INFO lines (every checkpoint and report, the worker group's start) go to Ray's
            # log files, not the console: Tune's table says how each arm is doing.
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
            # 3. Forward rank 0's metrics of every epoch to this Tune trial.
            callbacks=[TuneReportCallback()],
        ),
    )
    trainer.fit()
