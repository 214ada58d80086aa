"""Core training on one CUDA GPU: images/s and peak GPU memory per backbone, precision and loader.

    python benchmarks/gpu_train.py --data-root DIR [--epochs 3] [--workers 8] [--out /tmp/gpu_train]

DIR is a HAM10000 layout (the real metadata CSV and images). Each case is one `core.train.fit`
of the baseline arm with no pretrained weights (throughput does not depend on them); images/s
is the training rate of the fastest epoch after the first (the first pays worker start-up and
cuDNN autotuning). Writes one JSON line per case to OUT/cases.jsonl as it goes and prints a
Markdown table at the end. Run by hand; the README records the figures and the card.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.config import load_config  # noqa: E402
from core.train import fit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# (backbone, image side, batch size, AMP and channels_last, memory-mapped cache)
CASES = [
    ("efficientnet_b0", 224, 64, True, True),
    ("efficientnet_b0", 224, 64, True, False),
    ("efficientnet_b0", 224, 64, False, True),
    ("efficientnet_b2", 260, 64, True, True),
    ("efficientnet_b2", 260, 64, True, False),
    ("efficientnet_b2", 260, 64, False, True),
]


def case_name(backbone: str, size: int, batch: int, amp: bool, cache: bool) -> str:
    return f"{backbone}_{size}_{'amp' if amp else 'fp32'}_{'cache' if cache else 'decode'}"


def run_case(args, backbone: str, size: int, batch: int, amp: bool, cache: bool) -> dict:
    name = case_name(backbone, size, batch, amp, cache)
    cfg = load_config(REPO / "ablations/configs/baseline.yaml", overrides={
        "backbone": backbone, "image_size": size, "batch_size": batch, "pretrained": "none",
        "epochs": args.epochs, "num_workers": args.workers, "amp": amp, "channels_last": amp,
        "cache": cache, "cache_dir": str(args.out / "cache"), "device": "cuda"})
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    metrics = fit(cfg, args.data_root, args.out / name)
    history = pd.read_csv(args.out / name / "history.csv")
    return {"case": name, "workers": args.workers, "backbone": backbone, "size": size, "batch": batch,
            "precision": "bf16 autocast + channels_last" if amp else "fp32",
            "loader": "memmap cache" if cache else "decode per item",
            "train_images_per_s": float(history["train_images_per_s"].iloc[1:].max()),
            "peak_gpu_mem_gib": torch.cuda.max_memory_allocated() / 2**30,
            "wall_s": time.perf_counter() - start, "test_acc": metrics["test"]["accuracy"]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--out", type=Path, default=Path("/tmp/gpu_train"))
    p.add_argument("--only", nargs="*", default=[], help="run only the cases whose name contains one of these")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_train: no CUDA device visible; this benchmark is for a GPU machine")
    args.out.mkdir(parents=True, exist_ok=True)
    card = f"{torch.cuda.get_device_name()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    print(card, flush=True)
    rows = []
    for case in CASES:
        if args.only and not any(part in case_name(*case) for part in args.only):
            continue
        try:
            row = run_case(args, *case)
        except Exception:  # one failing case (e.g. out of memory) must not lose the others
            traceback.print_exc()
            continue
        rows.append(row)
        with open(args.out / "cases.jsonl", "a") as f:
            f.write(json.dumps({**row, "card": card}) + "\n")
        print(json.dumps(row), flush=True)
    print(f"\n{card}\n")
    print("| backbone @ side | precision | loader | workers | train images/s | peak GPU memory (GiB) |")
    print("|---|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['backbone']} @ {r['size']} | {r['precision']} | {r['loader']} | {r['workers']} | "
              f"{r['train_images_per_s']:.0f} | {r['peak_gpu_mem_gib']:.2f} |")


if __name__ == "__main__":
    main()
