"""Core training: every arm trains end to end, writes the results contract, resumes exactly."""
from __future__ import annotations

import contextlib
import copy
import errno
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core import results
from core.config import load_config
from core.data.images import ImageRef, load_rgb
from core.data.metadata import find_metadata, read_metadata
from core.evaluation import classification_metrics, evaluate_run
from core.evaluation.calibration import apply_temperature
from core.inference import dihedral_views, load_run, predict_and_screen
from core.io import TEMP_SUFFIX
from core.predict import main as predict_cli
from core.results import read_predictions
from core.tracking import TRACKERS, final_figures
from core.train import build_parser
from core.train import main as train_cli
from core.training import fit
from tests import tracker_stores as stores
from tests.test_config import ARMS, CONFIGS

CONTRACT = ("config.json", "history.csv", "metrics.json", "predictions_val.csv", "predictions_test.csv",
            "best.pt", "splits.csv", "excluded.csv")
TIMING = ["seconds", "train_images_per_s", "data_wait"]


def smoke(arm: str = "baseline", **overrides):
    return load_config(CONFIGS / f"{arm}.yaml", "smoke", overrides)


@pytest.mark.parametrize("arm", ARMS)
def test_every_arm_trains_end_to_end_under_smoke_with_device_augmentation(arm, demo_root, smoke_sweep):
    """The smoke sweep trained every arm once through core.train's command line, augment=device."""
    out = smoke_sweep / arm
    for name in CONTRACT:
        assert (out / name).is_file(), name
    assert not (out / "last.pt").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["name"] == arm and cfg["backbone"] == "test_efficientnet" and cfg["augment"] == "device"
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    assert {"train_loss", "val_loss", "val_acc", "val_macro_f1", "val_mel_recall", "lr", "seconds"} <= set(history)

    metrics = json.loads((out / "metrics.json").read_text())
    _, _, val = read_predictions(out / "predictions_val.csv")
    _, _, test = read_predictions(out / "predictions_test.csv")
    splits = pd.read_csv(out / "splits.csv")
    assert sorted(val["image_id"]) == sorted(splits.loc[splits["split"] == "val", "image_id"])
    assert sorted(test["image_id"]) == sorted(splits.loc[splits["split"] == "test", "image_id"])
    test_info = read_metadata(find_metadata(demo_root)).set_index("image_id")
    recomputed = evaluate_run(val, test, test_info, cfg["bootstrap_replicates"], cfg["seed"])
    for key in ("val", "test", "mel_operating_points", "calibration", "test_intervals", "subgroups"):
        assert json.dumps(recomputed[key], sort_keys=True) == json.dumps(metrics[key], sort_keys=True)
    assert metrics["synthetic_data"] is True
    assert metrics["selected_epoch"] in (1, 2) and metrics["select_on"] == cfg["select_on"]
    best = history.loc[history["epoch"] == metrics["selected_epoch"]].iloc[0]
    assert np.isclose(best[cfg["select_on"]], history[cfg["select_on"]].max())


class Interrupted(Exception):
    pass


def interrupted_after(epoch: int, cfg, data_root, out) -> dict:
    """Run until `epoch` ends, then crash; return the checkpoint state of that epoch."""
    saved = {}

    def crash(e, row, checkpoint):
        if e == epoch:
            saved.update(checkpoint)
            raise Interrupted

    with pytest.raises(Interrupted):
        fit(cfg, data_root, out, on_epoch_end=crash)
    return saved


