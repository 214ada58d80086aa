"""The duplicate detector's threshold, chosen on the real 200x150 HAM10000 thumbnails.

    python -m benchmarks.duplicates_threshold [--side 128] [--out /tmp/duplicates_threshold]

Runs the detector over all 10015 images (timed, cold cache), then compares the
whitened cosine similarities of the known same-lesion pairs (two images sharing a
lesion_id) with those of every different-lesion pair (about 50 million, histogrammed a
block at a time). Prints, per threshold, the share of same-lesion pairs at or above it
and how many different-lesion pairs it flags; the same for the raw (unwhitened)
features at the threshold that flags as many pairs; and the flagged pairs across the
seed-0 split without and with them. Writes the figure to
benchmarks/results/duplicates_threshold.png.
"""
import argparse
import json
import platform
import resource
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from benchmarks.thumbnails import linked_thumbnails
from core.data.dataset import load_dataset
from core.data.parallel import usable_cpus
from core.data.split import duplicates_report, lesion_split
from core.duplicates import (
    DEFAULT_SIDE,
    DEFAULT_THRESHOLD,
    find_duplicates,
    similarity_blocks,
    sorted_embeddings,
    whiten,
)

REPO = Path(__file__).resolve().parents[1]
BINS = np.linspace(-1, 1, 2001)  # 0.001 wide, so every threshold below is a bin edge
THRESHOLDS = (0.40, 0.45, 0.50, 0.52, 0.55, 0.58, 0.60, 0.65, 0.70)


def same_lesion_similarities(meta, emb: np.ndarray) -> np.ndarray:
    sims = []
    for rows in meta.groupby("lesion_id").indices.values():
        if len(rows) > 1:
            block = emb[rows] @ emb[rows].T
            sims.append(block[np.triu_indices(len(rows), 1)])
    return np.concatenate(sims)


def all_pairs_histogram(emb: np.ndarray) -> np.ndarray:
    counts = np.zeros(len(BINS) - 1, np.int64)
    for _, _, sims in similarity_blocks(emb):
        counts += np.histogram(sims, BINS)[0]  # -inf (each pair's second copy) falls outside
    return counts


def at_or_above(counts: np.ndarray, threshold: float) -> int:
    return int(counts[np.searchsorted(BINS, threshold - 1e-9):].sum())


def distributions(meta, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Same-lesion similarities, and the histogram over BINS of the different-lesion ones."""
    same = same_lesion_similarities(meta, emb)
    return same, all_pairs_histogram(emb) - np.histogram(same, BINS)[0]


def draw(same: np.ndarray, different: np.ndarray, threshold: float, path: Path) -> None:
    fig = Figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2)
    centres = (BINS[:-1] + BINS[1:]) / 2
    same_counts = np.histogram(same, BINS)[0]
    for counts, label in ((same_counts, f"same lesion_id ({len(same)} pairs)"),
                          (different, f"different lesion_id ({different.sum():,} pairs)")):
        coarse = counts.reshape(-1, 10).sum(1)  # 0.01-wide bins for the picture
        left.step(centres.reshape(-1, 10).mean(1), coarse / coarse.sum(), where="mid", label=label)
    left.axvline(threshold, color="k", ls="--", lw=1, label=f"default threshold {threshold}")
    left.set(yscale="log", xlim=(-0.5, 1), xlabel="cosine similarity (whitened Lite0 features)",
             ylabel="share of pairs",
             title="HAM10000 thumbnails: pair similarity")
    left.legend(fontsize=8)
    ts = np.linspace(0.3, 0.8, 251)
    right.plot(ts, [(same >= t).mean() for t in ts], label="same-lesion pairs at or above (share)")
    twin = right.twinx()
    twin.plot(ts, [max(at_or_above(different, t), 0.5) for t in ts], color="C1",
              label="different-lesion pairs flagged (count)")
    twin.set(yscale="log", ylabel="different-lesion pairs flagged")
    right.axvline(threshold, color="k", ls="--", lw=1)
    right.set(xlabel="threshold", ylabel="share of same-lesion pairs at or above", title="what a threshold keeps")
    right.legend(loc="lower left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def peak_mib() -> dict:
    """Peak resident memory of this process and of its largest child (the loader worker)."""
    return {who: round(resource.getrusage(getattr(resource, f"RUSAGE_{who.upper()}")).ru_maxrss / 1024)
            for who in ("self", "children")}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--side", type=int, default=DEFAULT_SIDE)
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    p.add_argument("--out", type=Path, default=Path("/tmp/duplicates_threshold"))
    args = p.parse_args()
    root = linked_thumbnails(args.out)
    ds = load_dataset(root)
    print(f"machine: {platform.machine()}, {usable_cpus()} cores; {len(ds.metadata)} images at "
          f"{args.side}px")

    start = time.perf_counter()
    pairs = find_duplicates(ds, threshold=args.threshold, side=args.side, cache_dir=args.out / "cache")
    seconds, peak = time.perf_counter() - start, peak_mib()
    print(f"detector (embed + pairs): {seconds:.0f} s, peak memory {peak} MiB, {len(pairs)} pairs")

    meta, raw = sorted_embeddings(ds, args.side, args.out / "cache")
    same, different = distributions(meta, whiten(raw)[0])
    print(f"{len(same)} same-lesion pairs, {different.sum()} different-lesion pairs")
    print("threshold  same-lesion at or above  different-lesion flagged")
    table = {}
    for t in sorted({*THRESHOLDS, args.threshold}):
        table[t] = {"same_rate": float((same >= t).mean()), "different_flagged": at_or_above(different, t)}
        print(f"{t:9.2f}  {table[t]['same_rate']:23.3f}  {table[t]['different_flagged']:24d}")
    raw_same, raw_different = distributions(meta, raw)
    flagged = table[args.threshold]["different_flagged"]
    raw_t = BINS[np.argmax(np.cumsum(raw_different[::-1])[::-1] <= flagged)]
    unwhitened = {"threshold": round(float(raw_t), 3), "same_rate": float((raw_same >= raw_t).mean()),
                  "different_flagged": at_or_above(raw_different, raw_t)}
    print(f"raw features, flagging as many ({unwhitened['different_flagged']}): threshold {unwhitened['threshold']}, "
          f"same-lesion rate {unwhitened['same_rate']:.3f}")

    splits = lesion_split(meta, seed=0, duplicates=pairs)
    report = duplicates_report(meta, pairs, splits, seed=0)
    print(f"seed-0 split: {report}")
    figure = REPO / "benchmarks" / "results" / "duplicates_threshold.png"
    draw(same, different, args.threshold, figure)
    summary = {"side": args.side, "threshold": args.threshold, "seconds": round(seconds, 1), "peak_mib": peak,
               "pairs": len(pairs), "same_lesion_pairs": len(same), "table": table, "raw_features": unwhitened,
               "split": report}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    pairs.to_csv(args.out / "pairs.csv", index=False)
    print(f"wrote {figure}, {args.out / 'summary.json'} and {args.out / 'pairs.csv'}")


if __name__ == "__main__":
    main()
