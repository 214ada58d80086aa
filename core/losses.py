"""Losses for the imbalanced HAM10000 classes: class weights, focal loss, label smoothing.

Class weights come in CLASSES order, normalised to mean 1 over the classes present in
training, so the loss keeps the scale of unweighted cross-entropy. A class with no
training images gets weight 0: it never occurs as a target, and any positive weight
would only distort the normalisation of the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from core.choices import LOSS_KINDS, WEIGHTINGS
from core.labels import MEL, NUM_CLASSES

if TYPE_CHECKING:
    from core.config import RunConfig


def class_weights(counts: Sequence[int], mel_multiplier: float = 1.0) -> torch.Tensor:
    """Inverse-frequency weights w_c ∝ N / n_c, mean 1, then melanoma times `mel_multiplier`.

    The multiplier is applied after normalising and the weights are not renormalised, so
    `mel_multiplier=3` gives melanoma exactly three times its balanced weight.
    """
    n = _counts(counts)
    return _finish(n.sum() / n, n > 0, mel_multiplier)


def class_balanced_weights(counts: Sequence[int], beta: float = 0.999, mel_multiplier: float = 1.0) -> torch.Tensor:
    """Cui et al. 2019 "effective number" weights (1 - beta) / (1 - beta^n_c), mean 1.

    `mel_multiplier` is applied as in `class_weights`.
    """
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1); got {beta}")
    n = _counts(counts)
    return _finish((1 - beta) / (1 - beta**n), n > 0, mel_multiplier)


def _counts(counts: Sequence[int]) -> torch.Tensor:
    n = torch.as_tensor(counts, dtype=torch.float64)
    if n.shape != (NUM_CLASSES,) or (n < 0).any() or n.sum() == 0:
        raise ValueError(f"counts must be {NUM_CLASSES} non-negative per-class counts, not all 0; got {counts}")
    return n


def _finish(raw: torch.Tensor, present: torch.Tensor, mel_multiplier: float) -> torch.Tensor:
    w = torch.where(present, raw, 0.0)
    w = w / w[present].mean()
    w[MEL] *= mel_multiplier
    return w.float()


class FocalLoss(nn.Module):
    """Multi-class focal loss (Lin et al. 2017) with optional class weights and label smoothing.

    Per sample: sum_c q_c * w_c * (1 - p_c)^gamma * -log p_c, where q is the (smoothed)
    target distribution. The mean is taken like torch's weighted cross-entropy: divided
    by the sum of the target classes' weights, not by the batch size. With gamma=0 this is
    exactly `nn.CrossEntropyLoss(weight, label_smoothing=...)`.

    Targets are class indices (B,) or, for mixup and cutmix, distributions (B, C). A mixed
    target y weighs sum_c y_c w_c, the mix of its classes' weights, in the sum and in the
    divisor alike, so a one-hot y gives exactly the loss of its class index. (torch's
    cross-entropy with probability targets divides by the batch size instead.)
    """

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0; got {gamma}")
        self.gamma = gamma
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        log_p = F.log_softmax(logits, dim=1)
        per_class = -((1 - log_p.exp()) ** self.gamma) * log_p
        y = target.to(log_p.dtype) if target.dim() == 2 else F.one_hot(target, num_classes).to(log_p.dtype)
        q = y * (1 - self.label_smoothing) + self.label_smoothing / num_classes
        w = self.weight if self.weight is not None else log_p.new_ones(num_classes)
        return (q * w * per_class).sum() / (y * w).sum()


def build_loss(cfg: RunConfig, counts: Sequence[int]) -> nn.Module:
    """The training criterion of a run config, from the per-class training counts (CLASSES order).

    cfg.loss: "ce" (cross-entropy) or "focal" (cfg.focal_gamma). cfg.weighting: "none",
    "inverse_freq" (`class_weights`) or "class_balanced" (`class_balanced_weights`, cfg.cb_beta).
    cfg.mel_multiplier scales the melanoma weight under any weighting ("none" then means
    ones, melanoma scaled). When the config mixes images (mixup, cutmix) the criterion
    takes (B, C) target distributions, weighted as FocalLoss says.
    """
    if cfg.weighting == "inverse_freq":
        weight = class_weights(counts, cfg.mel_multiplier)
    elif cfg.weighting == "class_balanced":
        weight = class_balanced_weights(counts, cfg.cb_beta, cfg.mel_multiplier)
    elif cfg.weighting == "none":
        weight = None
        if cfg.mel_multiplier != 1.0:
            weight = torch.ones(NUM_CLASSES)
            weight[MEL] = cfg.mel_multiplier
    else:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}; got {cfg.weighting!r}")
    if cfg.loss not in LOSS_KINDS:
        raise ValueError(f"loss kind must be one of {LOSS_KINDS}; got {cfg.loss!r}")
    if cfg.loss == "ce" and not cfg.mixes_images:
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
    gamma = cfg.focal_gamma if cfg.loss == "focal" else 0.0
    return FocalLoss(gamma, weight=weight, label_smoothing=cfg.label_smoothing)