def test_runs_are_deterministic_and_resume_exactly_on_the_dataloader_path(demo_root, tmp_path):
    cfg = smoke(epochs=3, augment="cpu")  # the batch path's resume is best_single's test below
    whole = fit(cfg, demo_root, tmp_path / "whole")
    checkpoint = interrupted_after(2, cfg, demo_root, tmp_path / "resumed")
    resumed = fit(cfg, demo_root, tmp_path / "resumed", resume=checkpoint)

    h_whole = pd.read_csv(tmp_path / "whole" / "history.csv").drop(columns=TIMING)
    h_resumed = pd.read_csv(tmp_path / "resumed" / "history.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(h_whole, h_resumed)
    assert list(h_resumed["epoch"]) == [1, 2, 3]
    assert whole["test"] == resumed["test"]
    for name in ("predictions_val.csv", "predictions_test.csv"):
        assert (tmp_path / "whole" / name).read_text() == (tmp_path / "resumed" / name).read_text()


def test_best_single_with_ema_mixup_and_trivial_augment_resumes_exactly_and_saves_the_ema(demo_root, tmp_path):
    cfg = smoke("best_single", epochs=3, augment="device")
    assert cfg.ema_decay and cfg.mixup_alpha and cfg.auto_augment == "trivial"
    states = {}
    whole = fit(cfg, demo_root, tmp_path / "whole",
                on_epoch_end=lambda e, row, state: states.update({e: copy.deepcopy(state)}))
    checkpoint = interrupted_after(2, cfg, demo_root, tmp_path / "resumed")
    fit(cfg, demo_root, tmp_path / "resumed", resume=checkpoint)
    for name in ("predictions_val.csv", "predictions_test.csv"):
        assert (tmp_path / "whole" / name).read_text() == (tmp_path / "resumed" / name).read_text()
    selected = states[whole["selected_epoch"]]
    saved = torch.load(tmp_path / "whole" / "best.pt", weights_only=True)["model"]
    weight = next(k for k in saved if k.endswith("weight") and saved[k].dim() == 4)
    assert torch.equal(saved[weight], selected["ema"][weight].cpu())  # the EMA is saved, not the live weights
    assert not torch.equal(saved[weight], selected["model"][weight].cpu())


def test_compile_trains_through_dynamo_and_saves_plain_weights(demo_root, tmp_path, monkeypatch):
    # Inductor's C++ build takes minutes on 2 cores: trace with dynamo, run eagerly (the card's figures
    # come from benchmarks/gpu_train.py).
    compiled = []
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model: compiled.append(model) or real(model, backend="eager"))
    fit(smoke(epochs=1, compile=True), demo_root, tmp_path)
    assert len(compiled) == 1
    saved = torch.load(tmp_path / "best.pt", weights_only=True)["model"]
    assert not any(key.startswith("_orig_mod") for key in saved)
    trained = load_run(tmp_path)  # loads into a plain model
    test = pd.read_csv(tmp_path / "predictions_test.csv")
    ref = ImageRef(next(demo_root.rglob(f"{test['image_id'][0]}.jpg")))
    probs, _ = predict_and_screen(trained, [load_rgb(ref)])
    assert np.allclose(probs[0], test.filter(like="p_").to_numpy()[0], atol=1e-5)


@pytest.fixture(scope="module")
def tracked_resume(demo_root, tmp_path_factory):
    """One CLI run resumed after epoch 1 of 2, logged to all three trackers (W&B offline):
    its run folder, MLflow tracking URI and output."""
    tmp = tmp_path_factory.mktemp("tracked")
    out, uri = tmp / "run", f"sqlite:///{tmp / 'mlflow.db'}"
    torch.save(interrupted_after(1, smoke(epochs=2), demo_root, out), out / "last.pt")
    trackers = [arg for tracker in TRACKERS for arg in ("--tracker", tracker)]
    with pytest.MonkeyPatch.context() as env, contextlib.redirect_stdout(io.StringIO()) as printed, \
            contextlib.redirect_stderr(printed):  # the result on stdout, the progress messages on stderr
        env.setenv("WANDB_MODE", "offline")
        env.setenv("WANDB_CONSOLE", "off")  # W&B would otherwise capture the process's output
        env.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        status = train_cli(["--config", str(CONFIGS / "baseline.yaml"), "--data-root", str(demo_root), "--out",
                            str(out), "--profile", "smoke", "--resume", *trackers, "--tracking-uri", uri])
    assert status == 0
    return out, uri, printed.getvalue()


def test_cli_resume_continues_from_last_checkpoint(tracked_resume):
    out, _, printed = tracked_resume
    assert "resuming" in printed and "epoch 2: train_loss" in printed  # the default level: progress messages
    assert list(pd.read_csv(out / "history.csv")["epoch"]) == [1, 2]
    assert not (out / "last.pt").exists()


