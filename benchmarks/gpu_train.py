"""Core training on one CUDA GPU: the card's ceiling, the device and CPU augmentation paths, and packing.

    python -m benchmarks.gpu_train --data-root carry/ham10000 [--epochs 2] [--workers 15] [--only NAME ...]
    python -m benchmarks.gpu_train --packing --carry carry [--at-once 1 2 4 8]
    python -m benchmarks.gpu_train --dry-run --data-root SMALL_DIR --only b0_224_bf16   # the script on a CPU

DIR is a HAM10000 layout (the real metadata and images: `python -m benchmarks.gpu_study prepare`
writes the one that travels to a GPU machine). Expected on one H200: the rows about 5 minutes
(of which compile about 2), --packing about 4. Run by hand; the README records the figures and
the card, and the raw rows land in benchmarks/results/.

Rows, for efficientnet_b0 @ 224 and efficientnet_b2 @ 260 (batch 64, no pretrained weights:
throughput does not depend on them), in bf16 autocast + channels_last and in fp32:

- ceiling: the same model, batch and precision training on one batch already on the device,
  no augmentation: the card's limit for this model;
- device: `core.training.fit` with augment=device (images held on the GPU, augmented per image);
- cpu: `fit` with augment=cpu, torchvision per item in --workers DataLoader workers;
- compile: the device row with compile=true; the first epoch's extra seconds are the compile time.

Images/s is the fastest epoch after the first; data wait is that epoch's share of time blocked
on the loader; peak memory is torch.cuda.max_memory_allocated.

--packing trains the eight study arms one epoch each at the full profile's sizes, 1, 2, 4 and 8
at a time as separate processes on the one GPU (benchmarks/gpu_study.py's runner), and reports
the wall time, the summed images/s and the peak memory of the card (polled), then records them
for this card in benchmarks/results/packing.json, which the sweep's default share reads
(ray_jobs/packing.py).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
import traceback
from datetime import date
from pathlib import Path

import torch

from benchmarks import gpu_study
from core import results
from core.config import load_config
from core.model import build_model
from core.training import fit
from ray_jobs.packing import PACKING_FILE, read_measurements

REPO = Path(__file__).resolve().parents[1]

RESULTS = REPO / "benchmarks" / "results"
MODELS = [("efficientnet_b0", 224), ("efficientnet_b2", 260)]
BATCH = 64


def on_gpu() -> bool:
    return torch.cuda.is_available()


def peak_memory_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if on_gpu() else 0.0


def accelerator_key() -> str:
    """The card as Ray's accelerator_type names it ("NVIDIA H200" -> "H200")."""
    name = torch.cuda.get_device_name() if on_gpu() else "CPU"
    match = re.search(r"\b([A-Z]+\d+[A-Za-z]*)\b", name.replace("NVIDIA", ""))
    return match.group(1) if match else name


def ceiling(backbone: str, size: int, amp: bool, steps: int = 60) -> dict:
    """Training steps on one batch already on the device: no loader, no augmentation."""
    device = torch.device("cuda" if on_gpu() else "cpu")
    sync = torch.cuda.synchronize if on_gpu() else (lambda: None)
    if on_gpu():
        torch.cuda.reset_peak_memory_stats()
    memory_format = torch.channels_last if amp else torch.contiguous_format
    model = build_model(backbone, "none").to(device, memory_format=memory_format).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(BATCH, 3, size, size, device=device).to(memory_format=memory_format)
    labels = torch.randint(0, 7, (BATCH,), device=device)
    for step in range(steps + 10):
        if step == 10:  # after cuDNN's autotuning
            sync()
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sync()
    return {"train_images_per_s": steps * BATCH / (time.perf_counter() - start), "data_wait": 0.0,
            "peak_gpu_mem_gib": peak_memory_gib()}


def through_fit(args, name: str, backbone: str, size: int, amp: bool, augment: str, compile_model: bool) -> dict:
    cfg = load_config(REPO / "ablations/configs/baseline.yaml", overrides={
        "backbone": backbone, "image_size": size, "batch_size": BATCH, "pretrained": "none", "epochs": args.epochs,
        "num_workers": args.workers, "amp": amp, "channels_last": amp, "augment": augment,
        "compile": compile_model, "cache_dir": str(args.out / "cache"), "device": "auto",
        "bootstrap_replicates": 10})
    if on_gpu():
        torch.cuda.reset_peak_memory_stats()
    fit(cfg, args.data_root, args.out / name)
    history = results.read_history(args.out / name)
    best = history.iloc[1:]["train_images_per_s"].idxmax()
    row = {"train_images_per_s": float(history.loc[best, "train_images_per_s"]),
           "data_wait": float(history.loc[best, "data_wait"]),
           "peak_gpu_mem_gib": peak_memory_gib()}
    if compile_model:
        row["compile_seconds"] = float(history["seconds"].iloc[0] - history["seconds"].iloc[1:].median())
    return row


