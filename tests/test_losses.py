"""core.losses against values worked out by hand."""

import math

import pytest
import torch
from torch import nn

from core.config import ConfigError, from_dict
from core.labels import MEL, NUM_CLASSES
from core.losses import FocalLoss, build_loss, class_balanced_weights, class_weights

COUNTS = [1, 2, 4, 4, 2, 1, 4]  # 1/n sums to 3.75, so w_c = (1/n_c) * 7 / 3.75


def test_inverse_frequency_weights_by_hand():
    expected = torch.tensor([28, 14, 7, 7, 14, 28, 7]) / 15
    w = class_weights(COUNTS)
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, expected)
    assert w.mean().item() == pytest.approx(1.0)


def test_mel_multiplier_scales_only_melanoma_without_renormalising():
    ratio = class_weights(COUNTS, mel_multiplier=3.0) / class_weights(COUNTS)
    expected = torch.ones(NUM_CLASSES)
    expected[MEL] = 3.0
    torch.testing.assert_close(ratio, expected)


def test_class_balanced_weights_by_hand():
    # beta=0.5: (1-b)/(1-b^1) = 1, (1-b)/(1-b^2) = 2/3; mean 6/7.
    w = class_balanced_weights([1, 1, 2, 2, 1, 1, 2], beta=0.5)
    torch.testing.assert_close(w, torch.tensor([7 / 6, 7 / 6, 7 / 9, 7 / 9, 7 / 6, 7 / 6, 7 / 9]))


def test_class_balanced_tends_to_inverse_frequency_as_beta_tends_to_one():
    torch.testing.assert_close(class_balanced_weights(COUNTS, beta=1 - 1e-7), class_weights(COUNTS))


@pytest.mark.parametrize("weights", [class_weights, class_balanced_weights])
def test_absent_class_gets_zero_weight(weights):
    w = weights([0, 5, 5, 5, 5, 5, 5])
    torch.testing.assert_close(w, torch.tensor([0.0, 1, 1, 1, 1, 1, 1]))


def test_counts_must_cover_every_class():
    with pytest.raises(ValueError, match="7"):
        class_weights([10, 20])


def _two_samples() -> tuple[torch.Tensor, torch.Tensor]:
    # Both rows give p = (0.75, 0.25); targets 0 and 1 give p_t = 0.75 and 0.25.
    logits = torch.tensor([[math.log(3), 0.0], [math.log(3), 0.0]])
    return logits, torch.tensor([0, 1])


def test_focal_loss_by_hand():
    logits, target = _two_samples()
    a = 0.25**2 * -math.log(0.75)
    b = 0.75**2 * -math.log(0.25)
    assert FocalLoss(gamma=2.0)(logits, target).item() == pytest.approx((a + b) / 2)
    weighted = FocalLoss(gamma=2.0, weight=torch.tensor([2.0, 1.0]))(logits, target)
    assert weighted.item() == pytest.approx((2 * a + 1 * b) / 3)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weight", [None, class_weights(COUNTS, mel_multiplier=3.0)])
def test_focal_with_gamma_zero_is_cross_entropy(smoothing, weight):
    logits = torch.randn(16, NUM_CLASSES, generator=torch.Generator().manual_seed(0))
    target = torch.arange(16) % NUM_CLASSES
    focal = FocalLoss(gamma=0.0, weight=weight, label_smoothing=smoothing)(logits, target)
    ce = nn.CrossEntropyLoss(weight=weight, label_smoothing=smoothing)(logits, target)
    torch.testing.assert_close(focal, ce)


def test_focal_gradients_are_finite_for_confident_predictions():
    logits = torch.tensor([[30.0, 0.0, 0.0], [0.0, 30.0, 0.0]], requires_grad=True)
    FocalLoss(gamma=2.0)(logits, torch.tensor([0, 2])).backward()
    assert torch.isfinite(logits.grad).all()


def loss_of(**keys) -> nn.Module:
    """build_loss of a run config with these keys (the rest default)."""
    return build_loss(from_dict({"weighting": "none", **keys}), COUNTS)


def test_build_loss_cross_entropy_with_weights_and_smoothing():
    loss = loss_of(loss="ce", weighting="inverse_freq", mel_multiplier=3.0, label_smoothing=0.1)
    assert isinstance(loss, nn.CrossEntropyLoss)
    assert loss.label_smoothing == 0.1
    torch.testing.assert_close(loss.weight, class_weights(COUNTS, mel_multiplier=3.0))


def test_build_loss_focal_class_balanced():
    loss = loss_of(loss="focal", weighting="class_balanced", cb_beta=0.9, focal_gamma=1.5, label_smoothing=0.05)
    assert isinstance(loss, FocalLoss)
    assert (loss.gamma, loss.label_smoothing) == (1.5, 0.05)
    torch.testing.assert_close(loss.weight, class_balanced_weights(COUNTS, beta=0.9))


def test_build_loss_unweighted_unless_melanoma_is_scaled():
    assert loss_of(loss="ce").weight is None
    w = loss_of(loss="ce", mel_multiplier=2.0).weight
    assert w[MEL] == 2.0 and w.sum() == NUM_CLASSES + 1


def test_focal_weight_is_a_buffer_so_it_moves_with_the_module():
    assert "weight" in dict(loss_of(loss="focal", weighting="inverse_freq").named_buffers())


@pytest.mark.parametrize(("keys", "names"), [({"loss": "bce"}, "ce, focal"),
                                             ({"weighting": "sqrt"}, "none, inverse_freq, class_balanced")])
def test_unknown_loss_choices_are_refused_naming_valid_ones(keys, names):
    with pytest.raises(ConfigError, match=names):
        loss_of(**keys)


def test_mixed_targets_weigh_each_class_as_the_hard_label_loss_does():
    counts = [30, 50, 110, 12, 111, 670, 14]
    logits = torch.randn(6, 7, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 4, 5, 5, 6, 4])
    keys = {"weighting": "inverse_freq", "mel_multiplier": 2.0, "label_smoothing": 0.1}
    hard = build_loss(from_dict(keys), counts)
    soft = build_loss(from_dict({**keys, "mixup_alpha": 0.2}), counts)
    torch.testing.assert_close(soft(logits, torch.nn.functional.one_hot(labels, 7).float()), hard(logits, labels))
    # mixup of a melanoma with a nevus at lam: the pair weighs lam * w_mel + (1 - lam) * w_nv
    unsmoothed = build_loss(from_dict({"weighting": "inverse_freq", "mel_multiplier": 2.0, "mixup_alpha": 0.2}), counts)
    w, lam = class_weights(counts, 2.0), 0.3
    target = torch.zeros(1, 7)
    target[0, 4], target[0, 5] = lam, 1 - lam
    log_p = torch.log_softmax(logits[:1], 1)[0]
    expected = -(lam * w[4] * log_p[4] + (1 - lam) * w[5] * log_p[5]) / (lam * w[4] + (1 - lam) * w[5])
    torch.testing.assert_close(unsmoothed(logits[:1], target), expected)
