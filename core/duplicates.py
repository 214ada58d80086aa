"""Near-duplicate images under different lesion_ids, found from the pixels.

Two stages, as copy detection does it. Candidates: every image is embedded by the offline
ImageNet Lite0 backbone (its pooled features, L2-normalised, cached), the embeddings are
whitened on the data being audited (raw ImageNet features are dominated by what every
dermoscopy photo shares, pink skin and a brown blob; whitening weighs each direction by how
rarely the data varies along it), and each image proposes its k nearest neighbours by
cosine similarity, a block of rows at a time, so the N x N matrix never exists.
Verification: each candidate pair is scored by local features under a geometric fit
(`core.matching`: SIFT keypoints, mutual ratio-test matches, RANSAC inliers of one
similarity transform, straight or mirrored). The rule: a pair is flagged when it is among
either image's k nearest neighbours and has at least `min_inliers` inliers. Within one
dataset, pairs that already share a lesion_id are dropped (the split keeps them together
anyway); across two datasets (`against`) every pair is kept, since a lesion in both is the
leak being looked for.
"""
from __future__ import annotations

import multiprocessing
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch.utils.data import DataLoader

from core.data.cache import cache_key, default_cache_dir
from core.data.dataset import Ham10000, load_dataset
from core.data.images import ImageRef, load_rgb
from core.data.isic2018 import GROUND_TRUTH_NAMES, load_external
from core.data.pairs import PAIR_COLUMNS
from core.inference import EvalPipeline, over_dataset
from core.io import atomic_write
from core.matching import Features, at_matching_scale, features, inlier_matches, score
from core.model import build_model

BACKBONE = "tf_efficientnet_lite0"  # the one with offline weights (pretrained='pypi') and the cheapest
DEFAULT_SIDE = 128  # the embedding's input; the defaults below are measured on the real HAM10000 thumbnails
DEFAULT_NEIGHBOURS = 80  # benchmarks/README.md, "Leak audit": recall against flags and time, per k
DEFAULT_MIN_INLIERS = 10  # the same: the fewest inliers that keeps the demo's look-alike lesions out
WORKERS = 2  # processes extracting and matching keypoints
SHRINKAGE = 0.2  # covariance shrinkage towards the identity in the whitening
BLOCK_ROWS = 1024  # similarity rows held at once: 1024 x N float32 (41 MB for N = 10015)
BATCH = 64


def load_images(root: str | Path, metadata: str | Path | None = None) -> Ham10000:
    """A HAM10000-format dataset, or the ISIC 2018 Task 3 test set in either ground-truth format."""
    if metadata is None and any(next(Path(root).rglob(name), None) for name in GROUND_TRUTH_NAMES):
        external = load_external(root)
        truth = external.ground_truth
        images = dict(zip(external.image_ids, external.images, strict=True))
        return Ham10000(external.root, truth.path, truth.frame, images)
    return load_dataset(root, metadata)