def rows(args) -> list[dict]:
    cases = []
    for backbone, size in MODELS:
        for amp in (True, False):
            precision = "bf16" if amp else "fp32"
            cases += [(f"{backbone}_{size}_{precision}_{path}", backbone, size, amp, path)
                      for path in ("ceiling", "device", "cpu")]
        cases.append((f"{backbone}_{size}_bf16_compile", backbone, size, True, "compile"))
    out = []
    for name, backbone, size, amp, path in cases:
        if args.only and not any(part in name for part in args.only):
            continue
        try:
            measured = (ceiling(backbone, size, amp, args.ceiling_steps) if path == "ceiling" else
                        through_fit(args, name, backbone, size, amp, "cpu" if path == "cpu" else "device",
                                    compile_model=path == "compile"))
        except Exception:  # one failing case (e.g. out of memory) must not lose the others
            traceback.print_exc()
            continue
        row = {"case": name, "backbone": backbone, "size": size, "batch": BATCH, "path": path,
               "precision": "bf16 autocast + channels_last" if amp else "fp32",
               "loader_workers": args.workers if path == "cpu" else 0, **measured, "card": gpu_study.card()}
        out.append(row)
        with open(args.results / f"gpu_train_{accelerator_key().lower()}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    print("\n| backbone @ side | precision | path | train images/s | of ceiling | data wait | peak GPU memory |")
    print("|---|---|---|---:|---:|---:|---:|")
    limits = {(r["backbone"], r["precision"]): r["train_images_per_s"] for r in out if r["path"] == "ceiling"}
    for r in out:
        limit = limits.get((r["backbone"], r["precision"]))
        share = f"{r['train_images_per_s'] / limit:.0%}" if limit else "-"
        print(f"| {r['backbone']} @ {r['size']} | {r['precision']} | {r['path']} | {r['train_images_per_s']:.0f} | "
              f"{share} | {r['data_wait']:.1%} | {r['peak_gpu_mem_gib']:.1f} GiB |")
    return out


class MemoryPoll(threading.Thread):
    """The card's peak used memory (all processes), polled twice a second."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.running = 0, True

    def run(self) -> None:
        while self.running and on_gpu():
            free, total = torch.cuda.mem_get_info()
            self.peak = max(self.peak, total - free)
            time.sleep(0.5)


def packing(args) -> None:
    rows, key = [], accelerator_key()
    for at_once in args.at_once:
        work = args.out / f"packing_{at_once}"
        poll = MemoryPoll()
        poll.start()
        gpu_study.main(["run", "--carry", str(args.carry), "--out", str(work), "--work", str(work),
                        "--cache-dir", str(args.out / "cache"), "--profile", "smoke" if args.dry_run else "full",
                        "--at-once", str(at_once), "--budget-s", str(args.budget_s), "--set", "epochs=1",
                        "bootstrap_replicates=10"])
        poll.running = False
        record = results.read_sweep_record(work / gpu_study.SWEEP)
        images = 0
        for arm, run in record["arm_runs"].items():
            if run["status"] == "finished":
                metrics = results.read_metrics(work / gpu_study.SWEEP / arm)
                images += sum(metrics["train_counts"].values()) + sum(metrics["synthetic_counts"].values())
        rows.append({"at_once": at_once, "completed": record["status"] == "finished",
                     "wall_seconds": record["training_wall_seconds"],
                     "sum_images_per_s": images / record["training_wall_seconds"],
                     "peak_gib": poll.peak / 2**30})
        print(json.dumps(rows[-1]), flush=True)
    packing_file = args.results / PACKING_FILE.name
    measurements = read_measurements(packing_file)
    measurements[key] = {"card": gpu_study.card(), "date": date.today().isoformat(), "rows": rows}
    packing_file.write_text(json.dumps(measurements, indent=2) + "\n")
    print("\n| arms at once | completed | wall s | summed train images/s | peak GPU memory |")
    print("|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['at_once']} | {r['completed']} | {r['wall_seconds']:.0f} | {r['sum_images_per_s']:.0f} | "
              f"{r['peak_gib']:.1f} GiB |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, default=REPO / "carry" / "ham10000")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, default=15, help="DataLoader workers of the cpu rows")
    p.add_argument("--out", type=Path, default=Path("/tmp/gpu_train"))
    p.add_argument("--only", nargs="*", default=[], help="run only the rows whose name contains one of these")
    p.add_argument("--packing", action="store_true", help="the packing rows instead")
    p.add_argument("--carry", type=Path, default=REPO / "carry")
    p.add_argument("--at-once", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--budget-s", type=float, default=240.0, help="per packing row")
    p.add_argument("--ceiling-steps", type=int, default=60)
    p.add_argument("--dry-run", action="store_true", help="run on the CPU to check the script; rows go to OUT")
    args = p.parse_args(argv)
    if not (on_gpu() or args.dry_run):
        sys.exit("gpu_train: no CUDA device visible; this benchmark is for a GPU machine (or --dry-run)")
    args.out.mkdir(parents=True, exist_ok=True)
    args.results = args.out if args.dry_run else RESULTS
    print(gpu_study.card() + ("; dry run: figures meaningless" if args.dry_run else ""), flush=True)
    packing(args) if args.packing else rows(args)


if __name__ == "__main__":
    main()
