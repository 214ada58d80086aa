"""The leak audit on the real 200x150 HAM10000 thumbnails: same-lesion recall against flags.

    python -m benchmarks.leak_audit [--neighbours 20] [--out /tmp/leak_audit]

Runs the two-stage audit over all 10015 images from a cold cache (timed, peak memory):
k-nearest-neighbour candidates from the whitened Lite0 embedding, each verified by keypoint
inliers, keeping the pairs under one lesion_id too. The 3,207 pairs of images that share a
lesion_id are the known positives: recall is the share of all of them that the audit flags,
and the cost is the number of different-lesion pairs it flags. Both are given per inlier
threshold, beside the old rule (one global threshold on the whitened cosine similarity, every
pair of the 50 million histogrammed a block of rows at a time). Writes the curve to
benchmarks/results/leak_audit.png.
"""
import argparse
import json
import platform
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmarks.thumbnails import linked_thumbnails
from core.data.dataset import load_dataset
from core.data.parallel import usable_cpus
from core.duplicates import (
    BLOCK_ROWS,
    DEFAULT_MIN_INLIERS,
    DEFAULT_NEIGHBOURS,
    DEFAULT_SIDE,
    candidate_pairs,
    neighbour_pairs,
    sorted_embeddings,
    whiten,
)

REPO = Path(__file__).resolve().parents[1]
BINS = np.linspace(-1, 1, 2001)  # 0.001 wide
INLIER_THRESHOLDS = (4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 20, 30)
NEIGHBOURS = (10, 20, 30, 40, 60, 80)  # the curves drawn, for each k up to the run's
COSINE_THRESHOLDS = (0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70)


def same_lesion_pairs(meta) -> set[tuple[str, str]]:
    pairs = set()
    for ids in meta.groupby("lesion_id")["image_id"]:
        ids = sorted(ids[1])
        pairs |= {(a, b) for n, a in enumerate(ids) for b in ids[n + 1:]}
    return pairs


