"""Is this pair one lesion photographed twice? Local features under a geometric fit.

Each image gives SIFT keypoints on its contrast-equalised grey levels (CLAHE, so a colour or
exposure shift changes little), for the image and for its mirror: SIFT is invariant to
rotation and scale but not to a flip, and a vertical flip is a mirror turned by 180 degrees.
A pair's score is the number of its mutual nearest-neighbour matches (passing Lowe's ratio
test) that one similarity transform (rotation, uniform scale, shift) carries onto each other
under RANSAC, counted once per location, the larger of the straight and the mirrored fit. Look-alike lesions share
texture but not geometry, so their matches scatter and few are inliers; a re-photograph, a
crop, a resize or a re-encode keeps its keypoints in place.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

LONG_SIDE = 200  # images are matched at this long side (the thumbnails' own)
MAX_KEYPOINTS = 200
CONTRAST = 0.01  # SIFT's contrast threshold (OpenCV's default 0.04 leaves a smooth lesion a dozen keypoints)
RATIO = 0.8  # Lowe's ratio test
RANSAC_PIXELS = 4.0
SEED = 0  # RANSAC draws from OpenCV's global generator: reseeded before each fit


@dataclass(frozen=True)
class Features:
    """Keypoint positions (n, 2) float32 and SIFT descriptors (n, 128) uint8, of an image and its mirror."""
    points: np.ndarray
    descriptors: np.ndarray
    mirror_points: np.ndarray
    mirror_descriptors: np.ndarray
    width: int  # of the resized image the points are in


def _sift(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sift = cv2.SIFT_create(nfeatures=MAX_KEYPOINTS, contrastThreshold=CONTRAST)
    keypoints, descriptors = sift.detectAndCompute(gray, None)
    if descriptors is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8)
    points = np.array([k.pt for k in keypoints], np.float32)[:MAX_KEYPOINTS]
    return points, np.clip(descriptors, 0, 255).astype(np.uint8)[:MAX_KEYPOINTS]


def at_matching_scale(rgb: np.ndarray) -> np.ndarray:
    """An (H, W, 3) image resized to LONG_SIDE on its long side: the frame keypoints are in."""
    scale = LONG_SIDE / max(rgb.shape[:2])
    size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def features(rgb: np.ndarray) -> Features:
    """The keypoints of an (H, W, 3) uint8 image, at_matching_scale."""
    resized = at_matching_scale(rgb)
    gray = cv2.cvtColor(resized, cv2.COLOR_RGB2GRAY)
    gray = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(gray)
    points, descriptors = _sift(gray)
    mirror_points, mirror_descriptors = _sift(np.ascontiguousarray(gray[:, ::-1]))
    return Features(points, descriptors, mirror_points, mirror_descriptors, resized.shape[1])


def _mutual_matches(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into a, into b) of descriptor pairs that are each other's nearest neighbour
    and pass the ratio test in both directions: the same set whichever side comes first."""
    if len(a) < 2 or len(b) < 2:
        return np.zeros(0, int), np.zeros(0, int)
    fa, fb = a.astype(np.float32), b.astype(np.float32)
    squared = np.maximum((fa * fa).sum(1)[:, None] + (fb * fb).sum(1)[None, :] - 2 * fa @ fb.T, 0)
    best_b = squared.argmin(1)
    ia = np.flatnonzero(squared.argmin(0)[best_b] == np.arange(len(a)))  # mutual nearest neighbours
    ib = best_b[ia]
    nearest = squared[ia, ib]
    rows, columns = squared[ia], squared[:, ib].T  # each match's distances to all of b, and to all of a
    rows[np.arange(len(ia)), ib] = columns[np.arange(len(ia)), ia] = np.inf
    # Lowe's test on squared distances: d1 < RATIO * d2 both ways
    keep = (nearest < RATIO ** 2 * rows.min(1)) & (nearest < RATIO ** 2 * columns.min(1))
    return ia[keep], ib[keep]


def _fit(points_a: np.ndarray, desc_a: np.ndarray, points_b: np.ndarray,
         desc_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The matched points of a and of b that one similarity transform carries onto each other."""
    ia, ib = _mutual_matches(desc_a, desc_b)
    if len(ia) < 3:
        return points_a[:0], points_b[:0]
    cv2.setRNGSeed(SEED)
    transform, mask = cv2.estimateAffinePartial2D(points_a[ia], points_b[ib], method=cv2.RANSAC,
                                                  ransacReprojThreshold=RANSAC_PIXELS, maxIters=500,
                                                  confidence=0.99, refineIters=0)
    keep = np.zeros(len(ia), bool) if transform is None else mask.ravel().astype(bool)
    pairs = np.hstack([points_a[ia[keep]], points_b[ib[keep]]])
    # SIFT gives a location one keypoint per dominant orientation: one location is one piece of evidence
    _, first = np.unique(np.round(pairs, 1), axis=0, return_index=True)
    pairs = pairs[np.sort(first)]
    return pairs[:, :2], pairs[:, 2:]


def _order(a: Features, b: Features) -> tuple[Features, Features]:
    """The pair in an order fixed by the content alone, so that score(a, b) == score(b, a)."""
    key_a, key_b = a.descriptors.tobytes(), b.descriptors.tobytes()
    return (a, b) if (len(key_a), key_a) <= (len(key_b), key_b) else (b, a)


def inlier_matches(a: Features, b: Features) -> tuple[np.ndarray, np.ndarray]:
    """The inlier keypoints (n, 2) in a and in b, at LONG_SIDE scale, of the better of the straight
    and the mirrored fit; b's points are in b's own frame (a mirrored fit's are mirrored back)."""
    flipped = _order(a, b)[0] is not a
    first, second = (b, a) if flipped else (a, b)
    straight = _fit(first.points, first.descriptors, second.points, second.descriptors)
    mirrored = _fit(first.points, first.descriptors, second.mirror_points, second.mirror_descriptors)
    if len(mirrored[0]) > len(straight[0]):
        width = second.width
        mirrored = (mirrored[0], np.stack([width - 1 - mirrored[1][:, 0], mirrored[1][:, 1]], axis=1))
        straight = mirrored
    return (straight[1], straight[0]) if flipped else straight


def score(a: Features, b: Features) -> int:
    """Inliers of the best similarity fit between a and b, straight or with b mirrored."""
    return len(inlier_matches(a, b)[0])
