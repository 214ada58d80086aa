"""Grad-CAM overlays for a run's test images, and how much of their heat lies on the lesion.

    python -m core.explain --run RUN_DIR --data-root DIR --out DIR [--dx mel] [--wrong-only] [--missed-mel]
    python -m core.explain --run RUN_DIR --data-root DIR --cam-mass

Each image gets one PNG: the image, the overlay for the predicted class and the overlay
for melanoma, side by side; `index.csv` lists what was written. `--cam-mass` prints the
share of Grad-CAM mass inside the lesion mask on correctly classified test images, where
the data root has masks (DIR/masks/<image_id>_segmentation.png, the ISIC layout that
`python -m core.data demo --masks` writes).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.labels import CLASS_INDEX, CLASSES, MEL, PROB_COLUMNS
from core.log import add_verbosity_flags, progress, setup_logging

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from PIL import Image

    from core.inference import TrainedModel

log = logging.getLogger(__name__)

MASKS = "masks"


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


def mask_file(data_root: str | Path, image_id: str) -> Path:
    return Path(data_root) / MASKS / f"{image_id}_segmentation.png"


def cam_mass_on_lesions(trained: TrainedModel, images: dict, data_root: str | Path, predictions: pd.DataFrame,
                        limit: int = 48) -> pd.DataFrame | None:
    """Grad-CAM (predicted class) on up to `limit` correctly classified images (`images`: the
    dataset's image index) that have a lesion mask under `data_root`: per image, the share of
    CAM mass inside the mask (`inside`), the share of the image the mask covers (`mask_area`:
    what a map blind to the lesion would score) and whether the hottest cell is on the lesion
    (`peak_inside`). None when no such image has a mask."""
    import pandas as pd
    from PIL import Image

    from core.data.cache import resize_square
    from core.data.images import load_rgb
    from core.gradcam import cam_mass_inside, compute_cams

    right = select_cases(predictions).query("dx == predicted")
    ids = [i for i in right["image_id"] if i in images and mask_file(data_root, i).is_file()][:limit]
    if not ids:
        return None
    rows = []
    # Batches of 16: Grad-CAM keeps every activation for the backward pass.
    for start in progress(range(0, len(ids), 16), desc="CAM mass", unit="batch"):
        batch = ids[start:start + 16]
        cams = compute_cams(trained.model, trained.inputs([load_rgb(images[i]) for i in batch]))
        for image_id, cam in zip(batch, cams, strict=True):
            mask = resize_square(Image.open(mask_file(data_root, image_id)).convert("RGB"), cam.shape[0])[..., 0] > 127
            rows.append({"image_id": image_id, "inside": cam_mass_inside(cam, mask), "mask_area": mask.mean(),
                         "peak_inside": bool(mask.flat[cam.argmax()])})
    return pd.DataFrame(rows)


def cam_mass_summary(mass: pd.DataFrame) -> dict:
    return {"images": len(mass), "mean_inside": round(float(mass["inside"].mean()), 3),
            "median_inside": round(float(mass["inside"].median()), 3),
            "mask_area": round(float(mass["mask_area"].mean()), 3),
            "peak_inside": round(float(mass["peak_inside"].mean()), 3)}


def explain_image(trained: TrainedModel, image: Image.Image, predicted: str) -> np.ndarray:
    """Image | Grad-CAM for the predicted class | Grad-CAM for melanoma, as one uint8 strip."""
    import numpy as np

    from core.data.cache import resize_square
    from core.inference import gradcam_overlay

    panels = [resize_square(image, trained.image_size), gradcam_overlay(trained, image, CLASS_INDEX[predicted]),
              gradcam_overlay(trained, image, MEL)]
    return np.concatenate(panels, axis=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.explain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, required=True, help="the dataset the run was trained on")
    parser.add_argument("--out", type=Path, help="where the overlays go (not needed with --cam-mass)")
    parser.add_argument("--dx", choices=CLASSES, help="only images of this true class")
    parser.add_argument("--wrong-only", action="store_true", help="only misclassified images")
    parser.add_argument("--missed-mel", action="store_true", help="only melanomas predicted as something else")
    parser.add_argument("--limit", type=int, default=50, help="at most this many images")
    parser.add_argument("--cam-mass", action="store_true", help="print the CAM mass inside the lesion masks instead")
    args = add_verbosity_flags(parser).parse_args(argv)
    setup_logging(args)
    if args.out is None and not args.cam_mass:
        parser.error("--out is required (or --cam-mass)")
    import pandas as pd
    from PIL import Image

    from core import io, results
    from core.data.dataset import load_dataset
    from core.data.images import load_rgb
    from core.inference import load_run

    try:
        trained = load_run(args.run)
    except (FileNotFoundError, ValueError) as e:  # no best.pt, or one refused (UntrustedCheckpoint)
        print(f"error: {e}", file=sys.stderr)
        return 2
    predictions = pd.read_csv(results.predictions_path(args.run, "test"), dtype={"image_id": str})
    images = load_dataset(args.data_root).images
    if args.cam_mass:
        mass = cam_mass_on_lesions(trained, images, args.data_root, predictions, args.limit)
        if mass is None:
            print(f"error: no correctly classified test image has a mask under {args.data_root / MASKS}",
                  file=sys.stderr)
            return 2
        print(json.dumps(cam_mass_summary(mass)))
        return 0
    cases = select_cases(predictions, args.dx, args.wrong_only, args.missed_mel).head(args.limit)
    missing = [i for i in cases["image_id"] if i not in images]
    if missing:
        print(f"error: {len(missing)} test images are not under {args.data_root} (first: {missing[0]}); "
              "pass the data root the run was trained on", file=sys.stderr)
        return 2
    written = []
    for row in progress(cases.itertuples(), desc="Grad-CAM", total=len(cases), unit="img"):
        path = args.out / f"{row.image_id}_{row.dx}_as_{row.predicted}.png"
        strip = explain_image(trained, load_rgb(images[row.image_id]), row.predicted)
        io.atomic_write(path, lambda tmp, strip=strip: Image.fromarray(strip).save(tmp, format="PNG"))
        written.append({"image_id": row.image_id, "dx": row.dx, "predicted": row.predicted, "file": path.name})
    io.write_csv(args.out / "index.csv", pd.DataFrame(written, columns=["image_id", "dx", "predicted", "file"]))
    log.info("wrote %d Grad-CAM overlays to %s", len(written), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
