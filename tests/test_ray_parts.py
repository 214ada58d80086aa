"""The sweep's parts that need no running Ray: arms, search space, scheduling, resources, storage."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search.variant_generator import generate_variants

from core.config import ConfigError
from core.labels import CLASSES
from ray_jobs import storage
from ray_jobs.arms import CONFIG_DIR, available, load_arms, study_arms
from ray_jobs.packing import best_count, default_share, out_of_memory_message
from ray_jobs.resources import Resources, resolve
from ray_jobs.scheduler import PerArmScheduler, make_scheduler
from ray_jobs.search import LR, MEL_MULTIPLIER, WEIGHT_DECAY, param_space
from ray_jobs.submit import check_paths, check_tracking, runtime_env
from ray_jobs.summary import SummaryCallback, settle
from ray_jobs.sweep import trained_arms
from ray_jobs.trackers import Trials
from ray_jobs.trainable import run_folder, trial_config
from tests import tracker_stores as stores

# ------------------------------------------------------------------------- arms


def test_every_config_file_is_an_arm(tmp_path):
    assert available() == sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    (tmp_path / "profiles").mkdir()
    (tmp_path / "new_arm.yaml").write_text("backbone: resnet10t\n")
    assert available(tmp_path) == ["new_arm"]  # a colleague's new config file is a new arm


def test_the_default_sweep_is_the_study_and_best_single_runs_when_named():
    assert len(study_arms()) == 8 and "best_single" not in study_arms()
    assert list(load_arms(None, "smoke", {})) == study_arms()
    assert list(load_arms(["best_single"], "smoke", {})) == ["best_single"]


def test_arms_load_with_profile_and_overrides():
    configs = load_arms(["baseline", "sampler"], "smoke", {"epochs": 3})
    assert list(configs) == ["baseline", "sampler"]
    assert configs["sampler"].sampler and configs["baseline"].epochs == 3
    assert configs["baseline"].backbone == "test_efficientnet"  # from profiles/smoke.yaml


@pytest.mark.parametrize("arms, profile, message", [
    (["baseline", "no_such_arm"], "smoke", "unknown arm(s) no_such_arm; available: "),
    (["baseline"], "tiny", "unknown profile 'tiny'"),
])
def test_unknown_arm_or_profile_is_refused(arms, profile, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_arms(arms, profile, {})


# ------------------------------------------------------------------------- search space


def sampled(samples: int, rounds: int = 1, seeds: int = 1) -> list[dict]:
    configs = {"plain": {"mel_multiplier": 1.0, "lr": 3e-4, "seed": 0},
               "mel": {"mel_multiplier": 2.0, "lr": 3e-4, "seed": 7}}
    space = param_space(configs, samples, {"results": "/r"}, seeds)
    return [config for _ in range(rounds) for _, config in generate_variants(space)]


def test_one_sample_runs_each_arm_as_written():
    trials = sampled(1)
    assert [t["arm"] for t in trials] == ["plain", "mel"]
    assert all(set(t) == {"arm", "arm_configs", "sweep"} for t in trials)
    assert trial_config(trials[1]).mel_multiplier == 2.0 and trial_config(trials[0]).mel_multiplier == 1.0


def test_samples_draw_lr_and_weight_decay_and_the_mel_multiplier_only_where_used():
    trials = sampled(2, rounds=20)
    for t in trials:
        assert LR[0] <= t["lr"] <= LR[1] and WEIGHT_DECAY[0] <= t["weight_decay"] <= WEIGHT_DECAY[1]
    mel = [t["mel_multiplier"] for t in trials if t["arm"] == "mel"]
    assert all(MEL_MULTIPLIER[0] <= m <= MEL_MULTIPLIER[1] for m in mel) and len(set(mel)) == len(mel)
    assert {t["mel_multiplier"] for t in trials if t["arm"] == "plain"} == {1.0}


def test_seeds_repeat_each_arm_as_written_with_consecutive_training_seeds():
    trials = sampled(1, seeds=3)
    seeds = sorted((t["arm"], trial_config(t).seed) for t in trials)
    assert seeds == [("mel", 7), ("mel", 8), ("mel", 9), ("plain", 0), ("plain", 1), ("plain", 2)]
    assert all(trial_config(t).lr == 3e-4 for t in trials)  # nothing else varies


def test_each_seed_writes_its_own_run_folder():
    assert run_folder("/r/arm", "t1", samples=1, seed_offset=0, seed=0) == "/r/arm"  # the arm's own run
    assert run_folder("/r/arm", "t2", samples=1, seed_offset=2, seed=2) == "/r/arm/seeds/seed_2"
    assert run_folder("/r/arm", "t3", samples=4, seed_offset=0, seed=0) == "/r/arm/samples/t3"


def test_trials_and_their_tracker_runs_are_named_after_the_arm_and_its_sample_or_seed():
    def names(samples: int, seeds: int) -> list[str]:
        trials = [SimpleNamespace(config=c, trial_id=f"t{i}") for i, c in enumerate(sampled(samples, seeds=seeds))]
        return [Trials("/r/sweep", samples, seeds).name(t) for t in trials]

    assert names(1, 1) == ["plain", "mel"]
    assert sorted(names(1, 2)) == ["mel-seed7", "mel-seed8", "plain-seed0", "plain-seed1"]
    assert sorted(names(2, 1)) == ["mel-sample-t1", "plain-sample-t0"]
    config = next(c for c in sampled(1, seeds=2) if c["arm"] == "mel" and c["seed_offset"] == 1)
    run = SimpleNamespace(config=config, trial_id="t3")
    assert Trials("/r/sweep", 1, 2).run_dir(run) == "/r/sweep/mel/seeds/seed_8"


# ------------------------------------------------------------------------- scheduling


def trial(arm: str, n: int) -> SimpleNamespace:
    return SimpleNamespace(trial_id=f"{arm}_{n}", config={"arm": arm})


RUN_CONFIGS = {"f1_arm": {"select_on": "val_macro_f1", "epochs": 4},
               "recall_arm": {"select_on": "val_mel_recall", "epochs": 4}}


def test_one_sample_or_fifo_stops_nothing():
    assert type(make_scheduler("asha", RUN_CONFIGS, samples=1)) is FIFOScheduler
    assert type(make_scheduler("fifo", RUN_CONFIGS, samples=4)) is FIFOScheduler


def test_each_arm_gets_its_own_asha_on_its_own_metric():
    scheduler = make_scheduler("asha", RUN_CONFIGS, samples=4)
    assert isinstance(scheduler, PerArmScheduler)
    for arm, cfg in RUN_CONFIGS.items():
        asha = scheduler.schedulers[arm]
        assert isinstance(asha, AsyncHyperBandScheduler)
        assert (asha._metric, asha._time_attr, asha._max_t) == (cfg["select_on"], "epoch", cfg["epochs"])


def test_a_trial_is_compared_only_with_its_own_arm():
    scheduler = make_scheduler("asha", RUN_CONFIGS, samples=2)
    assert scheduler.set_search_properties(None, None)
    good_f1, bad_f1, recall = trial("f1_arm", 0), trial("f1_arm", 1), trial("recall_arm", 0)
    for t in (good_f1, bad_f1, recall):
        scheduler.on_trial_add(None, t)

    def result(t, value):
        return scheduler.on_trial_result(None, t, {"epoch": 1, RUN_CONFIGS[t.config["arm"]]["select_on"]: value})

    assert result(good_f1, 0.9) == TrialScheduler.CONTINUE
    # Far below the f1 arm's trial, but the only one of its arm: nothing to compare it with.
    assert result(recall, 0.1) == TrialScheduler.CONTINUE
    assert result(bad_f1, 0.2) == TrialScheduler.STOP


def test_the_last_epoch_is_not_a_stop():
    scheduler = make_scheduler("asha", RUN_CONFIGS, samples=2)
    only = trial("f1_arm", 0)
    scheduler.on_trial_add(None, only)
    # Reaching max_t must leave the trial running: it still evaluates and writes its results.
    assert scheduler.on_trial_result(None, only, {"epoch": 4, "val_macro_f1": 0.5}) == TrialScheduler.CONTINUE


# ------------------------------------------------------------------------- resources


def test_cpu_only_cluster_defaults_to_one_single_cpu_worker_per_trial():
    assert resolve({"CPU": 2.0, "memory": 1e10}) == Resources(1, 1.0, 0.0, max_concurrent=2)


def test_gpu_cluster_defaults_to_one_gpu_per_worker_and_shares_the_cpus():
    assert resolve({"CPU": 32.0, "GPU": 4.0}) == Resources(1, 8.0, 1.0, max_concurrent=4)


def test_fractional_gpus_and_ddp_workers():
    assert resolve({"CPU": 16.0, "GPU": 2.0}, workers=2, cpus_per_worker=2, gpus_per_worker=0.5) == \
        Resources(2, 2, 0.5, max_concurrent=2)
    assert resolve({"CPU": 2.0}, workers=2).max_concurrent == 1


def test_max_concurrent_can_be_lifted_for_autoscaling_clusters():
    assert resolve({"CPU": 4.0}, max_concurrent=0).max_concurrent == 0


# ------------------------------------------------------------------------- storage and settling


def test_put_file_replaces_whole_files(tmp_path):
    src = tmp_path / "src.txt"
    src.write_text("new")
    dest = storage.join(str(tmp_path), "out", "dest.txt")
    storage.put_file(src, dest)
    assert storage.read_text(dest) == "new"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dest.txt"]  # no temporary left


def test_storage_accepts_file_uris(tmp_path):
    uri = f"file://{tmp_path}/sweep"
    storage.write_json(storage.join(uri, "sweep.json"), {"status": "running"})
    assert storage.read_json(storage.join(uri, "sweep.json")) == {"status": "running"}
    assert storage.list_dirs(f"file://{tmp_path}") == ["sweep"]
    with storage.local_copy(storage.join(uri, "sweep.json")) as local:
        assert json.loads(Path(local).read_text()) == {"status": "running"}


def write_sample(arm_dir: Path, name: str, f1: float, nll: float) -> None:
    folder = arm_dir / "samples" / name
    folder.mkdir(parents=True)
    val = {"macro_f1": f1, "accuracy": 0.5, "balanced_accuracy": 0.5, "nll": nll, "per_class": {"mel": {"recall": 0.5}}}
    (folder / "metrics.json").write_text(json.dumps({"val": val}))
    (folder / "best.pt").write_text(name)


def test_settle_moves_the_best_sample_into_the_arm_folder(tmp_path):
    arm = tmp_path / "baseline"
    write_sample(arm, "t0", f1=0.6, nll=1.0)
    write_sample(arm, "t1", f1=0.7, nll=2.0)
    write_sample(arm, "t2", f1=0.7, nll=1.5)  # as good on macro-F1, lower val loss: core's tie-break
    (arm / "samples" / "stopped").mkdir()  # stopped by ASHA: no metrics.json
    settle(str(arm), "val_macro_f1")
    assert (arm / "best.pt").read_text() == "t2"
    assert sorted(p.name for p in (arm / "samples").iterdir()) == ["stopped", "t0", "t1"]
    settle(str(arm), "val_macro_f1")  # settled once: a second call changes nothing
    assert (arm / "best.pt").read_text() == "t2"


def finished_metrics(val: dict | None = None) -> dict:
    """A run's metrics.json with what summary.csv reads."""
    test = {"accuracy": 0.5, "macro_f1": 0.4, "balanced_accuracy": 0.45, "mel_auc": 0.7,
            "per_class": {c: {"recall": 0.5} for c in CLASSES}}
    return {"val": val or {}, "test": test, "selected_epoch": 1, "select_on": "val_mel_recall", "epochs_run": 1,
            "synthetic_data": True}


