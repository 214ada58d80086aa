"""What `python ablations/run_all.py` does once its arguments are parsed: build or find the
data, resolve the arms and the cluster's resources, start Ray, run the sweep and print its
summary. The command line itself is ablations/run_all.py.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import ray
import torch

import core
from core import io
from core.config import ConfigError, parse_overrides, same_runs
from core.data.demo import built_demo, is_current_demo, make_demo_dataset
from core.data.metadata import DatasetError, find_metadata, read_metadata
from core.data.pairs import audit_beside
from core.data.parallel import usable_cpus
from core.data.split import lesion_split
from core.log import child_env
from core.results import SWEEP_RECORD
from ray_jobs import storage, trackers
from ray_jobs.arms import load_arms
from ray_jobs.estimate import estimate_line
from ray_jobs.lock import sweep_lock
from ray_jobs.packing import default_share, read_measurements
from ray_jobs.preflight import autoscaler_node_types, check_cluster, check_resources, check_weights, cluster_nodes
from ray_jobs.resources import resolve
from ray_jobs.sweep import Sweep, audit_line, check_data, run, start, trained_arms
from ray_jobs.trainable import WORKER_ENV

CHECKOUT = Path(core.__file__).resolve().parents[1]  # the code the driver runs: its workers import the same
log = logging.getLogger(__name__)
DEMO_SEEDS = 3  # the demo's training seeds per arm: its comparisons hold training variance (core/evaluation/seeds.py)
DEMO_SIZES = {"smoke": 200, "demo": 2400, "full": 800}  # images in the demo dataset each profile builds
# What defines a sweep: --resume takes all of it from the sweep's sweep.json.
SWEEP_ARGS = ("data_root", "demo_data", "profile", "arms", "samples", "seeds", "scheduler", "set",
              "skip_bad_images", "split_seed", "retries", "workers_per_trial", "cpus_per_worker", "gpus_per_worker",
              "max_concurrent", "tracker", "tracking_uri")


def trial_shape(args: argparse.Namespace, sweep: Sweep) -> tuple[int, float, float]:
    """(workers, CPUs and GPUs per worker) of one trial: the resumed sweep's, else the options' (defaults 1, 1, 0)."""
    if sweep.resources:
        return sweep.resources.workers, sweep.resources.cpus_per_worker, sweep.resources.gpus_per_worker
    return args.workers_per_trial or 1, args.cpus_per_worker or 1.0, args.gpus_per_worker or 0.0


def local_runtime_env(level: int = logging.INFO) -> dict:
    """The runtime_env of a Ray that run_all starts on this machine.

    Its workers import this checkout (whatever the current folder). They also run at
    niceness 0 rather than Ray's default 15, as Ray's own job supervisor does: on a small
    machine, niced trials lose a tenth or more of their speed to Ray's control plane
    (benchmarks/ray_overhead.py). And they print each line once (WORKER_ENV), at the driver's
    level, with progress bars the driver draws when it has a terminal (child_env).
    """
    return {"env_vars": {"PYTHONPATH": str(CHECKOUT), "RAY_worker_niceness": "0", **WORKER_ENV, **child_env(level)}}


def demo_data(path: Path, n: int) -> Path:
    """The synthetic demo dataset at `path`, built once (into a temporary folder, then renamed).

    A demo folder from an older generator or of another size is rebuilt; any other dataset
    at `path` is used as it is."""
    if is_current_demo(path, n, masks=True):
        return path
    if built_demo(path) is not None:
        log.info("rebuilding the SYNTHETIC demo dataset in %s: drawn by an older generator or of another size", path)
        shutil.rmtree(path)
    else:
        try:
            find_metadata(path)
            return path
        except DatasetError:
            pass
    log.info("building the SYNTHETIC demo dataset (%d images) in %s (once)", n, path)
    tmp = io.new_temp(path, folder=True)
    make_demo_dataset(tmp, n=n, masks=True)  # the report measures Grad-CAM mass on the lesions
    os.replace(tmp, path)
    return path


def default_seeds(profile: str, samples: int | None) -> int:
    """Training seeds per arm when --seeds is not given: DEMO_SEEDS on the demo profile, whose findings
    must survive a rerun, unless it samples hyperparameters; else one."""
    return DEMO_SEEDS if profile == "demo" and (samples or 1) == 1 else 1


def refuse_a_used_folder(results: str) -> None:
    if storage.exists(storage.join(results, SWEEP_RECORD)):
        raise ConfigError(f"{results} already holds a sweep: pass --resume to continue it, or --name to start another")


def new_sweep(args: argparse.Namespace, results: str, profile: str, build: bool = True) -> tuple[Sweep, dict, None]:
    """The sweep a first start asks for; `build=False` names the demo dataset's folder without building it."""
    refuse_a_used_folder(results)
    for option in ("samples", "seeds"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            raise ConfigError(f"--{option} must be at least 1; got {getattr(args, option)}")
    if (args.samples or 1) > 1 and (args.seeds or 1) > 1:
        raise ConfigError("--samples and --seeds do not combine: choose hyperparameters with --samples, "
                          "fix them with --set KEY=VALUE, then repeat with --seeds")
    overrides = parse_overrides(args.set or []) | ({"skip_bad_images": True} if args.skip_bad_images else {})
    sweep = Sweep(results=results, profile=profile, data_root="", arms=[], samples=args.samples or 1,
                  seeds=args.seeds or default_seeds(profile, args.samples), scheduler=args.scheduler or "asha",
                  overrides=overrides,
                  split_seed=args.split_seed or 0, retries=2 if args.retries is None else args.retries,
                  trackers=args.tracker or [], tracking_uri=args.tracking_uri)
    run_configs = load_arms(args.arms, profile, sweep.run_overrides())  # unknown arm or profile: ConfigError
    sweep.arms = list(run_configs)
    if args.data_root:
        sweep.data_root = os.path.abspath(args.data_root)
    else:
        folder = (args.demo_data or CHECKOUT / "data" / ("demo_smoke" if profile == "smoke" else "demo")).resolve()
        sweep.data_root = str(demo_data(folder, DEMO_SIZES[profile]) if build else folder)
    audit = audit_beside(sweep.data_root)
    if audit and "duplicates_file" not in overrides:  # `--set duplicates_file=null` declines it
        overrides["duplicates_file"] = str(audit)
        run_configs = load_arms(sweep.arms, profile, sweep.run_overrides())
    return sweep, run_configs, None


def plan(args: argparse.Namespace, results: str, profile: str) -> int:
    """--dry-run: every arm's resolved config and the plan (trials, resources, estimated time); starts
    nothing, builds nothing and writes nothing."""
    sweep, run_configs, _ = (resumed_sweep(args, results) if args.resume
                             else new_sweep(args, results, profile, build=False))
    for arm, cfg in run_configs.items():
        print(f"{arm}:")
        print("\n".join(f"  {key}: {value}" for key, value in cfg.to_dict().items()))
    repeats, trained = sweep.samples * sweep.seeds, trained_arms(run_configs)
    print(f"plan: sweep {results}, profile {sweep.profile}, data {sweep.data_root}")
    print(f"plan: {len(trained)} arm(s) x {repeats} = {len(trained) * repeats} trial(s) "
          f"({sweep.seeds} seed(s), {sweep.samples} sample(s)), scheduler {sweep.scheduler}, "
          f"{sweep.retries} retries")
    for arm, same_as in same_runs(run_configs).items():
        print(f"plan: {arm} is not trained: the same run as {same_as} on this profile (its folder is a copy)")
    if args.address or os.environ.get("RAY_ADDRESS"):
        print("plan: resources: the joined cluster's, read when the sweep starts")
        return 0
    resources = sweep.resources or resolve({"CPU": usable_cpus(), "GPU": torch.cuda.device_count()},
                                           args.workers_per_trial, args.cpus_per_worker, args.gpus_per_worker,
                                           args.max_concurrent)
    print(f"plan: resources on this machine: {resources}")
    splits = planned_splits(sweep, next(iter(run_configs.values())))
    if splits is None:
        print("plan: time: the dataset is not built yet (the demo builds it on its first start)")
    elif torch.cuda.is_available():
        print("plan: time: on a GPU; benchmarks/README.md has the measured figures")
    else:
        print(f"plan: time: {estimate_line(trained, splits, repeats)}")
    return 0


def planned_splits(sweep: Sweep, cfg) -> pd.DataFrame | None:
    """The split the sweep would train on (from the metadata alone: no image is read), None without data."""
    try:
        meta = read_metadata(find_metadata(sweep.data_root))
    except (DatasetError, OSError):
        return None
    return lesion_split(meta, seed=sweep.split_seed, val_frac=cfg.val_fraction, test_frac=cfg.test_fraction)


def resumed_sweep(args: argparse.Namespace, results: str) -> tuple[Sweep, dict, dict]:
    given = [f"--{a.replace('_', '-')}" for a in SWEEP_ARGS if getattr(args, a) is not None]
    if given:
        raise ConfigError(f"--resume continues the sweep as it was started; drop {', '.join(given)}")
    record_file = storage.join(results, SWEEP_RECORD)
    if not storage.exists(record_file):
        raise ConfigError(f"nothing to resume: {record_file} does not exist")
    record = storage.read_json(record_file)
    sweep = Sweep.from_dict(record["settings"])
    return sweep, load_arms(sweep.arms, sweep.profile, sweep.run_overrides()), record


def resume_command(args: argparse.Namespace, results: str) -> str:
    return f"python ablations/run_all.py --results {args.results} --name {results.rsplit('/', 1)[-1]} --resume"


def profile_of(args: argparse.Namespace) -> str:
    return args.profile or ("full" if args.data_root else "demo")


def run_sweep(args: argparse.Namespace, level: int) -> int:
    """The sweep `args` (run_all's parsed command line) asks for, at log level `level`; the exit status."""
    profile = profile_of(args)
    results = storage.join(storage.location(args.results), args.name or profile)
    if args.dry_run:
        try:
            return plan(args, results, profile)
        except (ConfigError, DatasetError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    with contextlib.ExitStack() as held:  # the sweep folder's lock, once taken, until the sweep ends
        return started_sweep(args, level, profile, results, held)


def started_sweep(args: argparse.Namespace, level: int, profile: str, results: str,
                  held: contextlib.ExitStack) -> int:
    """run_sweep's work; the folder's lock goes on `held`."""
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")  # a harmless warning per trial otherwise
    try:
        sweep, run_configs, record = resumed_sweep(args, results) if args.resume else new_sweep(args, results, profile)
        check_weights(run_configs)  # an offline machine stops here, at once, not in every trial
        trackers.check(sweep.trackers)  # so does a tracker library that is missing
        # A job's workers have its working_dir, and a joined cluster needs the code at this path.
        local = not (args.address or os.environ.get("RAY_ADDRESS"))
        if local:  # a trial too big for this machine would wait forever in PENDING
            check_resources(*trial_shape(args, sweep), usable_cpus(), torch.cuda.device_count())
        facts, splits = check_data(sweep, run_configs, record)  # a bad dataset stops here, before any write
        log.info(audit_line(facts["duplicates"], sweep.data_root))
        # Past the checks that write nothing here: a second sweep into this folder stops now, before caches and Ray.
        held.enter_context(sweep_lock(results))
        if record is None:
            refuse_a_used_folder(results)  # a sweep that ended since new_sweep looked
        if local and sweep.profile == "full" and not torch.cuda.is_available():
            log.info(estimate_line(trained_arms(run_configs), splits, sweep.samples * sweep.seeds))
        # -q: neither Ray's start-up lines nor the workers' output (their errors reach the summary).
        ray.init(address=args.address, runtime_env=local_runtime_env(level) if local else None,
                 log_to_driver=not args.quiet, logging_level=max(level, logging.INFO))
        if sweep.resources is None:
            cluster, gpus_per_worker = ray.cluster_resources(), args.gpus_per_worker
            if gpus_per_worker is None:
                gpus_per_worker, why = default_share(cluster, args.workers_per_trial or 1, read_measurements())
                log.info("GPU share: %s", why)
            sweep.resources = resolve(cluster, args.workers_per_trial, args.cpus_per_worker, gpus_per_worker,
                                      args.max_concurrent)
        if not local:  # the joined cluster's nodes, and those its autoscaler may add, are known only now
            check_cluster(*trial_shape(args, sweep), cluster_nodes(), autoscaler_node_types(),
                          f"the cluster at {args.address or os.environ['RAY_ADDRESS']}")
        record = start(sweep, run_configs, facts, splits, record)
    except (ConfigError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for arm, same_as in record.get("same_run_as", {}).items():
        log.info("%s: not trained, the same run as %s on the %s profile (the configs differ in name only): "
                 "its folder becomes a copy of %s's", arm, same_as, sweep.profile, same_as)
    repeats = f"{sweep.seeds} seed(s)" if sweep.seeds > 1 else f"{sweep.samples} sample(s)"
    log.info("sweep %s: %d arm(s) x %s, profile %s, %s", results, len(sweep.arms), repeats, sweep.profile,
             sweep.resources)
    try:
        status, summary = run(sweep, run_configs, record, quiet=args.quiet)
    except io.DiskFull as e:  # writing summary.csv or sweep.json; --resume continues from Tune's saved state
        print(f"error: {e}", file=sys.stderr)
        print(f"continue it with: {resume_command(args, results)}")
        return 2
    # The result: printed at every level.
    columns = ["arm", "status", "test_acc", "test_macro_f1", "test_mel_recall", "selected_epoch", "wall_seconds"]
    if sweep.seeds > 1:
        columns[2:5] = ["seeds", *(f"{name}_{stat}" for name in ("test_acc", "test_macro_f1", "test_mel_recall")
                                   for stat in ("mean", "std"))]
    print(summary[columns].to_string(index=False))
    for arm, error in summary.loc[summary["error"].notna(), ["arm", "error"]].itertuples(index=False):
        print(f"{arm} failed, not retried: {error}")
    if facts["synthetic_data"]:
        print("SYNTHETIC demo data: these figures say nothing about HAM10000 or skin lesions.")
    print(f"sweep {status}; results in {results}")
    if status == "interrupted":
        print(f"continue it with: {resume_command(args, results)}")
    print(f"report: python -m dashboards.report --sweep {results} --out {storage.join(results, 'report')}")
    print(f"dashboard: python -m dashboards --results {args.results}")
    return 0 if status == "finished" else 1
