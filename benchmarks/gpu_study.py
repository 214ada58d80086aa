"""The study on one GPU: the eight arms on the real HAM10000 thumbnails, as core processes side by side.

Sized for a GPU machine that takes one command of at most 10 minutes and 64 MiB of files
beside the checkout, and has Python with torch, timm, pandas, scikit-learn and matplotlib
but no Ray, no network and no ImageNet weights. Three steps:

1. Here (the repository's .venv, ../shared/ham10000 beside the checkout), about 20 s:

       .venv/bin/python -m benchmarks.gpu_study prepare --ham ../shared/ham10000 --carry carry

   carry/ (git-ignored) then holds what travels, about 61 MB: carry/ham10000/ (the real
   metadata and the 10015 images at 200x150, 39.7 MB) and carry/weights/ (the offline PyPI
   ImageNet weights of EfficientNet-Lite0 and -Lite2 in timm's naming, as fp16, 9.4 and
   12.2 MB).

2. On the GPU machine, one command, carrying `carry` (expected: under 10 minutes on one
   H200; every arm is stopped at --budget-s, 540 s by default, and reported as such):

       set -o pipefail; python -m benchmarks.gpu_study run --carry carry --out $OUT 2>&1 | tee $OUT/study.log

   It checks the data, makes the seed-0 lesion split and the image caches once, then
   trains the eight arms at the full profile's sizes and epochs, all at once on the one
   GPU (`--at-once`), with `augment: device`. The B0 arms run on Lite0 and the B2 arms on
   Lite2 (the pretrained weights that exist offline). It writes $OUT/study.tar.gz (the sweep
   folder: every run folder without its weights, each arm's log, summary.csv, splits.csv,
   sweep.json).

3. Here again, the sweep's report with the source report's figures beside its own:

       .venv/bin/python -m benchmarks.gpu_study report --archive study.tar.gz --data-root ../shared/ham10000 \
           --out benchmarks/results/gpu_study

Labelled everywhere: 200x150 thumbnails upscaled to 224/260/299 px, Lite backbones in place
of B0/B2; not the source study's exact setting. Tested on CPU at a tiny scale
(tests/test_gpu_study.py: `run --profile smoke`).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from core import io
from core import results as contract
from core.arms import CONFIG_DIR, study_arms
from core.config import load_config, parse_overrides

REPO = Path(__file__).resolve().parents[1]

LITE = {"efficientnet_b0": "tf_efficientnet_lite0", "efficientnet_b2": "tf_efficientnet_lite2"}
SETTING = "EfficientNet-Lite0/Lite2 (offline ImageNet weights) in place of B0/B2, augment on the device"


def label(synthetic: bool) -> str:
    data = "SYNTHETIC demo data, not HAM10000" if synthetic else "real HAM10000, 200x150 thumbnails upscaled"
    return f"{data}; {SETTING}"
SWEEP = "gpu_study"


def weights_file(carry: Path, backbone: str) -> Path:
    return carry / "weights" / f"{backbone}.fp16.pth"


def prepare(ham: Path, carry: Path) -> None:
    """Copy the metadata and thumbnails, and write the Lite weights in timm's naming as fp16."""
    import torch

    from core.model import build_model

    if not (ham / "HAM10000_metadata.csv").is_file() or not (ham / "images_200x150").is_dir():
        sys.exit(f"gpu_study prepare: {ham} lacks HAM10000_metadata.csv and images_200x150/ (see its README)")
    data = carry / "ham10000"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    shutil.copy(ham / "HAM10000_metadata.csv", data)
    shutil.copytree(ham / "images_200x150", data / "images_200x150")
    for backbone in LITE.values():
        model = build_model(backbone, "pypi", 0.0, num_classes=1000)
        half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
        io.atomic_write(weights_file(carry, backbone), lambda tmp, state=half: torch.save(state, tmp))
    size = sum(f.stat().st_size for f in carry.rglob("*") if f.is_file())
    print(f"{carry}: {size / 2**20:.1f} MiB to carry")


