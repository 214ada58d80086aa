"""Sweeps for tests, built without Ray.

`build_smoke_sweep` trains every study arm with `core.train` (smoke profile, `augment=device` named) and
writes the sweep files a Ray sweep writes: summary.csv, splits.csv, sweep.json.
`fake_arm` writes a run folder from random predictions in milliseconds, finished
(with metrics.json) or still running (config and a partial history only); `make_sweep`
puts such arms together into a sweep with any mix of statuses.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core import io, results
from core.config import RunConfig, load_config, same_runs
from core.evaluation import evaluate_run
from core.labels import CLASSES, NUM_CLASSES
from core.results import predictions_frame, run_summary_row, write_summary

CONFIGS = Path(__file__).resolve().parents[1] / "ablations" / "configs"


def arm_names() -> list[str]:
    from core.arms import study_arms

    return study_arms(CONFIGS)


def build_smoke_sweep(sweep_dir: Path, data_root: Path, arms: list[str] | None = None) -> Path:
    """Train each arm (default: every config) on `data_root` into `sweep_dir/<arm>`."""
    import torch

    from core.train import main as train

    rows = []
    threads = torch.get_num_threads()
    # The smoke models are tiny: with two threads, synchronisation costs more than the
    # work, ten times over on a busy 2-core machine.
    torch.set_num_threads(1)
    try:
        for arm in arms or arm_names():
            start = time.perf_counter()
            status = train(["--config", str(CONFIGS / f"{arm}.yaml"), "--data-root", str(data_root),
                            "--out", str(sweep_dir / arm), "--profile", "smoke", "--set", "augment=device"])
            assert status == 0, f"smoke training of {arm} failed"
            rows.append(run_summary_row(arm, sweep_dir / arm, "finished", round(time.perf_counter() - start, 1)))
    finally:
        torch.set_num_threads(threads)
    write_summary(sweep_dir, rows)
    results.write_splits(sweep_dir, results.read_splits(sweep_dir / rows[0]["arm"]))
    metrics = results.read_metrics(sweep_dir / rows[0]["arm"])
    configs = {arm: load_config(CONFIGS / f"{arm}.yaml", "smoke") for arm in arms or arm_names()}
    write_sweep_json(sweep_dir, data_root, synthetic=metrics["synthetic_data"],
                     fingerprint=metrics["data_fingerprint"], profile="smoke", same_run_as=same_runs(configs))
    return sweep_dir


def write_sweep_json(sweep_dir: Path, data_root: Path | None, synthetic: bool, status: str = "finished",
                     fingerprint: str = "0" * 16, profile: str = "smoke", same_run_as: dict | None = None) -> None:
    """sweep.json through the contract's own builders, as the Ray sweep writes it."""
    record = results.sweep_started({
        "profile": profile, "data_root": None if data_root is None else str(data_root),
        "data_fingerprint": fingerprint, "synthetic_data": synthetic, "split_seed": 0, "git_commit": "test",
        "same_run_as": same_run_as or {},
        "versions": {"python": platform.python_version()}})
    results.write_sweep_record(sweep_dir, record if status == "running" else results.sweep_ended(record, status))


def make_sweep(root: Path, name: str, arms: dict[str, str], synthetic: bool = True,
               seeds: dict[str, int] | None = None, signal: dict[str, float] | None = None) -> Path:
    """A sweep whose arms have the given statuses; finished and running arms get run folders.

    An arm named in `seeds` also gets that many runs in all: its own and the others under seeds/.
    An arm named in `signal` predicts with that logit margin for the true class (default 2).
    """
    sweep = root / name
    rows = []
    for seed, (arm, status) in enumerate(arms.items()):
        if status in ("finished", "running"):
            fake_arm(sweep / arm, seed=seed, finished=status == "finished", synthetic=synthetic,
                     signal=(signal or {}).get(arm, 2.0))
        for extra in range(1, (seeds or {}).get(arm, 1)):
            fake_arm(sweep / arm / "seeds" / f"seed_{extra}", seed=100 * extra + seed, synthetic=synthetic,
                     signal=(signal or {}).get(arm, 2.0))
        rows.append(run_summary_row(arm, sweep / arm, status, 10.0 * seed if status == "finished" else None))
    sweep.mkdir(parents=True, exist_ok=True)
    write_summary(sweep, rows)
    write_sweep_json(sweep, None, synthetic, status="running" if "running" in arms.values() else "finished")
    return sweep


def fake_arm(run_dir: Path, seed: int = 0, finished: bool = True, epochs: int = 3, n: int = 70,
             synthetic: bool = True, signal: float = 2.0) -> Path:
    """A run folder from random (but better than chance: `signal` is the true class's logit margin)
    predictions; no checkpoint."""
    rng = np.random.default_rng(seed)
    config = RunConfig(name=run_dir.name, epochs=epochs, bootstrap_replicates=50).to_dict()
    results.write_config(run_dir, config)
    done = epochs if finished else max(1, epochs - 2)
    history = pd.DataFrame({"epoch": range(1, done + 1), "train_loss": rng.uniform(0.5, 2, done),
                            "val_loss": rng.uniform(0.5, 2, done), "val_acc": rng.uniform(0, 1, done),
                            "val_macro_f1": rng.uniform(0, 1, done), "val_mel_recall": rng.uniform(0, 1, done),
                            "lr": 3e-4, "seconds": 1.0})
    io.write_csv(run_dir / results.HISTORY, history)
    if not finished:
        return run_dir
    frames = {}
    for split in ("val", "test"):
        labels = np.arange(n) % NUM_CLASSES
        logits = rng.normal(size=(n, NUM_CLASSES)) + signal * np.eye(NUM_CLASSES)[labels]
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        frames[split] = predictions_frame([f"IMG_{split}_{i:04d}" for i in range(n)], labels, probs)
        results.write_predictions(run_dir, split, frames[split])
    test_ids = frames["test"]["image_id"]
    test_info = pd.DataFrame({"lesion_id": [f"L{i // 2}" for i in range(n)],  # two images per lesion
                              "sex": rng.choice(["female", "male"], n), "age": rng.choice([35.0, 55.0, 70.0], n),
                              "localization": rng.choice(["back", "face", "trunk"], n)}, index=test_ids)
    splits = pd.concat([frames["val"].assign(split="val", lesion_id=frames["val"]["image_id"]),
                        frames["test"].assign(split="test", lesion_id=list(test_info["lesion_id"]))])
    results.write_splits(run_dir, splits[["image_id", "lesion_id", "dx", "split"]])
    metrics = evaluate_run(frames["val"], frames["test"], test_info, replicates=50, seed=seed)
    metrics.update(selected_epoch=int(rng.integers(1, epochs + 1)), select_on=config["select_on"],
                   epochs_run=epochs, synthetic_data=synthetic, data_fingerprint="0" * 16,
                   train_counts=dict.fromkeys(CLASSES, 10))
    results.write_metrics(run_dir, metrics)
    return run_dir
