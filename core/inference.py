"""Inference with a model: the one evaluation image pipeline, batched prediction (with TTA),
embeddings, and a trained run loaded from its folder.

Training's validation and test passes, `core.predict`, the external set, the near-duplicate
audit and the OOD statistic all go through this module, so an image is prepared and
predicted one way everywhere: decoded, resized square to the stored side (the resize the
cache holds), then the evaluation transform at the model's input size.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from core import devices, results
from core.checkpoints import load_checkpoint
from core.config import RunConfig, from_dict
from core.data.cache import DecodedImages, resize_square
from core.data.images import ImageRef
from core.data.lesions import LesionDataset
from core.data.transforms import eval_transform, stored_side
from core.evaluation.calibration import apply_temperature
from core.gradcam import compute_cams, overlay
from core.labels import CLASSES
from core.log import progress
from core.model import build_model
from core.ood import FeatureDistance, features_and_logits, ood_features

# --------------------------------------------------------------------------- the image pipeline


@dataclass(frozen=True)
class EvalPipeline:
    """Square resize to the stored side, then the evaluation transform (resize, scale, normalise)."""

    image_size: int
    random_resized_crop: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, cfg: RunConfig, mean, std) -> EvalPipeline:
        return cls(cfg.image_size, cfg.random_resized_crop, tuple(mean), tuple(std))

    @property
    def side(self) -> int:
        """The side images are decoded to (and cached at) before the transform."""
        return stored_side(self.image_size, self.random_resized_crop)

    @property
    def transform(self):
        return eval_transform(self.image_size, self.mean, self.std)

    def dataset(self, images: Sequence[np.ndarray], labels: Sequence[int], image_ids: Sequence[str]) -> LesionDataset:
        """Images already decoded at `side` (an ImageCache or DecodedImages)."""
        return LesionDataset(images, labels, self.transform, image_ids)

    def files(self, refs: list[ImageRef], labels: Sequence[int], image_ids: Sequence[str]) -> LesionDataset:
        """Image files, decoded and resized when each is asked for."""
        return self.dataset(DecodedImages(refs, self.side), labels, image_ids)

    def batch(self, images: list[Image.Image]) -> torch.Tensor:
        """(N, 3, S, S) model inputs from decoded RGB images."""
        transform = self.transform
        return torch.stack([transform(torch.from_numpy(resize_square(im, self.side)).permute(2, 0, 1))
                            for im in images])


# --------------------------------------------------------------------------- batched prediction


def dihedral_views(images: torch.Tensor) -> list[torch.Tensor]:
    """The 8 flips and quarter turns of a batch (NCHW): a lesion has no up, down, left or right."""
    turns = [torch.rot90(images, k, dims=(2, 3)) for k in range(4)]
    return turns + [torch.flip(t, dims=(3,)) for t in turns]


@torch.no_grad()
def predict(model, loader, device, amp_dtype, memory_format=torch.contiguous_format, tta: bool = False) -> np.ndarray:
    """Softmax probabilities for every item of the loader's dataset, in dataset order.

    `tta` averages the probabilities over the 8 dihedral views of each image.
    """
    def probabilities(images: torch.Tensor) -> torch.Tensor:
        views = dihedral_views(images) if tta else [images]
        return torch.stack([torch.softmax(model(v).float(), dim=1) for v in views]).mean(dim=0)

    model.eval()
    return over_dataset(probabilities, loader, device, amp_dtype, memory_format, "predict (TTA)" if tta else "predict")


@torch.no_grad()
def embed(model, loader, device, amp_dtype, memory_format=torch.contiguous_format) -> np.ndarray:
    """The OOD statistic's features (N, D) of every item (core/ood.py), in dataset order."""
    model.eval()
    return over_dataset(lambda images: ood_features(model, images), loader, device, amp_dtype, memory_format, "embed")


@torch.no_grad()
def over_dataset(outputs: Callable[[torch.Tensor], torch.Tensor], loader, device, amp_dtype=None,
                 memory_format=torch.contiguous_format, desc: str = "predict") -> np.ndarray:
    """`outputs(batch)` for every item of the loader's dataset, in dataset order.

    Under DDP each rank runs its (padded) shard; the shards are gathered and de-duplicated
    by item index, so the result has exactly len(dataset) rows.
    """
    rank, world = devices.rank_and_world()
    indices, rows = [], []
    for images, _, index in progress(loader, desc=desc, unit="batch", disable=rank != 0):
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            rows.append(outputs(images).cpu())
        indices.append(index)
    local = (torch.cat(indices).numpy(), torch.cat(rows).numpy())
    if world > 1:
        shards = [None] * world
        torch.distributed.all_gather_object(shards, local)
    else:
        shards = [local]
    out = np.full((len(loader.dataset), local[1].shape[1]), np.nan)
    for index, values in shards:
        out[index] = values
    if np.isnan(out).any():
        raise RuntimeError("some evaluation items were not predicted by any rank")
    return out