def test_mlflow_gets_one_run_with_the_config_every_epoch_and_the_final_figures(tracked_resume):
    out, uri, _ = tracked_resume
    runs = stores.mlflow_runs(uri, "dermablate")
    assert len(runs) == 1
    run = runs.iloc[0]
    assert (run["tags.mlflow.runName"], run["status"]) == ("baseline", "FINISHED")
    config = json.loads((out / "config.json").read_text())
    assert {k: run[f"params.{k}"] for k in config} == {k: str(v) for k, v in config.items()}
    history = pd.read_csv(out / "history.csv")
    # epoch 1 trained before the resume, from the checkpoint's history
    logged = list(zip(history["epoch"], history["val_acc"], strict=True))
    assert stores.mlflow_history(uri, run["run_id"], "val_acc") == logged
    figures = final_figures(json.loads((out / "metrics.json").read_text()))
    assert {"test_acc", "test_macro_f1", "test_balanced_acc", "test_mel_recall", "test_mel_auc",
            "test_mel_at_recall90_threshold"} <= set(figures)
    assert {k: run[f"metrics.{k}"] for k in figures} == pytest.approx(figures)
    assert stores.mlflow_artifacts(uri, run["run_id"]) == sorted(
        ["config.json", "history.csv", "metrics.json", "predictions_val.csv", "predictions_test.csv"])


def test_tensorboard_event_files_hold_every_epoch_and_the_final_figures(tracked_resume):
    out, _, _ = tracked_resume
    scalars = stores.tensorboard_scalars(out / "tensorboard")
    history = pd.read_csv(out / "history.csv")
    # event files hold float32
    assert scalars["val_macro_f1"] == [(e, pytest.approx(v))
                                        for e, v in zip(history["epoch"], history["val_macro_f1"], strict=True)]
    figures = final_figures(json.loads((out / "metrics.json").read_text()))
    assert {k: scalars[k] for k in figures} == {k: [(2, pytest.approx(v))] for k, v in figures.items()}
    assert '"select_on": "val_macro_f1"' in stores.tensorboard_text(out / "tensorboard", "config/text_summary")


def test_wandb_offline_writes_a_run_directory_with_the_config_epochs_and_final_figures(tracked_resume):
    out, _, _ = tracked_resume
    run = stores.wandb_run(out / "wandb")
    assert run["name"] == "baseline" and run["exit_code"] == 0
    assert run["config"]["lr"] == json.loads((out / "config.json").read_text())["lr"]
    history = pd.read_csv(out / "history.csv")
    assert [run["history"][epoch]["val_acc"] for epoch in (1, 2)] == pytest.approx(list(history["val_acc"]))
    figures = final_figures(json.loads((out / "metrics.json").read_text()))
    assert {k: run["history"][2][k] for k in figures} == pytest.approx(figures)
    assert run["artifacts"] == {"run-baseline": sorted(["config.json", "history.csv", "metrics.json",
                                                        "predictions_val.csv", "predictions_test.csv"])}


def test_a_full_disk_mid_run_stops_with_the_file_named_and_resume_finishes_once_space_is_back(demo_root, tmp_path,
                                                                                               capsys, monkeypatch):
    out = tmp_path / "run"
    args = ["--config", str(CONFIGS / "baseline.yaml"), "--data-root", str(demo_root), "--out", str(out),
            "--profile", "smoke", "--set", "epochs=3"]
    real_write, checkpoints = Path.write_bytes, []

    def fills_at_epoch_2(path, data):  # the second epoch's last.pt finds the disk full
        if path.name.startswith(f".{results.RESUME}."):  # its temporary
            checkpoints.append(path)
            if len(checkpoints) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, data)

    monkeypatch.setattr(Path, "write_bytes", fills_at_epoch_2)
    assert train_cli(args) == 2
    assert f"error: no space left to write {out / results.RESUME}" in capsys.readouterr().err
    assert torch.load(out / results.RESUME, weights_only=True)["epoch"] == 1  # the good one, whole
    assert list(pd.read_csv(out / "history.csv")["epoch"]) == [1, 2]
    assert not [p for p in out.iterdir() if p.name.endswith(TEMP_SUFFIX)]
    monkeypatch.setattr(Path, "write_bytes", real_write)  # space is back
    assert train_cli([*args, "--resume"]) == 0
    assert list(pd.read_csv(out / "history.csv")["epoch"]) == [1, 2, 3]
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 3


