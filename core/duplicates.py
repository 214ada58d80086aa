"""Near-duplicate images under different lesion_ids, found from the pixels.

Every image is embedded by the offline ImageNet Lite0 backbone (its pooled features,
L2-normalised, cached). Before comparing, the embeddings are whitened on the data being
audited: raw ImageNet features are dominated by what every dermoscopy photo shares
(pink skin, a brown blob), so raw cosine similarity ranks look-alike lesions as high as
copies; whitening weighs each direction by how rarely the data varies along it. Pairs
whose cosine similarity reaches a threshold are kept, computed a block of rows at a time,
so the N x N matrix never exists. Within one dataset, pairs that already share a
lesion_id are dropped (the split keeps them together anyway); across two datasets
(`against`) every pair is kept, since a lesion in both is the leak being looked for.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch.utils.data import DataLoader

from core.data.cache import cache_key, default_cache_dir
from core.data.dataset import Ham10000, load_dataset
from core.data.images import load_rgb
from core.data.isic2018 import GROUND_TRUTH_NAMES, load_external
from core.data.pairs import PAIR_COLUMNS
from core.inference import EvalPipeline, over_dataset
from core.io import atomic_write
from core.model import build_model

BACKBONE = "tf_efficientnet_lite0"  # the one with offline weights (pretrained='pypi') and the cheapest
# Measured on the real HAM10000 thumbnails: README, "Near-duplicate images".
DEFAULT_SIDE = 128
DEFAULT_THRESHOLD = 0.55
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


def similarity_blocks(a: np.ndarray, b: np.ndarray | None = None,
                      block: int = BLOCK_ROWS) -> Iterator[tuple[int, int, np.ndarray]]:
    """Cosine similarities of `a`'s rows with `b`'s rows, `block` rows of `a` at a time.

    Yields (first row, first column, similarities). Without `b`, each row of `a` meets only
    the rows after it: every unordered pair once, entries on and below the diagonal -inf.
    """
    for start in range(0, len(a), block):
        rows = a[start:start + block]
        if b is not None:
            yield start, 0, rows @ b.T
            continue
        sims = rows @ a[start:].T
        sims[np.arange(len(rows))[:, None] >= np.arange(sims.shape[1])[None, :]] = -np.inf
        yield start, start, sims


def similar_pairs(a: np.ndarray, b: np.ndarray | None = None,
                  threshold: float = DEFAULT_THRESHOLD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row of `a`, row of `b` (or of `a`) and similarity of every pair at or above `threshold`."""
    found = []
    for row0, col0, sims in similarity_blocks(a, b):
        i, j = np.nonzero(sims >= threshold)
        found.append((i + row0, j + col0, sims[i, j]))
    if not found:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32)
    i, j, sims = (np.concatenate(part) for part in zip(*found, strict=True))
    return i, j, sims


def find_duplicates(ds: Ham10000, against: Ham10000 | None = None, threshold: float = DEFAULT_THRESHOLD,
                    side: int = DEFAULT_SIDE, cache_dir: str | Path | None = None) -> pd.DataFrame:
    """The pairs above `threshold`, most similar first, as the duplicates file holds them."""
    meta_a, emb_a = sorted_embeddings(ds, side, cache_dir)
    if against is None:
        meta_b, (white_a,), white_b = meta_a, whiten(emb_a), None
    else:
        meta_b, emb_b = sorted_embeddings(against, side, cache_dir)
        white_a, white_b = whiten(emb_a, emb_b)
    i, j, sims = similar_pairs(white_a, white_b, threshold)
    a, b = meta_a.iloc[i].reset_index(drop=True), meta_b.iloc[j].reset_index(drop=True)
    pairs = pd.DataFrame({
        "image_id_a": a["image_id"], "image_id_b": b["image_id"],
        "lesion_id_a": a["lesion_id"], "lesion_id_b": b["lesion_id"],
        "dx_a": a["dx"], "dx_b": b["dx"], "similarity": np.round(sims.astype(float), 4),
    }, columns=list(PAIR_COLUMNS))
    if against is None:
        pairs = pairs[pairs["lesion_id_a"] != pairs["lesion_id_b"]]
    return pairs.sort_values(["similarity", "image_id_a", "image_id_b"], ascending=[False, True, True],
                             ignore_index=True)


def sorted_embeddings(ds: Ham10000, side: int = DEFAULT_SIDE,
                      cache_dir: str | Path | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The metadata sorted by image_id, and its images' embeddings in that order."""
    meta = ds.metadata.sort_values("image_id").reset_index(drop=True)
    return meta, embed_images(ds, list(meta["image_id"]), side, cache_dir)


def write_review_sheet(pairs: pd.DataFrame, ds: Ham10000, against: Ham10000 | None, path: str | Path,
                       top: int = 24, per_row: int = 3) -> Path:
    """A PNG grid of the `top` most similar pairs, each pair's two images side by side."""
    shown = pairs.head(top)
    rows = max(1, -(-len(shown) // per_row))
    fig = Figure(figsize=(4.4 * per_row, 2.2 * rows + 0.6))
    synthetic = ds.synthetic or (against is not None and against.synthetic)
    fig.suptitle(f"{len(pairs)} pair(s) at similarity >= threshold, top {len(shown)} shown"
                 + (" (SYNTHETIC demo data)" if synthetic else ""), fontsize=11)
    axes = fig.subplots(rows, 2 * per_row, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for k, pair in enumerate(shown.itertuples()):
        left, right = axes[k // per_row, 2 * (k % per_row)], axes[k // per_row, 2 * (k % per_row) + 1]
        for ax, source, side in ((left, ds, "a"), (right, against or ds, "b")):
            image_id, lesion_id, dx = (getattr(pair, f"{c}_{side}") for c in ("image_id", "lesion_id", "dx"))
            ax.imshow(load_rgb(source.images[image_id]))
            ax.set_title(f"{image_id} ({dx})\n{lesion_id}", fontsize=7)
        left.text(1.0, -0.04, f"similarity {pair.similarity:.3f}", transform=left.transAxes, ha="center",
                  va="top", fontsize=8)
    if shown.empty:
        fig.text(0.5, 0.5, "no pairs above the threshold", ha="center", fontsize=12)
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
