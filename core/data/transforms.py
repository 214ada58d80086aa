"""Image pipelines of the source study (torchvision transforms v2), on uint8 CHW tensors."""
from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_HEADROOM = 1.15  # stored side / input side when RandomResizedCrop needs room to crop


AUTO_AUGMENT = {"trivial": v2.TrivialAugmentWide, "randaugment": v2.RandAugment}


def auto_augment_op(name: str) -> v2.Transform | None:
    """The `auto_augment` config's policy (one random op per image, on uint8 CHW), or None for "none"."""
    return AUTO_AUGMENT[name]() if name != "none" else None


def train_transform(size: int, random_resized_crop: bool = False,
                    mean=IMAGENET_MEAN, std=IMAGENET_STD, auto_augment: str = "none") -> v2.Compose:
    """[auto_augment policy], resize (or RandomResizedCrop), flips, rotation up to 25 degrees, light colour jitter."""
    geometry = (v2.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True) if random_resized_crop
                else v2.Resize((size, size), antialias=True))
    policy = auto_augment_op(auto_augment)
    return v2.Compose([
        *([policy] if policy else []),
        geometry,
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        v2.RandomRotation(25),
        # No hue jitter: on CPU it costs about six times the rest of the jitter.
        v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ])


def eval_transform(size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    return v2.Compose([
        v2.Resize((size, size), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ])


def stored_side(size: int, random_resized_crop: bool) -> int:
    """The side images are decoded to (and cached at) for a given input size."""
    return round(size * CROP_HEADROOM) if random_resized_crop else size