def test_samples_are_settled_once_every_sample_has_a_trial_and_it_ended(tmp_path):
    arm = tmp_path / "sweep" / "baseline"
    for name, f1 in (("t0", 0.6), ("t1", 0.7)):
        write_sample(arm, name, f1=f1, nll=1.0)
        metrics_file = arm / "samples" / name / "metrics.json"
        metrics_file.write_text(json.dumps(finished_metrics(json.loads(metrics_file.read_text())["val"])))
    callback = SummaryCallback(str(tmp_path / "sweep"), {"baseline": "val_macro_f1"}, samples=2)
    callback.update([fake_trial("baseline", True)])  # Tune has not made the second sample's trial yet
    assert not (arm / "best.pt").exists()
    callback.update([fake_trial("baseline", True), fake_trial("baseline", True)])
    assert (arm / "best.pt").read_text() == "t1"


def test_an_arm_that_repeats_another_is_not_trained():
    arms = load_arms(None, "demo", {})
    assert list(trained_arms(arms)) == [a for a in arms if a != "long_mel_select"]
    assert list(trained_arms(load_arms(None, "full", {}))) == study_arms()  # the full profile sets them apart


def test_copy_tree_copies_every_file_and_the_top_marker_last(tmp_path, monkeypatch):
    src = tmp_path / "b2_mel_select"
    for name in ("metrics.json", "history.csv", "seeds/seed_1/metrics.json", "seeds/seed_1/best.pt"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(name)
    order, put_file = [], storage.put_file
    monkeypatch.setattr(storage, "put_file", lambda local, uri: (order.append(uri), put_file(local, uri)))
    storage.copy_tree(str(src), str(tmp_path / "copy"), last="metrics.json")
    names = [uri.split("/copy/", 1)[1] for uri in order]
    assert sorted(names) == sorted(["metrics.json", "history.csv", "seeds/seed_1/metrics.json",
                                    "seeds/seed_1/best.pt"])
    assert names[-2:] == ["seeds/seed_1/metrics.json", "metrics.json"]
    assert all((tmp_path / "copy" / n).read_text() == n for n in names)


def fake_trial(arm: str, done: bool):
    return SimpleNamespace(config={"arm": arm}, status="TERMINATED" if done else "RUNNING",
                           last_result={"done": done, "time_total_s": 5.0})


def test_an_arm_that_repeats_another_gets_a_copy_of_its_folder_once_it_has_finished(tmp_path):
    sweep = tmp_path / "sweep"
    source = sweep / "b2_mel_select"
    (source / "seeds" / "seed_1").mkdir(parents=True)
    metrics = finished_metrics()
    callback = SummaryCallback(str(sweep), {"b2_mel_select": "val_mel_recall", "long_mel_select": "val_mel_recall"},
                               samples=1, seeds=2, same_run_as={"long_mel_select": "b2_mel_select"})
    (source / "metrics.json").write_text(json.dumps(metrics))
    callback.update([fake_trial("b2_mel_select", True)])
    assert not (sweep / "long_mel_select").exists()  # Tune has not made the second seed's trial yet
    assert pd.read_csv(sweep / "summary.csv").set_index("arm").loc["b2_mel_select", "status"] == "pending"
    callback.update([fake_trial("b2_mel_select", True), fake_trial("b2_mel_select", False)])
    assert not (sweep / "long_mel_select").exists()  # its second seed is still training
    (source / "seeds" / "seed_1" / "metrics.json").write_text(json.dumps(metrics))
    callback.update([fake_trial("b2_mel_select", True), fake_trial("b2_mel_select", True)])
    copy = sweep / "long_mel_select"
    assert json.loads((copy / "metrics.json").read_text()) == metrics
    assert (copy / "seeds" / "seed_1" / "metrics.json").is_file()
    summary = pd.read_csv(sweep / "summary.csv").set_index("arm")
    assert summary.loc["long_mel_select", "status"] == "finished"
    assert summary.loc["long_mel_select", "test_acc_mean"] == summary.loc["b2_mel_select", "test_acc_mean"]


# ------------------------------------------------------------------------- job submission


@pytest.mark.parametrize("args, message", [
    (["--profile", "smoke"], "give --results"),
    (["--results", "results"], "--results 'results' must be absolute"),
    (["--results=/shared/r", "--data-root", "data/ham"], "--data-root 'data/ham' must be absolute"),
])
def test_submit_refuses_paths_the_job_cannot_see(args, message):
    with pytest.raises(SystemExit, match=message):
        check_paths(args)


def test_submit_accepts_absolute_paths_and_uris():
    assert check_paths(["--results", "s3://bucket/sweeps", "--data-root=/shared/ham10000"]) == {
        "--results": "s3://bucket/sweeps", "--data-root": "/shared/ham10000"}


@pytest.mark.parametrize("uri", [None, "sqlite:///mlflow.db"])
def test_submit_refuses_an_mlflow_store_in_the_jobs_temporary_copy(uri, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SystemExit, match="--tracker mlflow in a job needs --tracking-uri"):
        check_tracking(["--tracker", "mlflow", *(["--tracking-uri", uri] if uri else [])])
    check_tracking(["--tracker=mlflow", "--tracking-uri=sqlite:////shared/mlflow.db"])
    check_tracking(["--tracker", "wandb"])


def test_a_job_with_trackers_installs_them_and_gets_their_settings(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    env = runtime_env(pip=True, trackers=True)
    assert env["env_vars"]["WANDB_MODE"] == "offline"
    assert any(r.startswith("mlflow-skinny") for r in env["pip"]) and any(r.startswith("torch") for r in env["pip"])
    assert not any(r.startswith("wandb") for r in runtime_env(pip=True)["pip"])


# ------------------------------------------------------------------------- packing trials on one GPU

H200 = {"CPU": 16.0, "GPU": 1.0, "accelerator_type:H200": 1.0}
MEASURED = {"H200": {"date": "2026-12-01", "rows": [
    {"at_once": 1, "completed": True, "sum_images_per_s": 1500.0, "peak_gib": 9.0},
    {"at_once": 2, "completed": True, "sum_images_per_s": 2600.0, "peak_gib": 18.0},
    {"at_once": 4, "completed": True, "sum_images_per_s": 3350.0, "peak_gib": 36.0},
    {"at_once": 8, "completed": True, "sum_images_per_s": 3400.0, "peak_gib": 72.0}]}}


def test_a_single_gpu_is_shared_by_the_measured_count():
    share, why = default_share(H200, 1, MEASURED)
    assert share == 0.25 and "4 trials share the H200" in why  # 8 at once is within 5% of 4: no gain
    assert resolve(H200, gpus_per_worker=share) == Resources(1, 4.0, 0.25, max_concurrent=4)
    rows = MEASURED["H200"]["rows"]
    assert best_count([{**r, "completed": r["at_once"] < 4} for r in rows]) == 2  # what ran out of memory is out
    assert best_count([{**r, "sum_images_per_s": 1000.0 * r["at_once"]} for r in rows]) == 8


def test_without_a_measurement_one_trial_holds_the_gpu_and_says_how_to_measure():
    share, why = default_share({**H200, "accelerator_type:L4": 1.0, "accelerator_type:H200": 0}, 1, MEASURED)
    assert share == 1.0
    share, why = default_share({"CPU": 8.0, "GPU": 1.0, "accelerator_type:L4": 1.0}, 1, MEASURED)
    assert share == 1.0 and "no packing measurement for L4" in why and "--packing" in why
    assert default_share({"CPU": 32.0, "GPU": 4.0, "accelerator_type:H200": 4.0}, 1, MEASURED)[0] == 1.0
    assert default_share({"CPU": 2.0}, 1, MEASURED)[0] == 0.0


def test_a_packed_trial_out_of_memory_names_the_fix():
    message = out_of_memory_message("b2_mel_select", 0.25, RuntimeError("CUDA out of memory"))
    assert "--gpus-per-worker 0.5" in message and "batch_size" in message and "4 trials" in message
    assert "whole GPU" in out_of_memory_message("b2_mel_select", 1.0, RuntimeError("x"))


# ------------------------------------------------------------------------- the trackers follow history.csv


def tracked_trial(tmp_path: Path, epochs: int) -> tuple[Trials, object]:
    """A trial of arm `plain` whose run folder's history.csv holds `epochs` epochs (val_acc = epoch / 10)."""
    trials = Trials(str(tmp_path / "sweep"))
    local = tmp_path / "tune" / "plain_t0"  # Tune's trial folder, where TensorBoard's events go
    trial = type("Trial", (), {"trial_id": "t0", "config": sampled(1)[0], "__str__": lambda self: "plain",
                               "evaluated_params": {}, "local_path": str(local),
                               "init_local_path": lambda self: local.mkdir(parents=True, exist_ok=True)})()
    run = Path(trials.run_dir(trial))
    run.mkdir(parents=True)
    pd.DataFrame({"epoch": range(1, epochs + 1), "val_acc": [e / 10 for e in range(1, epochs + 1)]}).to_csv(
        run / "history.csv", index=False)
    return trials, trial


def test_a_tracker_logs_history_rows_up_to_the_epoch_tune_received_and_the_rest_when_the_trial_ends(tmp_path):
    from ray_jobs.trackers import FollowsHistory

    class Recorder(FollowsHistory):
        def log_epoch(self, trial, row):
            self.rows.append((row["epoch"], row["val_acc"]))

    trials, trial = tracked_trial(tmp_path, 4)
    tracker = Recorder(trials)
    tracker.rows = []
    tracker.log_trial_result(1, trial, {"epoch": 2, "val_acc": -1.0})  # epoch 1's result never arrived
    assert tracker.rows == [(1, 0.1), (2, 0.2)]  # from history.csv, not the result; not epochs 3-4 yet
    tracker.log_trial_result(2, trial, {"epoch": 2})
    tracker.log_history(trial)  # the trial's end: a run finished before a --resume reports nothing
    assert tracker.rows == [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)]


@pytest.mark.parametrize("given", ["environment", "option"])
def test_mlflow_logs_to_the_store_its_variable_or_option_names(given, tmp_path, monkeypatch):
    """$MLFLOW_TRACKING_URI and --tracking-uri name the same store: the trial's run and epochs land there."""
    import mlflow

    from ray_jobs.trackers.mlflow_callback import MLflowTracker

    mlflow.set_tracking_uri(None)  # a URI set by an earlier test in this process outranks the variable
    monkeypatch.chdir(tmp_path)  # MLflow's default store, where a lost variable would send the run
    uri, (trials, trial) = f"sqlite:///{tmp_path / 'named' / 'mlflow.db'}", tracked_trial(tmp_path, 1)
    (tmp_path / "named").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri if given == "environment" else "sqlite:///elsewhere.db")
    tracker = MLflowTracker(trials, uri if given == "option" else None)
    tracker.setup()
    tracker.log_trial_start(trial)
    tracker.log_trial_result(1, trial, {"epoch": 1, "val_acc": 0.1})
    (run,) = stores.mlflow_runs(uri, "dermablate-sweep")["run_id"]
    assert stores.mlflow_history(uri, run, "val_acc") == [(1, 0.1)]
    assert not (tmp_path / "mlflow.db").exists()


