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
from pathlib import Path
from typing import TYPE_CHECKING

from core.labels import CLASS_INDEX, CLASSES, MEL
from core.log import add_verbosity_flags, setup_logging

if TYPE_CHECKING:
    import numpy as np

    from core.inference import TrainedModel


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


def describe(trained: TrainedModel, name: str, probs: np.ndarray, screen: dict | None = None) -> dict:
    """One image's prediction (`probs` and `screen` from `predict_and_screen`). The flags use the plain
    P(mel), on which the thresholds were chosen; calibrated ones are beside. `warnings` says what makes
    the prediction untrustworthy (synthetic training data, an unfamiliar image)."""
    out = {
        "image": name,
        "probabilities": {c: round(float(p), 6) for c, p in zip(CLASSES, probs, strict=True)},
        "predicted": CLASSES[int(probs.argmax())],
        "p_mel": round(float(probs[MEL]), 6),
        "mel_operating_points": mel_flags(trained, float(probs[MEL])),
        "synthetic_training_data": trained.synthetic_data,
    }
    if screen is not None:
        out["out_of_distribution"] = screen
    scaled = trained.calibrated(probs)
    if scaled is not None:
        out["calibrated_probabilities"] = {"temperature": trained.temperature,
                                           **{c: round(float(p), 6) for c, p in zip(CLASSES, scaled, strict=True)}}
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
    from PIL import Image

    from core.data.images import ImageError, ImageRef, load_rgb
    from core.inference import gradcam_overlay, load_run, predict_and_screen

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