def arm_overrides(arm: str, carry: Path, cache_dir: Path, splits_file: Path) -> list[str]:
    backbone = LITE[load_config(CONFIG_DIR / f"{arm}.yaml").backbone]
    return [f"backbone={backbone}", f"pretrained={weights_file(carry, backbone)}", "augment=device",
            "num_workers=0", f"cache_dir={cache_dir}", f"splits_file={splits_file}"]


def prepare_data_once(arms: list[str], profile: str, extra: list[str], data_root: Path, cache_dir: Path,
                      results: Path) -> dict:
    """Check the dataset, split it (seed 0), build each image side's cache and baseline_synth's cVAE
    before any arm starts (the Ray sweep's start and pre-step do the same)."""
    from core.cvae.store import ensure_cvae
    from core.data.check import cached_check, usable_metadata
    from core.data.dataset import load_dataset
    from core.data.split import lesion_split
    from core.training import build_image_caches

    ds = load_dataset(data_root)
    report = cached_check(ds, cache_dir)
    splits_file = contract.write_splits(results, lesion_split(usable_metadata(ds, report, False), seed=0))
    overrides = {**parse_overrides(extra), "cache_dir": str(cache_dir)}
    configs = [load_config(CONFIG_DIR / f"{arm}.yaml", profile, overrides) for arm in arms]
    build_image_caches(configs, data_root, splits_file)
    for cfg in configs:
        if cfg.synthetic != "none":
            ensure_cvae(cfg, ds, splits_file)
    return {"data_fingerprint": ds.fingerprint(), "synthetic_data": ds.synthetic, "splits_file": splits_file}


def launch(arm: str, profile: str, data_root: Path, results: Path, overrides: list[str], threads: int):
    log = open(results / f"{arm}.log", "w")  # noqa: SIM115 - the caller closes it when the process ends
    command = [sys.executable, "-m", "core.train", "--config", str(CONFIG_DIR / f"{arm}.yaml"),
               "--data-root", str(data_root), "--out", str(results / arm), "--profile", profile,
               "--set", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env), log


def run_arms(arms: list[str], args, results: Path, splits_file: Path) -> dict[str, dict]:
    """Train the arms, `args.at_once` at a time; an arm still running at the budget is stopped."""
    cache_dir = args.cache_dir or args.work / "cache"
    threads = max(1, (os.cpu_count() or 2) // min(args.at_once, len(arms)))
    waiting, running, done = list(arms), {}, {}
    deadline = time.monotonic() + args.budget_s
    while waiting or running:
        while waiting and len(running) < args.at_once:
            arm = waiting.pop(0)
            overrides = arm_overrides(arm, args.carry, cache_dir, splits_file) + args.set
            running[arm] = (*launch(arm, args.profile, args.data_root, results, overrides, threads), time.monotonic())
        for arm, (process, log, started) in list(running.items()):
            out_of_time = time.monotonic() > deadline
            if process.poll() is None and not out_of_time:
                continue
            if process.poll() is None:
                process.kill()
            process.wait()
            log.close()
            status = "finished" if process.returncode == 0 else "failed"
            done[arm] = {"status": status, "wall_seconds": round(time.monotonic() - started, 1),
                         "stopped_at_budget": out_of_time and status == "failed"}
            print(f"{arm}: {status} after {done[arm]['wall_seconds']} s")
            del running[arm]
        if time.monotonic() > deadline:
            for arm in waiting:
                done[arm] = {"status": "pending", "wall_seconds": None, "stopped_at_budget": True}
            waiting = []
        time.sleep(1)
    return done


def card() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    return f"CPU only ({os.cpu_count()} cores), torch {torch.__version__}"


def run(args) -> None:
    import timm
    import torch

    results = args.work / SWEEP
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)
    arms = args.arms or study_arms()
    started = contract.now()
    start = time.monotonic()
    facts = prepare_data_once(arms, args.profile, args.set, args.data_root, args.cache_dir or args.work / "cache",
                              results)
    print(f"{card()}; {label(facts['synthetic_data'])}")
    print(f"data checked, split and cached in {time.monotonic() - start:.0f} s")
    training = time.monotonic()
    done = run_arms(arms, args, results, facts.pop("splits_file"))
    training = time.monotonic() - training
    contract.write_summary(results, [contract.run_summary_row(arm, results / arm, done[arm]["status"],
                                                              done[arm]["wall_seconds"]) for arm in arms])
    record = contract.sweep_started({
        "name": SWEEP, "profile": args.profile, "data_root": str(args.data_root), **facts, "split_seed": 0,
        "arms": arms, "runner": f"benchmarks/gpu_study.py, {min(args.at_once, len(arms))} core processes at once",
        "label": label(facts["synthetic_data"]), "card": card(), "wall_seconds": round(time.monotonic() - start, 1),
        "training_wall_seconds": round(training, 1), "arm_runs": done,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__},
        "started": started})
    finished = all(d["status"] == "finished" for d in done.values())
    contract.write_sweep_record(results, contract.sweep_ended(record, "finished" if finished else "failed"))
    args.out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(args.out / "study.tar.gz", "w:gz") as archive:
        archive.add(results, arcname=SWEEP, filter=lambda info: None if info.name.endswith(".pt") else info)
    print(f"study: {sum(d['status'] == 'finished' for d in done.values())}/{len(arms)} arms finished in "
          f"{time.monotonic() - start:.0f} s; {args.out / 'study.tar.gz'}")