def embed_images(ds: Ham10000, ids: list[str], side: int = DEFAULT_SIDE,
                 cache_dir: str | Path | None = None) -> np.ndarray:
    """(len(ids), features) float32 unit vectors, cached beside the image caches.

    The key is the image cache's (dataset fingerprint, ids, side) plus the backbone.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache_dir / f"{cache_key(ds, ids, side)}_{BACKBONE}.embeddings.npy"
    if path.exists():
        return np.load(path)
    model = build_model(BACKBONE, "pypi", num_classes=0).eval()
    if ids:
        pipeline = EvalPipeline(side, False, tuple(model.pretrained_cfg["mean"]), tuple(model.pretrained_cfg["std"]))
        images = pipeline.files([ds.images[i] for i in ids], np.zeros(len(ids), dtype=int), ids)
        # One loader worker decodes the next batch while the model runs on this one.
        loader = DataLoader(images, batch_size=BATCH, num_workers=1)
        embeddings = over_dataset(lambda x: torch.nn.functional.normalize(model(x), dim=1), loader,
                                  torch.device("cpu"), desc=f"embed {side}px").astype(np.float32)
    else:
        embeddings = np.zeros((0, model.num_features), np.float32)

    def save(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.save(f, embeddings)

    atomic_write(path, save)
    return embeddings


def whiten(*parts: np.ndarray, shrinkage: float = SHRINKAGE) -> list[np.ndarray]:
    """Each part centred and whitened with the covariance of all parts together, then L2-normalised.

    The covariance is shrunk towards a multiple of the identity, so the directions a small
    dataset barely varies along are not blown up into noise.
    """
    stacked = np.concatenate(parts).astype(np.float64)
    mean = stacked.mean(0)
    cov = np.cov(stacked, rowvar=False, bias=True)
    cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / len(cov) * np.eye(len(cov))
    values, vectors = np.linalg.eigh(cov)
    transform = vectors / np.sqrt(values)
    white = []
    for part in parts:
        w = (part - mean) @ transform
        white.append((w / np.linalg.norm(w, axis=1, keepdims=True)).astype(np.float32))
    return white


def neighbour_pairs(a: np.ndarray, b: np.ndarray | None = None,
                    k: int = DEFAULT_NEIGHBOURS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row of `a`, row of `b` and cosine similarity of each row of `a` with its `k` most similar rows
    of `b`, `BLOCK_ROWS` rows of `a` at a time. Without `b`, `a` against itself: an image is not its
    own neighbour, and a pair in which either image is among the other's k comes once (row < column)."""
    other = a if b is None else b
    k = min(k, len(other) - (b is None))
    found = []
    for start in range(0, len(a) if k > 0 else 0, BLOCK_ROWS):
        sims = a[start:start + BLOCK_ROWS] @ other.T
        rows = np.arange(len(sims))
        if b is None:
            sims[rows, start + rows] = -np.inf
        j = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        found.append((np.repeat(rows + start, k), j.ravel(), np.take_along_axis(sims, j, axis=1).ravel()))
    if not found:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32)
    i, j, sims = (np.concatenate(part) for part in zip(*found, strict=True))
    if b is None:
        i, j = np.minimum(i, j), np.maximum(i, j)
    unique = np.unique(np.stack([i, j]), axis=1, return_index=True)[1]
    return i[unique], j[unique], sims[unique]


_FEATURES: dict[ImageRef, Features] = {}  # what forked matching workers read, instead of pickling it to each


def _one_blas_thread() -> None:
    """A worker's BLAS on one thread: the two workers already fill the cores, and BLAS threads
    contending for them slow a 200 x 200 match tenfold."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


def _features_of(ref: ImageRef) -> Features:
    return features(np.asarray(load_rgb(ref)))


def _score_pairs(pairs: list[tuple[ImageRef, ImageRef]]) -> list[int]:
    return [score(_FEATURES[a], _FEATURES[b]) for a, b in pairs]


def verify(paths: list[tuple[ImageRef, ImageRef]], workers: int = WORKERS) -> np.ndarray:
    """The keypoint inliers (`core.matching.score`) of each pair of images."""
    unique = sorted({p for pair in paths for p in pair}, key=str)
    context = multiprocessing.get_context("fork")
    # OpenCV sequential while the workers run: they fill the cores, and a forked child that
    # touches the thread pool it inherited from this process can hang.
    opencv_threads = cv2.getNumThreads()
    cv2.setNumThreads(0)
    try:
        with context.Pool(workers, initializer=_one_blas_thread) as pool:
            _FEATURES.update(zip(unique, pool.imap(_features_of, unique, chunksize=64), strict=True))
        chunks = [paths[s:s + 512] for s in range(0, len(paths), 512)]
        with context.Pool(workers, initializer=_one_blas_thread) as pool:
            scores = [s for chunk in pool.imap(_score_pairs, chunks) for s in chunk]
    finally:
        _FEATURES.clear()
        cv2.setNumThreads(opencv_threads)
    return np.array(scores, dtype=int)


def find_duplicates(ds: Ham10000, against: Ham10000 | None = None, k: int = DEFAULT_NEIGHBOURS,
                    min_inliers: int = DEFAULT_MIN_INLIERS, side: int = DEFAULT_SIDE,
                    cache_dir: str | Path | None = None) -> pd.DataFrame:
    """The flagged pairs, most inliers first, as the duplicates file holds them."""
    pairs = candidate_pairs(ds, against, k, side, cache_dir)
    return pairs[pairs["inliers"] >= min_inliers].reset_index(drop=True)


def candidate_pairs(ds: Ham10000, against: Ham10000 | None = None, k: int = DEFAULT_NEIGHBOURS,
                    side: int = DEFAULT_SIDE, cache_dir: str | Path | None = None,
                    keep_same_lesion: bool = False) -> pd.DataFrame:
    """Every k-nearest-neighbour pair with its similarity and keypoint inliers, most inliers first.

    `keep_same_lesion` keeps the pairs under one lesion_id too: the known positives a
    benchmark measures recall on."""
    meta_a, emb_a = sorted_embeddings(ds, side, cache_dir)
    if against is None:
        meta_b, (white_a,), white_b = meta_a, whiten(emb_a), None
    else:
        meta_b, emb_b = sorted_embeddings(against, side, cache_dir)
        white_a, white_b = whiten(emb_a, emb_b)
    i, j, sims = neighbour_pairs(white_a, white_b, k)
    a, b = meta_a.iloc[i].reset_index(drop=True), meta_b.iloc[j].reset_index(drop=True)
    pairs = pd.DataFrame({
        "image_id_a": a["image_id"], "image_id_b": b["image_id"],
        "lesion_id_a": a["lesion_id"], "lesion_id_b": b["lesion_id"],
        "dx_a": a["dx"], "dx_b": b["dx"], "similarity": np.round(sims.astype(float), 4),
    })
    if against is None and not keep_same_lesion:
        pairs = pairs[pairs["lesion_id_a"] != pairs["lesion_id_b"]].reset_index(drop=True)
    other = against or ds
    files = [(ds.images[x], other.images[y]) for x, y in zip(pairs["image_id_a"], pairs["image_id_b"],
                                                                       strict=True)]
    pairs["inliers"] = verify(files) if files else np.zeros(0, int)
    return pairs[list(PAIR_COLUMNS)].sort_values(["inliers", "similarity", "image_id_a", "image_id_b"],
                                                 ascending=[False, False, True, True], ignore_index=True)


def sorted_embeddings(ds: Ham10000, side: int = DEFAULT_SIDE,
                      cache_dir: str | Path | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The metadata sorted by image_id, and its images' embeddings in that order."""
    meta = ds.metadata.sort_values("image_id").reset_index(drop=True)
    return meta, embed_images(ds, list(meta["image_id"]), side, cache_dir)


