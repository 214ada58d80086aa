"""core.ood: the feature-distance statistic behind the out-of-distribution warning."""
from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from core import results
from core.labels import NUM_CLASSES
from core.ood import VAL_QUANTILE, FeatureDistance, features_and_logits, fit_feature_distance, ood_features

D = 48


def clusters(n: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Seven Gaussian classes in D dimensions (correlated, unequal scales), optionally moved away."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(99).normal(size=(D, D)) / np.sqrt(D)
    centres = np.random.default_rng(98).normal(scale=3, size=(NUM_CLASSES, D))
    labels = rng.integers(0, NUM_CLASSES, n)
    x = centres[labels] + rng.normal(size=(n, D)) @ mix + shift
    return x, labels


@pytest.fixture(scope="module")
def fitted() -> FeatureDistance:
    train, labels = clusters(1500, 0)
    return fit_feature_distance(train, labels, clusters(400, 1)[0], clusters(2000, 2)[0])


def test_the_threshold_flags_about_5_percent_of_held_out_images_from_the_training_distribution(fitted):
    assert pytest.approx(0.05) == 1 - VAL_QUANTILE
    assert 0.02 <= fitted.test_false_alarm_rate <= 0.09
    fresh = fitted.score(clusters(2000, 3)[0])
    assert 0.02 <= (fresh > fitted.threshold).mean() <= 0.09


def test_images_from_elsewhere_are_flagged(fitted):
    moved = fitted.score(clusters(500, 4, shift=4.0)[0])
    assert (moved > fitted.threshold).mean() > 0.95
    noise = fitted.score(np.random.default_rng(5).normal(scale=6, size=(200, D)))
    assert (noise > fitted.threshold).mean() > 0.95


def test_the_score_by_hand():
    """The Mahalanobis distance to the nearest class mean: the variance along the kept axis,
    the noise variance off it."""
    distance = FeatureDistance(class_means=np.array([[1.0, 0, 0], [0, 0, -1.0]]), components=np.array([[1.0, 0, 0]]),
                               variances=np.array([0.25]), noise_variance=1.0, threshold=0.5,
                               test_false_alarm_rate=0.05)
    # [1.5, 0, 0]: 0.5 along the axis (sd 0.5) -> 1; [1, 1, 0]: 1 off it (sd 1) -> 1; the
    # second class mean is farther from both.
    assert distance.score(np.array([[1.0, 0, 0], [1.5, 0, 0], [1.0, 1.0, 0], [0, 0, -1.0]])) == pytest.approx(
        [0, 1, 1, 0])


def test_the_features_are_the_pre_logits_and_every_stages_statistics_at_unit_length():
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=NUM_CLASSES).eval()
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # every map 2x2 or more
    with torch.no_grad():
        features = ood_features(model, images)
        pre_logits = model.forward_head(model.forward_features(images), pre_logits=True)
    widths = [pre_logits.shape[1]] + [info["num_chs"] for info in model.feature_info] * 2
    assert features.shape == (3, sum(widths))
    blocks = torch.split(features, widths, dim=1)
    assert all(torch.allclose(b.norm(dim=1), torch.ones(3)) for b in blocks)
    assert torch.allclose(blocks[0], pre_logits / pre_logits.norm(dim=1, keepdim=True))
    assert not any(m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("backbone", ["test_efficientnet", "test_resnet", "test_convnext"])
def test_one_pass_gives_the_features_and_the_models_own_logits(backbone):
    """What lets core.predict screen and predict an image in one forward pass, for every family."""
    model = timm.create_model(backbone, pretrained=False, num_classes=NUM_CLASSES, drop_rate=0.2).eval()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features, logits = features_and_logits(model, images)
        assert torch.allclose(logits, model(images), atol=1e-5)
        assert torch.equal(features, ood_features(model, images))


def test_the_statistic_round_trips_through_ood_npz_as_plain_arrays(fitted, tmp_path):
    results.write_ood(tmp_path, fitted.arrays())
    again = FeatureDistance.from_arrays(results.read_ood(tmp_path))
    probe = clusters(50, 6)[0]
    assert np.array_equal(again.score(probe), fitted.score(probe))
    assert again.threshold == fitted.threshold and again.test_false_alarm_rate == fitted.test_false_alarm_rate
    assert results.read_ood(tmp_path / "missing") is None


def test_an_ood_file_holding_objects_is_refused(tmp_path):
    np.savez(tmp_path / results.OOD, mean=np.array([{"not": "an array"}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        results.read_ood(tmp_path)


def test_an_ood_file_from_another_version_names_what_it_lacks_and_the_way_out(fitted, tmp_path):
    arrays = {k: v for k, v in fitted.arrays().items() if k not in ("components", "noise_variance")}
    results.write_ood(tmp_path, arrays)
    with pytest.raises(ValueError, match="lacks components, noise_variance: written by another version of "
                                         "dermablate; delete the run's ood.npz"):
        FeatureDistance.from_arrays(results.read_ood(tmp_path))