def cosine_curve(meta, white: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Same-lesion similarities and the histogram over BINS of the different-lesion ones (old rule)."""
    lesions = meta["lesion_id"].to_numpy()
    counts, same = np.zeros(len(BINS) - 1, np.int64), []
    for start in range(0, len(white), BLOCK_ROWS):
        sims = white[start:start + BLOCK_ROWS] @ white.T
        rows, cols = np.indices(sims.shape)
        later = cols > rows + start
        one_lesion = lesions[start:start + BLOCK_ROWS][:, None] == lesions[None, :]
        counts += np.histogram(sims[later & ~one_lesion], BINS)[0]
        same.append(sims[later & one_lesion])
    return np.concatenate(same), counts


def flagged_at(counts: np.ndarray, t: float) -> int:
    return int(counts[np.searchsorted(BINS, t - 1e-9):].sum())


def neighbour_keys(meta, white: np.ndarray, ks) -> dict[int, pd.Index]:
    """For each k, its candidate pairs as "image_id_a image_id_b" keys, from the embeddings alone:
    the run's own candidates (of the largest k) restricted to a smaller k."""
    ids = meta["image_id"].to_numpy()
    keys = {}
    for k in ks:
        i, j, _ = neighbour_pairs(white, k=k)
        keys[k] = pd.Index(ids[i]) + " " + pd.Index(ids[j])
    return keys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--side", type=int, default=DEFAULT_SIDE)
    p.add_argument("--neighbours", type=int, default=DEFAULT_NEIGHBOURS)
    p.add_argument("--candidates-only", action="store_true",
                   help="embed and give the candidates' recall ceiling per k, without verifying (compares embeddings)")
    p.add_argument("--out", type=Path, default=Path("/tmp/leak_audit"))
    args = p.parse_args()
    root = linked_thumbnails(args.out)
    ds = load_dataset(root)
    print(f"machine: {platform.machine()}, {usable_cpus()} cores; {len(ds.metadata)} images, embedding at "
          f"{args.side}px, k = {args.neighbours}")
    start = time.perf_counter()
    meta, raw = sorted_embeddings(ds, args.side, args.out / "cache")
    white = whiten(raw)[0]
    positives = same_lesion_pairs(meta)
    ks = [k for k in NEIGHBOURS if k < args.neighbours] + [args.neighbours]
    keys = neighbour_keys(meta, white, ks)
    for k, key in keys.items():
        same = sum(tuple(pair.split(" ")) in positives for pair in key)
        print(f"k = {k}: {len(key)} candidate pairs, {same} of the {len(positives)} same-lesion pairs among them "
              f"(recall ceiling {same / len(positives):.3f})")
    if args.candidates_only:
        return
    pairs = candidate_pairs(ds, k=args.neighbours, side=args.side, cache_dir=args.out / "cache",
                            keep_same_lesion=True)
    seconds = time.perf_counter() - start
    peak = {who: round(resource.getrusage(getattr(resource, f"RUSAGE_{who.upper()}")).ru_maxrss / 1024)
            for who in ("self", "children")}
    print(f"audit (embed, neighbours, verify {len(pairs)} candidates): {seconds:.0f} s, peak memory {peak} MiB")

    same = (pairs["lesion_id_a"] == pairs["lesion_id_b"]).to_numpy()
    inliers = pairs["inliers"].to_numpy()
    run_keys = pairs["image_id_a"] + " " + pairs["image_id_b"]
    masks = {k: run_keys.isin(key).to_numpy() for k, key in keys.items()}

    def point(k: int, t: int) -> dict:
        flagged = masks[k] & (inliers >= t)
        return {"recall": float((flagged & same).sum() / len(positives)),
                "different_flagged": int((flagged & ~same).sum())}

    new = {k: {t: point(k, t) for t in INLIER_THRESHOLDS} for k in ks}
    same_sims, different = cosine_curve(meta, white)
    old = {t: {"recall": float((same_sims >= t).mean()), "different_flagged": flagged_at(different, t)}
           for t in COSINE_THRESHOLDS}
    print("new: k neighbours, inliers >= t | recall | different-lesion pairs flagged")
    for k, rows in new.items():
        for t, row in rows.items():
            print(f"  k = {k:3d}, t = {t:3d}: {row['recall']:.3f} {row['different_flagged']:7d}")
    print("old: whitened cosine >= t over all pairs | recall | different-lesion pairs flagged")
    for t, row in old.items():
        print(f"  {t:.2f} {row['recall']:.3f} {row['different_flagged']:9d}")

    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    ts = np.arange(3, 60)
    for k in ks:
        curve = [point(k, t) for t in ts]
        ax.plot([max(c["different_flagged"], 0.5) for c in curve], [c["recall"] for c in curve], marker=".", ms=3,
                label=f"new: k = {k} neighbours, then keypoint inliers >= t")
    cs = np.linspace(0.3, 0.9, 121)
    ax.plot([max(flagged_at(different, c), 0.5) for c in cs], [(same_sims >= c).mean() for c in cs], "k--",
            label="old: whitened cosine >= t over all pairs")
    if DEFAULT_NEIGHBOURS in masks:
        default = point(DEFAULT_NEIGHBOURS, DEFAULT_MIN_INLIERS)
        ax.plot([default["different_flagged"]], [default["recall"]], "k*", ms=12,
                label=f"default: k = {DEFAULT_NEIGHBOURS}, >= {DEFAULT_MIN_INLIERS} inliers")
    ax.axvline(500, color="grey", ls=":", lw=1)
    ax.set(xscale="log", xlabel="different-lesion pairs flagged",
           ylabel=f"recall of all {len(positives)} same-lesion pairs", title="Leak audit on the HAM10000 thumbnails")
    ax.legend(fontsize=7)
    fig.tight_layout()
    figure = REPO / "benchmarks" / "results" / "leak_audit.png"
    fig.savefig(figure, dpi=110)
    summary = {"side": args.side, "neighbours": args.neighbours, "seconds": round(seconds, 1), "peak_mib": peak,
               "candidates": len(pairs), "same_lesion_pairs": len(positives), "new": new, "old": old}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    pairs.to_csv(args.out / "candidates.csv", index=False)
    print(f"wrote {figure} and {args.out / 'summary.json'}")


if __name__ == "__main__":
    main()