@pytest.mark.parametrize("given", ["environment", "option"])
def test_a_single_run_logs_to_the_mlflow_store_its_variable_or_option_names(given, tmp_path, monkeypatch):
    import mlflow

    from core.tracking import MLflowRun

    mlflow.set_tracking_uri(None)  # a URI set by an earlier test in this process outranks the variable
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    uri = f"sqlite:///{tmp_path / 'named.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri if given == "environment" else "sqlite:///elsewhere.db")
    run = MLflowRun("baseline", {"name": "baseline", "epochs": 2}, uri if given == "option" else None)
    run.log_epoch({"epoch": 1, "val_acc": 0.5})
    run.finish(tmp_path, None)
    (run_id,) = stores.mlflow_runs(uri, "dermablate")["run_id"]
    assert stores.mlflow_history(uri, run_id, "val_acc") == [(1, 0.5)]
    assert not (tmp_path / "elsewhere.db").exists()


def test_every_profile_the_sweep_knows_is_one_for_a_single_run_too(demo_root, tmp_path, capsys):
    """Profiles are the YAML files beside the configs, for core.train as for run_all: none is left out."""
    args = ["--config", str(CONFIGS / "baseline.yaml"), "--data-root", str(demo_root), "--out", str(tmp_path / "run")]
    assert train_cli([*args, "--profile", "tiny"]) == 2
    assert "unknown profile 'tiny'; available: cpu-real, demo, smoke" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert build_parser().parse_args([*args, "--profile", "cpu-real"]).profile == "cpu-real"