def _side_by_side(rgb_a: np.ndarray, rgb_b: np.ndarray) -> tuple[np.ndarray, int]:
    """Both images at the matcher's scale on one canvas, and where the second one starts."""
    a, b = at_matching_scale(rgb_a), at_matching_scale(rgb_b)
    canvas = np.full((max(len(a), len(b)), a.shape[1] + b.shape[1], 3), 255, np.uint8)
    canvas[:len(a), :a.shape[1]], canvas[:len(b), a.shape[1]:] = a, b
    return canvas, a.shape[1]


def write_review_sheet(pairs: pd.DataFrame, ds: Ham10000, against: Ham10000 | None, path: str | Path,
                       top: int = 24, per_row: int = 3) -> Path:
    """A PNG grid of the `top` pairs with the most inliers: each pair's two images side by side,
    its inlier keypoint matches drawn between them, its inliers and similarity under it."""
    shown = pairs.head(top)
    rows = max(1, -(-len(shown) // per_row))
    fig = Figure(figsize=(4.4 * per_row, 2.2 * rows + 0.6))
    synthetic = ds.synthetic or (against is not None and against.synthetic)
    fig.suptitle(f"{len(pairs)} flagged pair(s), top {len(shown)} shown"
                 + (" (SYNTHETIC demo data)" if synthetic else ""), fontsize=11)
    axes = fig.subplots(rows, per_row, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, pair in zip(axes.flat, shown.itertuples(), strict=False):
        rgb_a = np.asarray(load_rgb(ds.images[pair.image_id_a]))
        rgb_b = np.asarray(load_rgb((against or ds).images[pair.image_id_b]))
        canvas, offset = _side_by_side(rgb_a, rgb_b)
        points_a, points_b = inlier_matches(features(rgb_a), features(rgb_b))
        ax.imshow(canvas)
        for (xa, ya), (xb, yb) in zip(points_a, points_b, strict=True):
            ax.plot([xa, xb + offset], [ya, yb], color="lime", linewidth=0.5, alpha=0.8)
        ax.set_title(f"{pair.image_id_a} ({pair.dx_a}) {pair.lesion_id_a}\n{pair.image_id_b} ({pair.dx_b}) "
                     f"{pair.lesion_id_b}", fontsize=7)
        ax.text(0.5, -0.04, f"{pair.inliers} inliers, similarity {pair.similarity:.3f}", transform=ax.transAxes,
                ha="center", va="top", fontsize=8)
    if shown.empty:
        fig.text(0.5, 0.5, "no pairs flagged", ha="center", fontsize=12)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
