"""The leak audit's verifier: a lesion under rotation, flips, crop, scale, colour shift and JPEG
keeps its keypoints in place; two different lesions of one class do not."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance

from core.duplicates import DEFAULT_MIN_INLIERS
from core.matching import features, inlier_matches, score


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(buffer).convert("RGB")


def _jitter(image: Image.Image) -> Image.Image:
    brighter = ImageEnhance.Brightness(image).enhance(1.25)
    return ImageEnhance.Contrast(ImageEnhance.Color(brighter).enhance(0.6)).enhance(0.85)


EDITS = {
    "rotated 90": lambda im: im.rotate(90, expand=True),
    "rotated 25": lambda im: im.rotate(25, resample=Image.BILINEAR),
    "mirrored": lambda im: im.transpose(Image.FLIP_LEFT_RIGHT),
    "flipped": lambda im: im.transpose(Image.FLIP_TOP_BOTTOM),
    "cropped": lambda im: im.crop((im.width // 8, im.height // 8, im.width - im.width // 10, im.height)),
    "scaled": lambda im: im.resize((im.width * 2 // 3, im.height * 2 // 3), Image.BICUBIC),
    "colour-jittered": _jitter,
    "re-encoded": lambda im: _jpeg(im, 40),
}


@pytest.fixture(scope="module")
def lesions(demo_root) -> dict[str, list[Image.Image]]:
    """Three images of each of three classes of the demo, each of another lesion."""
    meta = pd.read_csv(demo_root / "HAM10000_metadata.csv").drop_duplicates("lesion_id")
    files = {p.stem: p for p in demo_root.rglob("*.jpg")}
    return {dx: [Image.open(files[i]).convert("RGB") for i in meta.loc[meta["dx"] == dx, "image_id"][:3]]
            for dx in ("nv", "mel", "bkl")}


@pytest.mark.parametrize("edit", EDITS)
def test_every_planted_transform_is_verified(lesions, edit):
    for images in lesions.values():
        original = images[0]
        inliers = score(features(np.asarray(original)), features(np.asarray(EDITS[edit](original))))
        assert inliers >= DEFAULT_MIN_INLIERS, f"{edit}: {inliers} inliers"


def test_two_different_lesions_of_one_class_are_not(lesions):
    for dx, images in lesions.items():
        f = [features(np.asarray(im)) for im in images]
        for a in range(len(f)):
            for b in range(a + 1, len(f)):
                assert score(f[a], f[b]) < DEFAULT_MIN_INLIERS, dx


def test_the_score_is_symmetric_and_deterministic(lesions):
    original = lesions["mel"][0]
    a, b = features(np.asarray(original)), features(np.asarray(EDITS["rotated 25"](original)))
    c = features(np.asarray(lesions["mel"][1]))
    for x, y in ((a, b), (a, c)):
        assert score(x, y) == score(y, x) == score(x, y)
    again = features(np.asarray(original))
    assert np.array_equal(again.descriptors, a.descriptors) and score(again, b) == score(a, b)


def test_a_mirrored_copy_matches_points_in_its_own_frame(lesions):
    original = lesions["nv"][0]
    a, mirrored = features(np.asarray(original)), features(np.asarray(EDITS["mirrored"](original)))
    points_a, points_b = inlier_matches(a, mirrored)
    assert len(points_a) >= DEFAULT_MIN_INLIERS
    # A point at x in the original sits at width - 1 - x in its mirror image, at the same height.
    np.testing.assert_allclose(points_b[:, 0], mirrored.width - 1 - points_a[:, 0], atol=2.0)
    np.testing.assert_allclose(points_b[:, 1], points_a[:, 1], atol=2.0)