def test_a_missing_tracker_library_names_the_pip_command(demo_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now raises ImportError
    assert train_cli(["--config", str(CONFIGS / "baseline.yaml"), "--data-root", str(demo_root),
                      "--out", str(tmp_path / "run"), "--profile", "smoke", "--tracker", "wandb"]) == 2
    err = capsys.readouterr().err
    assert "--tracker wandb needs the wandb package" in err and "-m pip install -r" in err
    assert err.rstrip().endswith("requirements-tracking.txt")
    assert not (tmp_path / "run").exists()


def test_patience_stops_early(demo_root, tmp_path):
    # lr 1e-9: nothing improves after the first epoch, so one more epoch runs and training stops.
    metrics = fit(smoke(epochs=6, patience=1, lr=1e-9, warmup_epochs=0.0), demo_root, tmp_path / "run")
    assert (metrics["selected_epoch"], metrics["epochs_run"]) == (1, 2)
    assert list(pd.read_csv(tmp_path / "run" / "history.csv")["epoch"]) == [1, 2]


def test_dihedral_views_are_the_eight_symmetries():
    image = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    views = dihedral_views(image)
    assert len(views) == 8 and len({v.numpy().tobytes() for v in views}) == 8
    assert all(torch.equal(dihedral_views(v)[0], v) for v in views)  # the identity comes first


def test_tta_is_reported_beside_the_plain_figures(demo_root, tmp_path):
    metrics = fit(smoke(tta=True), demo_root, tmp_path)
    _, plain, _ = read_predictions(tmp_path / "predictions_test.csv")
    _, tta, _ = read_predictions(tmp_path / "predictions_test_tta.csv")
    assert not np.allclose(plain, tta)
    assert json.loads((tmp_path / "metrics.json").read_text())["test"] == metrics["test"]  # plain figures unchanged
    recomputed = classification_metrics(*read_predictions(tmp_path / "predictions_test_tta.csv")[:2])
    assert metrics["tta"]["test"] == recomputed and "8 dihedral" in metrics["tta"]["views"]


def test_bad_dataset_is_refused_unless_skipping(demo_root, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    victim = next((root / "HAM10000_images_part_1").glob("*.jpg"))
    victim.write_bytes(victim.read_bytes()[:200])
    args = ["--config", str(CONFIGS / "baseline.yaml"), "--data-root", str(root), "--out", str(tmp_path / "run"),
            "--profile", "smoke", "--set", "epochs=1"]
    assert train_cli(args) == 2
    err = capsys.readouterr().err
    assert victim.stem in err and "--skip-bad-images" in err
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert train_cli(args + ["--skip-bad-images", "-q"]) == 0
    quiet = capsys.readouterr()  # -q: the result line alone, no epoch or cache lines
    assert len(quiet.out.splitlines()) == 1 and quiet.out.startswith("baseline: test acc"), quiet.out
    assert "epoch" not in quiet.err and "image cache" not in quiet.err, quiet.err
    excluded = pd.read_csv(tmp_path / "run" / "excluded.csv")
    assert list(excluded["image_id"]) == [victim.stem]
    assert victim.stem not in set(pd.read_csv(tmp_path / "run" / "splits.csv")["image_id"])


def test_bad_config_fails_before_training(demo_root, tmp_path, capsys):
    assert train_cli(["--config", str(CONFIGS / "baseline.yaml"), "--data-root", str(demo_root),
                      "--out", str(tmp_path / "run"), "--set", "lr=-1"]) == 2
    assert "lr must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_predict_matches_the_run_predictions(demo_root, tmp_path, capsys):
    out = tmp_path / "run"
    fit(smoke(epochs=1), demo_root, out)
    test = pd.read_csv(out / "predictions_test.csv")
    trained = load_run(out)
    refs = [ImageRef(next(demo_root.rglob(f"{i}.jpg"))) for i in test["image_id"][:4]]
    probs, _ = predict_and_screen(trained, [load_rgb(r) for r in refs])
    assert np.allclose(probs, test.filter(like="p_").to_numpy()[:4], atol=1e-5)

    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    capsys.readouterr()  # drop the training log
    assert predict_cli(["--run", str(out), str(refs[0].path), str(bad), "--gradcam", str(tmp_path / "cams")]) == 1
    printed = capsys.readouterr()
    lines = [json.loads(line) for line in printed.out.splitlines()]
    assert len(lines[0]["probabilities"]) == 7 and Path(lines[0]["gradcam"]).is_file()
    # the one forward pass that also screens the image gives the run's own probabilities
    assert np.allclose(list(lines[0]["probabilities"].values()), probs[0], atol=1e-5)
    assert set(lines[0]["out_of_distribution"]) == {"score", "threshold", "flagged", "test_false_alarm_rate"}
    assert "never seen a real skin lesion" in lines[0]["warnings"]["synthetic_training_data"]
    assert f"WARNING ({refs[0].path.name}): SYNTHETIC training data. This arm" in printed.err
    assert {p["target_recall"] for p in lines[0]["mel_operating_points"]} <= {0.85, 0.9, 0.95}
    # beside the plain probabilities: the same ones scaled by the temperature fitted on validation
    calibrated = lines[0]["calibrated_probabilities"]
    t = json.loads((out / "metrics.json").read_text())["calibration"]["temperature"]
    assert calibrated.pop("temperature") == t
    expected = apply_temperature(np.array([list(lines[0]["probabilities"].values())]), t)[0]
    assert np.allclose(list(calibrated.values()), expected, atol=1e-5)
    assert "not a readable image" in lines[1]["error"]
    assert predict_cli(["--run", str(tmp_path), str(refs[0].path)]) == 2


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_write_one_run_folder(demo_root, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "core.train", "--config", str(CONFIGS / "sampler.yaml"), "--data-root", str(demo_root),
               "--out", str(out), "--profile", "smoke", "--set", "epochs=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=CONFIGS.parents[1], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("sampler: test acc") == 1  # rank 0 reports; rank 1 exits 0 quietly
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    splits = pd.read_csv(out / "splits.csv")
    test = pd.read_csv(out / "predictions_test.csv")
    assert sorted(test["image_id"]) == sorted(splits.loc[splits["split"] == "test", "image_id"])  # no padding rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
