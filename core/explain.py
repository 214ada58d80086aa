"""Grad-CAM overlays for a run's test images.

    python -m core.explain --run RUN_DIR --data-root DIR --out DIR [--dx mel] [--wrong-only] [--missed-mel]

Each image gets one PNG: the image, the overlay for the predicted class and the overlay
for melanoma, side by side; `index.csv` lists what was written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from core import io, results
from core.data.cache import resize_square
from core.data.dataset import load_dataset
from core.data.images import load_rgb
from core.labels import CLASS_INDEX, CLASSES, MEL, PROB_COLUMNS
from core.predict import gradcam_overlay, load_run


def select_cases(predictions: pd.DataFrame, dx: str | None = None, wrong_only: bool = False,
                 missed_mel: bool = False) -> pd.DataFrame:
    """Rows of a predictions file, with `predicted` added, filtered as asked."""
    frame = predictions.assign(predicted=[CLASSES[i] for i in predictions[list(PROB_COLUMNS)].to_numpy().argmax(1)])
    if dx:
        frame = frame[frame["dx"] == dx]
    if wrong_only:
        frame = frame[frame["dx"] != frame["predicted"]]
    if missed_mel:
        frame = frame[(frame["dx"] == "mel") & (frame["predicted"] != "mel")]
    return frame


def explain_image(trained, image: Image.Image, predicted: str) -> np.ndarray:
    """Image | Grad-CAM for the predicted class | Grad-CAM for melanoma, as one uint8 strip."""
    panels = [resize_square(image, trained.image_size), gradcam_overlay(trained, image, CLASS_INDEX[predicted]),
              gradcam_overlay(trained, image, MEL)]
    return np.concatenate(panels, axis=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.explain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, required=True, help="the dataset the run was trained on")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dx", choices=CLASSES, help="only images of this true class")
    parser.add_argument("--wrong-only", action="store_true", help="only misclassified images")
    parser.add_argument("--missed-mel", action="store_true", help="only melanomas predicted as something else")
    parser.add_argument("--limit", type=int, default=50, help="at most this many images")
    args = parser.parse_args(argv)

    try:
        trained = load_run(args.run)
    except (FileNotFoundError, ValueError) as e:  # no best.pt, or one refused (UntrustedCheckpoint)
        print(f"error: {e}", file=sys.stderr)
        return 2
    cases = select_cases(pd.read_csv(results.predictions_path(args.run, "test"), dtype={"image_id": str}),
                         args.dx, args.wrong_only, args.missed_mel).head(args.limit)
    images = load_dataset(args.data_root).images
    missing = [i for i in cases["image_id"] if i not in images]
    if missing:
        print(f"error: {len(missing)} test images are not under {args.data_root} (first: {missing[0]}); "
              "pass the data root the run was trained on", file=sys.stderr)
        return 2
    written = []
    for row in cases.itertuples():
        path = args.out / f"{row.image_id}_{row.dx}_as_{row.predicted}.png"
        strip = explain_image(trained, load_rgb(images[row.image_id]), row.predicted)
        io.atomic_write(path, lambda tmp: Image.fromarray(strip).save(tmp, format="PNG"))
        written.append({"image_id": row.image_id, "dx": row.dx, "predicted": row.predicted, "file": path.name})
    io.write_csv(args.out / "index.csv", pd.DataFrame(written, columns=["image_id", "dx", "predicted", "file"]))
    print(f"wrote {len(written)} Grad-CAM overlays to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
