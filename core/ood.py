"""The out-of-distribution warning: how far an image lies from the training images, in the
model's own feature space.

Fitted at the end of training on the selected weights (`fit_feature_distance`):
- each image's features (`ood_features`) are the model's pooled pre-logit features and,
  for every stage of the backbone, its channels' spatial mean and standard deviation,
  each block scaled to unit length: the last layer says what the model sees, the early
  stages how the image looks (colour, texture, sharpness), as in Lee et al.'s (NeurIPS
  2018) ensemble over layers. On the demo's baseline arm (64 px) the pre-logit features
  alone flag 24% of real HAM10000 thumbnails; with the stages, all of them;
- the training images' features (evaluation transform, no augmentation) get one shared
  covariance, probabilistic PCA's: the top principal components with their variances,
  and one variance for every other direction (sklearn's `noise_variance_`), so that a
  feature off the training images' subspace counts too;
- an image's score is its Mahalanobis distance under that covariance to the nearest class
  mean (Lee et al., without input noise);
- the threshold is the 95th percentile of the validation images' scores, so about 5% of
  in-distribution images are flagged; the rate measured on the test images, which chose
  nothing, is stored beside it as the false-alarm rate.
The run folder keeps it as ood.npz: plain arrays, read with allow_pickle=False.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.decomposition import PCA

from core.labels import NUM_CLASSES

COMPONENTS = 32  # at most; fewer when there are fewer training images or features
VAL_QUANTILE = 0.95


@dataclass
class FeatureDistance:
    class_means: np.ndarray  # (C, D) each class's mean training feature
    components: np.ndarray  # (K, D) the training features' top principal axes (orthonormal rows)
    variances: np.ndarray  # (K,) the variance along each
    noise_variance: float  # the mean variance of every other direction
    threshold: float  # the validation scores' VAL_QUANTILE
    test_false_alarm_rate: float  # share of the test images scoring above the threshold

    def score(self, features: np.ndarray) -> np.ndarray:
        """(N, D) features -> (N,) Mahalanobis distance to the nearest class mean."""
        x = np.asarray(features, dtype=np.float64)
        best = np.full(len(x), np.inf)
        for mean in self.class_means:
            centred = x - mean
            along = centred @ self.components.T
            off = centred - along @ self.components
            squared = (along**2 / self.variances).sum(1) + (off**2).sum(1) / self.noise_variance
            best = np.minimum(best, squared)
        return np.sqrt(best)

    def summary(self) -> dict:
        """What metrics.json records (the arrays stay in ood.npz)."""
        return {"statistic": "Mahalanobis distance to the nearest class mean of the pooled pre-logit features "
                             "and every stage's channel means and deviations (unit-length blocks), under the "
                             "training features' probabilistic-PCA covariance",
                "components": int(len(self.components)), "threshold": round(self.threshold, 4),
                "threshold_rule": f"{VAL_QUANTILE:.0%} quantile of the validation images' scores",
                "test_false_alarm_rate": round(self.test_false_alarm_rate, 4)}

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in asdict(self).items()}

    @classmethod
    def from_arrays(cls, arrays) -> FeatureDistance:
        missing = [f for f in cls.__dataclass_fields__ if f not in arrays]
        if missing:
            raise ValueError(f"the OOD statistic lacks {', '.join(missing)}: written by another version of "
                             "dermablate; delete the run's ood.npz to predict without the warning")
        return cls(**{k: np.asarray(arrays[k]) for k in ("class_means", "components", "variances")},
                   **{k: float(arrays[k]) for k in ("noise_variance", "threshold", "test_false_alarm_rate")})


def fit_feature_distance(train: np.ndarray, train_labels: np.ndarray, val: np.ndarray,
                         test: np.ndarray) -> FeatureDistance:
    """Fit on the training features, set the threshold on validation, measure false alarms on test."""
    class_means = np.stack([train[train_labels == c].mean(0) for c in range(NUM_CLASSES)])
    within = train - class_means[train_labels]  # one covariance shared by the classes
    k = min(COMPONENTS, train.shape[1] - 1, len(train) - NUM_CLASSES)
    pca = PCA(n_components=k, random_state=0).fit(within)
    distance = FeatureDistance(class_means, pca.components_, np.maximum(pca.explained_variance_, 1e-12),
                               max(float(pca.noise_variance_), 1e-12), 0.0, 0.0)
    distance.threshold = float(np.quantile(distance.score(val), VAL_QUANTILE))
    distance.test_false_alarm_rate = float((distance.score(test) > distance.threshold).mean())
    return distance


def unit_length(features: torch.Tensor) -> torch.Tensor:
    return features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)


def ood_features(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(B, D) per image: the pooled pre-logit features, then each backbone stage's channel means
    and standard deviations over the image (timm's `feature_info` stages), each block at unit length."""
    return features_and_logits(model, images)[0]


def features_and_logits(model: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`ood_features` and the model's logits, from one forward pass (in eval mode the logits are
    timm's classifier on the pre-logits)."""
    stages = [model.get_submodule(info["module"]) for info in getattr(model, "feature_info", [])]
    maps = []
    hooks = [stage.register_forward_hook(lambda module, args, out: maps.append(out)) for stage in stages]
    try:
        pre_logits = model.forward_head(model.forward_features(images), pre_logits=True)
    finally:
        for hook in hooks:
            hook.remove()
    blocks = [pre_logits] + [m.float().mean((2, 3)) for m in maps] + [m.float().std((2, 3), correction=0) for m in maps]
    return torch.cat([unit_length(b.float()) for b in blocks], dim=1), model.get_classifier()(pre_logits)