def report(args) -> None:
    from dashboards.reporting import build_report

    with tarfile.open(args.archive) as archive:
        archive.extractall(args.out, filter="data")
    sweep_dir = args.out / SWEEP
    record = contract.read_sweep_record(sweep_dir)
    if args.data_root:  # the machine it ran on held the data elsewhere
        contract.write_sweep_record(sweep_dir, {**record, "data_root": str(args.data_root.resolve())})
    print(build_report(sweep_dir, args.out / "report", gradcam_examples=0))


def main(argv: list[str] | None = None) -> None:
    sys.stdout.reconfigure(line_buffering=True)  # progress shows through `tee` as it happens
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    p = steps.add_parser("prepare", help="copy what travels into CARRY")
    p.add_argument("--ham", type=Path, default=REPO.parent / "shared" / "ham10000")
    p.add_argument("--carry", type=Path, default=REPO / "carry")
    r = steps.add_parser("run", help="train the arms on this machine's GPU")
    r.add_argument("--carry", type=Path, default=REPO / "carry")
    r.add_argument("--data-root", type=Path, help="default CARRY/ham10000")
    r.add_argument("--out", type=Path, required=True, help="where study.tar.gz goes")
    r.add_argument("--work", type=Path, default=Path("/tmp/gpu_study"), help="run folders (and caches)")
    r.add_argument("--cache-dir", type=Path, help="image caches and the cVAE (default WORK/cache)")
    r.add_argument("--profile", default="full", help="full (the study), or smoke for a CPU test")
    r.add_argument("--arms", nargs="+", help="default: the eight study arms")
    r.add_argument("--at-once", type=int, default=8, help="arms trained at the same time")
    r.add_argument("--budget-s", type=float, default=540.0, help="arms still running then are stopped")
    r.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more config overrides for every arm")
    b = steps.add_parser("report", help="the report of a study.tar.gz")
    b.add_argument("--archive", type=Path, required=True)
    b.add_argument("--data-root", type=Path, help="the dataset on this machine, for the report's data section")
    b.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.step == "prepare":
        prepare(args.ham, args.carry)
    elif args.step == "run":
        args.data_root = args.data_root or args.carry / "ham10000"
        run(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