def test_mlflow_continues_a_run_after_the_last_epoch_it_holds(tmp_path):
    """The first driver logged epochs 1-3 and was killed; the resumed one's trial reports nothing
    (its run had finished): its end logs epoch 4, from history.csv."""
    from ray_jobs.trackers.mlflow_callback import MLflowTracker

    uri, (trials, trial) = f"sqlite:///{tmp_path / 'mlflow.db'}", tracked_trial(tmp_path, 4)
    tracker = MLflowTracker(trials, uri)  # the first driver
    tracker.setup()
    tracker.log_trial_start(trial)
    tracker.log_trial_result(3, trial, {"epoch": 3})
    tracker = MLflowTracker(trials, uri)  # the resumed one
    tracker.setup()
    tracker.log_trial_start(trial)
    tracker.log_history(trial)
    (run,) = stores.mlflow_runs(uri, "dermablate-sweep")["run_id"]
    assert stores.mlflow_history(uri, run, "val_acc") == [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)]


def test_tensorboard_reads_each_epoch_once_after_a_second_writer(tmp_path):
    """A writer per driver: the resumed one logs the run from epoch 1, and TensorBoard's reader
    drops the first writer's copies (purge_step)."""
    from ray_jobs.trackers.tensorboard_callback import TensorBoardTracker

    trials, trial = tracked_trial(tmp_path, 4)
    for upto in (3, 4):
        tracker = TensorBoardTracker(trials)  # a driver
        tracker.log_trial_start(trial)
        tracker.log_trial_result(upto, trial, {"epoch": upto})
        tracker._trial_writer[trial].close()  # its events on disk
    scalars = stores.tensorboard_scalars(Path(trial.local_path))["ray/tune/val_acc"]
    assert scalars == [(e, pytest.approx(e / 10)) for e in (1, 2, 3, 4)]
