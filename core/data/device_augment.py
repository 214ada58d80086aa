"""The training and evaluation pipelines of core/data/transforms.py on whole batches, on any device.

Every image of a batch gets its own random parameters (torchvision v2 on a batched tensor
would draw one set for the whole batch). The geometry, RandomResizedCrop (or none), both
flips and the rotation, is one affine map per image, applied by one `affine_grid` /
`grid_sample` call; the colour jitter is per-image factors. The ranges are those of the
CPU pipeline:

- RandomResizedCrop (when the arm asks for it): area scale 0.6-1, aspect ratio 3/4-4/3,
  ten tries, then the whole image (what torchvision does for a square one);
- horizontal and vertical flips, each with probability 0.5;
- rotation uniform in [-25, 25] degrees, counter-clockwise positive, black outside;
- brightness, contrast and saturation factors uniform in [0.9, 1.1], no hue.

Two deliberate differences: one bilinear resampling for the whole geometry (the CPU path
rotates with nearest-neighbour after a bilinear resize), and the jitter in a fixed order
(brightness, contrast, saturation; torchvision permutes it per call). At factors within
10% of 1 the order changes a pixel by well under one grey level in 255.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.data.transforms import IMAGENET_MEAN, IMAGENET_STD, auto_augment_op

CROP_SCALE = (0.6, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
CROP_TRIES = 10
MAX_ANGLE = 25.0
JITTER = 0.1
GREY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


@dataclass
class AugmentParams:
    """Per-image parameters of one batch (every field has the batch as its first dimension)."""
    crop: torch.Tensor  # (B, 4): left, top, width, height as fractions of the stored side
    hflip: torch.Tensor  # (B,) bool
    vflip: torch.Tensor  # (B,) bool
    angle: torch.Tensor  # (B,) degrees, counter-clockwise
    jitter: torch.Tensor  # (B, 3): brightness, contrast, saturation factors


def _uniform(n: int, low: float, high: float, generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def random_crops(n: int, generator=None, device=None) -> torch.Tensor:
    """RandomResizedCrop boxes for a square image, as torchvision draws them, for n images at once."""
    area = _uniform(n * CROP_TRIES, *CROP_SCALE, generator, device).view(n, CROP_TRIES)
    log_ratio = _uniform(n * CROP_TRIES, math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), generator, device)
    ratio = log_ratio.exp().view(n, CROP_TRIES)
    width, height = (area * ratio).sqrt(), (area / ratio).sqrt()
    fits = (width <= 1) & (height <= 1)
    first = torch.where(fits.any(1), fits.float().argmax(1), 0)  # the first try that fits
    width = torch.where(fits.any(1), width.gather(1, first[:, None])[:, 0], 1.0)
    height = torch.where(fits.any(1), height.gather(1, first[:, None])[:, 0], 1.0)
    left = (1 - width) * torch.rand(n, generator=generator, device=device)
    top = (1 - height) * torch.rand(n, generator=generator, device=device)
    return torch.stack([left, top, width, height], dim=1)


def sample_params(n: int, random_resized_crop: bool, generator=None, device=None) -> AugmentParams:
    crop = (random_crops(n, generator, device) if random_resized_crop
            else torch.tensor([0.0, 0.0, 1.0, 1.0], device=device).expand(n, 4))
    flips = torch.rand(n, 2, generator=generator, device=device) < 0.5
    return AugmentParams(
        crop=crop, hflip=flips[:, 0], vflip=flips[:, 1],
        angle=_uniform(n, -MAX_ANGLE, MAX_ANGLE, generator, device),
        jitter=_uniform(n * 3, 1 - JITTER, 1 + JITTER, generator, device).view(n, 3))


def affine_matrices(params: AugmentParams) -> torch.Tensor:
    """(B, 2, 3) maps from output to source coordinates (affine_grid's [-1, 1] convention).

    The pipeline is crop -> flips -> rotation, so a sampled output point is first rotated
    back, then mirrored, then placed inside the crop box.
    """
    theta = torch.deg2rad(params.angle)
    cos, sin = theta.cos(), theta.sin()
    unrotate = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (B, 2, 2)
    mirror = torch.stack([1 - 2 * params.hflip.float(), 1 - 2 * params.vflip.float()], -1)  # (B, 2)
    left, top, width, height = params.crop.unbind(1)
    scale = torch.stack([width, height], -1)
    centre = torch.stack([2 * left + width - 1, 2 * top + height - 1], -1)
    linear = (scale * mirror)[:, :, None] * unrotate
    return torch.cat([linear, centre[:, :, None]], dim=2)


def to_unit_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1] (channels_last strides, no copy of the layout)."""
    return batch.permute(0, 3, 1, 2).float().div_(255)


def geometry(images: torch.Tensor, params: AugmentParams, size: int) -> torch.Tensor:
    grid = F.affine_grid(affine_matrices(params), [len(images), 3, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def grey(images: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(GREY, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def colour_jitter(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_brightness, adjust_contrast and adjust_saturation, one factor per image.

    Each step is one fused pass over the batch (this is most of the augmentation's cost on a
    CPU): clamp(b * x, 0, 1) is b * clamp(x, 0, 1 / b), so the brightness rides on the
    contrast's multiply, and the contrast's mean is that of the grey image, b * the clamped
    image's channel means weighted by GREY.
    """
    brightness, contrast, saturation = (f.view(-1, 1, 1, 1) for f in factors.unbind(1))
    weights = torch.tensor(GREY, device=images.device, dtype=images.dtype)
    clamped = torch.minimum(images.clamp(min=0), 1 / brightness)
    mean = brightness * (clamped.mean(dim=(2, 3)) @ weights).view(-1, 1, 1, 1)
    images = torch.addcmul((1 - contrast) * mean, clamped, contrast * brightness).clamp_(0, 1)
    return torch.addcmul((1 - saturation) * grey(images), images, saturation).clamp_(0, 1)


def normalise(images: torch.Tensor, mean, std) -> torch.Tensor:
    """(images - mean) / std in one pass, written in channels_last order (the model's layout)."""
    mean = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    out = torch.empty_like(images, memory_format=torch.channels_last)
    return torch.addcmul(-mean / std, images, 1 / std, out=out)


class TrainAugment:
    """uint8 (B, H, W, 3) batch -> augmented, normalised float (B, 3, size, size) on the batch's device.

    `auto_augment` ("trivial", "randaugment") applies torchvision's policy to each image in
    turn before the geometry: one op per image, drawn from torch's global generator.
    """

    def __init__(self, size: int, random_resized_crop: bool = False, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 auto_augment: str = "none"):
        self.size, self.random_resized_crop, self.mean, self.std = size, random_resized_crop, mean, std
        self.policy = auto_augment_op(auto_augment)

    def params(self, n: int, device, generator: torch.Generator | None = None) -> AugmentParams:
        return sample_params(n, self.random_resized_crop, generator, device)

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(batch, self.params(len(batch), batch.device, generator))

    def apply(self, batch: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        if self.policy is not None:
            batch = torch.stack([self.policy(image) for image in batch.permute(0, 3, 1, 2)]).permute(0, 2, 3, 1)
        images = colour_jitter(geometry(to_unit_float(batch), params, self.size), params.jitter)
        return normalise(images, self.mean, self.std)


class EvalTransform:
    """uint8 (B, H, W, 3) batch -> resized (antialiased bilinear, as v2.Resize), normalised float batch."""

    def __init__(self, size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.size, self.mean, self.std = size, mean, std

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        images = to_unit_float(batch)
        if images.shape[-1] != self.size or images.shape[-2] != self.size:
            images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", antialias=True,
                                   align_corners=False)
        return normalise(images, self.mean, self.std)
