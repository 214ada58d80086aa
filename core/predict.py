"""Predict with a trained run: probabilities, melanoma operating-point flags, Grad-CAM.

    python -m core.predict --run RUN_DIR IMAGE... [--gradcam OUT_DIR] [--cam-class mel]

Prints one JSON object per image. The flags use the thresholds chosen on validation
(metrics.json, "chosen_on_val"), never ones chosen on test. Its "warnings" (also on stderr)
say when the arm was trained on synthetic data, and when the image is out of distribution
(core/ood.py: its feature distance from the training images, with its false-alarm rate).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core import results
from core.checkpoints import load_checkpoint
from core.data.cache import resize_square
from core.data.images import ImageError, ImageRef, load_rgb
from core.data.transforms import eval_transform, stored_side
from core.evaluation.calibration import apply_temperature
from core.gradcam import compute_cams, overlay
from core.labels import CLASS_INDEX, CLASSES, MEL
from core.log import add_verbosity_flags, setup_logging
from core.model import build_model
from core.ood import FeatureDistance, features_and_logits


@dataclass
class TrainedModel:
    model: torch.nn.Module
    config: dict
    mean: tuple[float, ...]
    std: tuple[float, ...]
    synthetic_data: bool
    # [{"target_recall", "threshold"}] chosen on validation; empty when metrics.json is absent
    operating_points: list[dict] = field(default_factory=list)
    temperature: float | None = None  # fitted on validation (metrics.json "calibration"), when known
    ood: FeatureDistance | None = None  # the out-of-distribution statistic (ood.npz), when the run has one

    @property
    def image_size(self) -> int:
        return self.config["image_size"]

    def inputs(self, images: list[Image.Image]) -> torch.Tensor:
        """The exact evaluation pipeline of training: square resize, then eval transform."""
        side = stored_side(self.image_size, self.config["random_resized_crop"])
        transform = eval_transform(self.image_size, self.mean, self.std)
        return torch.stack([transform(torch.from_numpy(resize_square(im, side)).permute(2, 0, 1)) for im in images])


def load_run(run_dir: str | Path) -> TrainedModel:
    """Load best.pt (weights, config, class order) and the validation operating points."""
    run_dir = Path(run_dir)
    path = run_dir / results.CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a finished run folder")
    saved = load_checkpoint(path)
    if tuple(saved["classes"]) != CLASSES:
        raise ValueError(f"{path} was trained with classes {saved['classes']}, expected {list(CLASSES)}")
    cfg = saved["config"]
    model = build_model(cfg["backbone"], "none", cfg["dropout"])
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


WARNING_TITLES = {"synthetic_training_data": "SYNTHETIC training data.", "out_of_distribution": "Out of distribution."}


def warnings(result: dict) -> dict[str, str]:
    """What a reader of this prediction must know before trusting it, by kind (each with its
    title in WARNING_TITLES): the command line's stderr and the Predict tab's banners say these."""
    found = {}
    if result["synthetic_training_data"]:
        found["synthetic_training_data"] = ("This arm learned from the built-in demo data and has never seen a real "
                                            "skin lesion: its prediction says nothing about this image.")
    ood = result.get("out_of_distribution")
    if ood and ood["flagged"]:
        found["out_of_distribution"] = (
            f"This image is unlike the arm's training images (feature distance {ood['score']:.1f} > "
            f"{ood['threshold']:.1f}, a threshold that flags {ood['test_false_alarm_rate']:.0%} of its held-out "
            "test images): treat the prediction as unreliable.")
    return found


def mel_flags(trained: TrainedModel, p_mel: float) -> list[dict]:
    """For each validation operating point: is this P(mel) at or above its threshold?"""
    return [{**point, "flagged": bool(p_mel >= point["threshold"])} for point in trained.operating_points]


def gradcam_overlay(trained: TrainedModel, image: Image.Image, target: int | None = None) -> np.ndarray:
    """uint8 (S, S, 3) Grad-CAM overlay at the model's input size, for `target` or the predicted class."""
    cam = compute_cams(trained.model, trained.inputs([image]), None if target is None else [target])[0]
    rgb = resize_square(image, trained.image_size).astype(np.float32) / 255
    return overlay(rgb, cam)


def calibrated(trained: TrainedModel, probs: np.ndarray) -> np.ndarray | None:
    """Temperature-scaled probabilities (T fitted on the run's validation set), or None without a T."""
    return None if trained.temperature is None else apply_temperature(probs[None], trained.temperature)[0]


def describe(trained: TrainedModel, name: str, probs: np.ndarray, screen: dict | None = None) -> dict:
    """One image's prediction (`probs` and `screen` from `predict_and_screen`). The flags use the plain
    P(mel), on which the thresholds were chosen; calibrated ones are beside. `warnings` says what makes
    the prediction untrustworthy (synthetic training data, an unfamiliar image)."""
    out = {
        "image": name,
        "probabilities": {c: round(float(p), 6) for c, p in zip(CLASSES, probs)},
        "predicted": CLASSES[int(probs.argmax())],
        "p_mel": round(float(probs[MEL]), 6),
        "mel_operating_points": mel_flags(trained, float(probs[MEL])),
        "synthetic_training_data": trained.synthetic_data,
    }
    if screen is not None:
        out["out_of_distribution"] = screen
    scaled = calibrated(trained, probs)
    if scaled is not None:
        out["calibrated_probabilities"] = {"temperature": trained.temperature,
                                           **{c: round(float(p), 6) for c, p in zip(CLASSES, scaled)}}
    out["warnings"] = warnings(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder (holds best.pt)")
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--gradcam", type=Path, metavar="OUT_DIR", help="also write Grad-CAM overlays here")
    parser.add_argument("--cam-class", choices=CLASSES, help="class to explain (default: the predicted one)")
    args = add_verbosity_flags(parser).parse_args(argv)
    setup_logging(args)
    try:
        trained = load_run(args.run)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    status = 0
    for path in args.images:
        try:
            image = load_rgb(ImageRef(path))
        except ImageError as e:
            print(json.dumps({"image": str(path), "error": str(e)}))
            status = 1
            continue
        probs, screens = predict_and_screen(trained, [image])
        result = describe(trained, str(path), probs[0], screens and screens[0])
        if args.gradcam:
            target = CLASS_INDEX[args.cam_class or result["predicted"]]
            out = args.gradcam / f"{path.stem}_gradcam_{CLASSES[target]}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(gradcam_overlay(trained, image, target)).save(out)
            result["gradcam"] = str(out)
        for kind, text in result["warnings"].items():
            print(f"WARNING ({path.name}): {WARNING_TITLES[kind]} {text}", file=sys.stderr)
        print(json.dumps(result))
    return status


if __name__ == "__main__":
    sys.exit(main())
