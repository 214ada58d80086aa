"""`ablations/run_all.py` refuses bad input with a clear error, exit status 2, and writes nothing.

All of these stop before Ray starts.
"""
from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from ablations.run_all import main


@pytest.fixture
def results(tmp_path):
    return tmp_path / "results"


def run_all(capsys, *args) -> tuple[int, str]:
    status = main(list(args))
    return status, capsys.readouterr().err


def test_unknown_profile(capsys, results, demo_root):
    status, err = run_all(capsys, "--data-root", str(demo_root), "--profile", "tiny", "--results", str(results))
    assert status == 2 and "unknown profile 'tiny'; available: cpu-real, demo, smoke" in err
    assert not results.exists()


def test_unknown_arm(capsys, results, demo_root):
    status, err = run_all(capsys, "--data-root", str(demo_root), "--profile", "smoke", "--arms", "baseline",
                          "baselin", "--results", str(results))
    assert status == 2 and "unknown arm(s) baselin; available: " in err and "sampler" in err
    assert not results.exists()


def test_bad_override(capsys, results, demo_root):
    status, err = run_all(capsys, "--data-root", str(demo_root), "--profile", "smoke", "--set", "epoch=3",
                          "--results", str(results))
    assert status == 2 and "unknown key 'epoch' (did you mean epochs" in err
    assert not results.exists()


def test_samples_below_one(capsys, results, demo_root):
    status, err = run_all(capsys, "--data-root", str(demo_root), "--samples", "0", "--results", str(results))
    assert status == 2 and "--samples must be at least 1" in err


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0"], "--seeds must be at least 1; got 0"),
    (["--samples", "2", "--seeds", "3"], "--samples and --seeds do not combine"),
])
def test_seeds_below_one_or_with_samples(capsys, results, demo_root, args, message):
    status, err = run_all(capsys, "--data-root", str(demo_root), *args, "--results", str(results))
    assert status == 2 and message in err
    assert not results.exists()


def test_a_data_root_that_fails_its_check(capsys, results, tmp_path, demo_root):
    broken = tmp_path / "broken"
    broken.mkdir()
    meta = pd.read_csv(demo_root / "HAM10000_metadata.csv")
    meta.to_csv(broken / "HAM10000_metadata.csv", index=False)  # every image missing
    status, err = run_all(capsys, "--data-root", str(broken), "--profile", "smoke", "--results", str(results))
    assert status == 2 and "error(s)" in err and "no image file" in err
    assert not results.exists()


def test_a_data_root_without_a_dataset(capsys, results, tmp_path):
    status, err = run_all(capsys, "--data-root", str(tmp_path / "nowhere"), "--profile", "smoke",
                          "--results", str(results))
    assert status == 2 and "error:" in err
    assert not results.exists()


def test_an_existing_sweep_is_not_overwritten(capsys, results, demo_root):
    (results / "smoke").mkdir(parents=True)
    (results / "smoke" / "sweep.json").write_text(json.dumps({"status": "finished"}))
    status, err = run_all(capsys, "--data-root", str(demo_root), "--profile", "smoke", "--results", str(results))
    assert status == 2 and "already holds a sweep: pass --resume" in err
    assert json.loads((results / "smoke" / "sweep.json").read_text()) == {"status": "finished"}


def test_resume_without_a_sweep(capsys, results):
    status, err = run_all(capsys, "--resume", "--results", str(results), "--name", "smoke")
    assert status == 2 and "nothing to resume" in err
    assert not results.exists()


def test_resume_refuses_to_change_the_sweep(capsys, results):
    status, err = run_all(capsys, "--resume", "--results", str(results), "--samples", "4")
    assert status == 2 and "--resume continues the sweep as it was started; drop --samples" in err


def test_unknown_scheduler_is_an_argparse_error(capsys, results):
    with pytest.raises(SystemExit) as exit_info:
        main(["--scheduler", "hyperband", "--results", str(results)])
    assert exit_info.value.code == 2 and "invalid choice: 'hyperband'" in capsys.readouterr().err


def test_a_missing_tracker_library_names_the_pip_command(capsys, results, demo_root, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    status, err = run_all(capsys, "--data-root", str(demo_root), "--profile", "smoke", "--tracker", "mlflow",
                          "--results", str(results))
    assert status == 2 and "--tracker mlflow needs the mlflow package" in err
    assert "-m pip install -r" in err and err.rstrip().endswith("requirements-tracking.txt")
    assert not results.exists()


def test_wandb_without_an_api_key_or_offline_mode_is_refused(capsys, results, demo_root, monkeypatch, tmp_path):
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc from `wandb login`
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    status, err = run_all(capsys, "--data-root", str(demo_root), "--profile", "smoke", "--tracker", "wandb",
                          "--results", str(results))
    assert status == 2 and "WandB API key" in err and "WANDB_MODE=offline" in err
    assert not results.exists()