# --------------------------------------------------------------------------- a trained run


@dataclass
class TrainedModel:
    model: torch.nn.Module
    config: RunConfig
    mean: tuple[float, ...]
    std: tuple[float, ...]
    synthetic_data: bool
    # [{"target_recall", "threshold"}] chosen on validation; empty when metrics.json is absent
    operating_points: list[dict] = field(default_factory=list)
    temperature: float | None = None  # fitted on validation (metrics.json "calibration"), when known
    ood: FeatureDistance | None = None  # the out-of-distribution statistic (ood.npz), when the run has one

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def pipeline(self) -> EvalPipeline:
        return EvalPipeline.of(self.config, self.mean, self.std)

    def inputs(self, images: list[Image.Image]) -> torch.Tensor:
        return self.pipeline.batch(images)

    def calibrated(self, probs: np.ndarray) -> np.ndarray | None:
        """One image's temperature-scaled probabilities (T fitted on the run's validation set), or None
        without a T."""
        return None if self.temperature is None else apply_temperature(probs[None], self.temperature)[0]

    def predict_dataset(self, dataset: LesionDataset, batch_size: int = 64, tta: bool = False) -> np.ndarray:
        """Softmax probabilities (N, 7) in dataset order, on the run's device and precision."""
        device = devices.resolve_device(self.config.device)
        memory_format = devices.memory_format(self.config.channels_last)
        model = self.model.to(device, memory_format=memory_format)
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=self.config.num_workers)
        return predict(model, loader, device, devices.amp_dtype(device, self.config.amp), memory_format, tta=tta)


def load_run(run_dir: str | Path) -> TrainedModel:
    """Load best.pt (weights, config, class order) and the validation operating points."""
    run_dir = Path(run_dir)
    path = run_dir / results.CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a finished run folder")
    saved = load_checkpoint(path)
    if tuple(saved["classes"]) != CLASSES:
        raise ValueError(f"{path} was trained with classes {saved['classes']}, expected {list(CLASSES)}")
    cfg = from_dict(saved["config"], source=f"the config inside {path}")
    model = build_model(cfg.backbone, "none", cfg.dropout)
    model.load_state_dict(saved["model"])
    model.eval()
    points, temperature = [], None
    metrics = results.read_metrics(run_dir)
    if metrics:
        points = [{"target_recall": r["target_recall"], "threshold": r["threshold"]}
                  for r in metrics["mel_operating_points"]["chosen_on_val"] if r["threshold"] is not None]
        temperature = metrics.get("calibration", {}).get("temperature")
    arrays = results.read_ood(run_dir)
    return TrainedModel(model, cfg, tuple(saved["mean"]), tuple(saved["std"]), saved["synthetic_data"], points,
                        temperature, FeatureDistance.from_arrays(arrays) if arrays else None)


@torch.no_grad()
def predict_and_screen(trained: TrainedModel, images: list[Image.Image]) -> tuple[np.ndarray, list[dict] | None]:
    """Softmax probabilities (N, 7) in CLASSES order and, per image, the out-of-distribution screen
    from one forward pass: its feature-space distance from the training images, and whether it
    passes the threshold that flags 5% of validation images (None for a run without ood.npz)."""
    features, logits = features_and_logits(trained.model, trained.inputs(images))
    probs = torch.softmax(logits.float(), dim=1).numpy()
    if trained.ood is None:
        return probs, None
    scores = trained.ood.score(features.numpy())
    return probs, [{"score": round(float(s), 3), "threshold": round(trained.ood.threshold, 3),
                    "flagged": bool(s > trained.ood.threshold),
                    "test_false_alarm_rate": round(trained.ood.test_false_alarm_rate, 4)} for s in scores]


def gradcam_overlay(trained: TrainedModel, image: Image.Image, target: int | None = None) -> np.ndarray:
    """uint8 (S, S, 3) Grad-CAM overlay at the model's input size, for `target` or the predicted class."""
    cam = compute_cams(trained.model, trained.inputs([image]), None if target is None else [target])[0]
    rgb = resize_square(image, trained.image_size).astype(np.float32) / 255
    return overlay(rgb, cam)
