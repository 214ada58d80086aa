"""Grad-CAM on a model trained on the demo data looks at the lesion, not the skin around it."""
from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from core.config import load_config
from core.data.cache import resize_square
from core.data.images import ImageRef, load_rgb
from core.explain import main as explain_cli
from core.gradcam import cam_mass_inside, compute_cams
from core.predict import load_run
from core.train import fit
from tests.test_config import CONFIGS


def test_cam_mass_falls_inside_the_synthetic_lesion(demo_root, tmp_path):
    cfg = load_config(CONFIGS / "baseline.yaml", "smoke", {
        "backbone": "tf_efficientnet_lite0", "pretrained": "pypi", "image_size": 128, "epochs": 3,
        "batch_size": 16, "lr": 1e-3})
    run = tmp_path / "run"
    fit(cfg, demo_root, run)
    trained = load_run(run)
    test = pd.read_csv(run / "predictions_test.csv")
    ids = list(test["image_id"][:24])
    images = [load_rgb(ImageRef(next(demo_root.rglob(f"{i}.jpg")))) for i in ids]
    cams = compute_cams(trained.model, trained.inputs(images))
    masks = [resize_square(Image.open(demo_root / "masks" / f"{i}_segmentation.png").convert("RGB"), 128)[..., 0] > 0
             for i in ids]
    inside = np.array([cam_mass_inside(c, m) for c, m in zip(cams, masks)])
    area = np.array([m.mean() for m in masks])
    peak_inside = np.array([m.flat[c.argmax()] for c, m in zip(cams, masks)])
    # At 128 px the target layer is a 4x4 map, so upsampled heat spills past the lesion's
    # edge and "over half the mass inside" is out of reach for small lesions. What the
    # trained model must show: heat concentrated on the lesion, about twice what its area
    # alone would get, for most images, with the hottest point on the lesion.
    assert ((inside / area) > 1.5).mean() >= 0.8, (inside.round(2), area.round(2))
    assert inside.mean() > 1.8 * area.mean()
    assert peak_inside.mean() >= 0.5

    out = tmp_path / "cams"
    assert explain_cli(["--run", str(run), "--data-root", str(demo_root), "--out", str(out), "--limit", "3"]) == 0
    index = pd.read_csv(out / "index.csv")
    assert len(index) == 3
    strip = Image.open(out / index["file"][0])
    assert strip.size == (3 * 128, 128)
    assert explain_cli(["--run", str(run), "--data-root", str(demo_root), "--out", str(tmp_path / "mel"),
                        "--missed-mel"]) == 0
    missed = pd.read_csv(tmp_path / "mel" / "index.csv")
    assert (missed["dx"] == "mel").all() and (missed["predicted"] != "mel").all()
