"""augment=device: per-image parameters, the CPU pipeline's ranges, and the samplers' exact batches."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.utils.data import DataLoader, DistributedSampler
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from core.data import device_batches
from core.data.device_augment import (
    AugmentParams,
    EvalTransform,
    TrainAugment,
    colour_jitter,
    random_crops,
    sample_params,
)
from core.data.device_batches import DeviceBatches, ImageStore, device_loaders
from core.data.lesions import LesionDataset
from core.data.transforms import eval_transform
from core.losses import class_weights
from core.sampling import DistributedWeightedSampler

SIDE = 32


def still(n: int, **overrides) -> AugmentParams:
    """Parameters that change nothing, with some fields overridden."""
    params = dict(crop=torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(n, 1), hflip=torch.zeros(n, dtype=torch.bool),
                  vflip=torch.zeros(n, dtype=torch.bool), angle=torch.zeros(n), jitter=torch.ones(n, 3))
    return AugmentParams(**{**params, **overrides})


def smooth_images(n: int, side: int = SIDE, seed: int = 0) -> torch.Tensor:
    """uint8 (n, side, side, 3) images with gradients and blobs: interpolation differences stay small."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 6, 6, generator=g)
    fine = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bicubic", align_corners=False)
    return (fine.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def corner_mask(side: int = SIDE) -> torch.Tensor:
    """One uint8 image, white in the top-left quadrant's inner square, black elsewhere."""
    image = torch.zeros(1, side, side, 3, dtype=torch.uint8)
    image[:, 2:side // 2 - 2, 2:side // 2 - 2] = 255
    return image


def centroid(images: torch.Tensor) -> torch.Tensor:
    """(B, 2) x, y centroid of each image's brightness, in [0, 1] of the side."""
    mass = images.float().mean(1)  # (B, H, W)
    mass = mass - mass.amin(dim=(1, 2), keepdim=True)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, mass.shape[1]), torch.linspace(0, 1, mass.shape[2]), indexing="ij")
    total = mass.sum(dim=(1, 2))
    return torch.stack([(mass * xs).sum(dim=(1, 2)) / total, (mass * ys).sum(dim=(1, 2)) / total], 1)


UNIT = TrainAugment(SIDE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # output in [0, 1]


def test_every_image_of_a_batch_gets_its_own_parameters():
    batch = smooth_images(1).repeat(16, 1, 1, 1)
    out = UNIT(batch, torch.Generator().manual_seed(0))
    params = UNIT.params(16, "cpu", torch.Generator().manual_seed(0))
    assert len(set(params.angle.tolist())) == 16 and len({tuple(j) for j in params.jitter.tolist()}) == 16
    assert 0 < int(params.hflip.sum()) < 16
    flat = out.flatten(1)
    distances = torch.cdist(flat, flat)
    assert (distances + torch.eye(16) * 1e9).min() > 0.1  # no two copies of the one image come out alike


def test_a_seed_reproduces_a_batch_exactly():
    batch = smooth_images(8)
    crop = TrainAugment(SIDE, random_resized_crop=True)
    first = crop(batch, torch.Generator().manual_seed(3))
    assert torch.equal(first, crop(batch, torch.Generator().manual_seed(3)))
    assert not torch.equal(first, crop(batch, torch.Generator().manual_seed(4)))


def test_rotation_angles_are_uniform_over_plus_minus_25_degrees():
    angles = sample_params(20_000, False, torch.Generator().manual_seed(0)).angle.numpy()
    assert angles.min() >= -25 and angles.max() <= 25
    assert stats.kstest(angles, stats.uniform(loc=-25, scale=50).cdf).pvalue > 0.01
    # torchvision's RandomRotation(25) draws from the same law
    reference = [v2.RandomRotation(25).make_params([torch.zeros(1, 4, 4)])["angle"] for _ in range(5000)]
    assert stats.ks_2samp(angles, reference).pvalue > 0.01


def test_crops_follow_random_resized_crop():
    boxes = random_crops(20_000, torch.Generator().manual_seed(0)).numpy()
    left, top, width, height = boxes.T
    area, ratio = width * height, width / height
    whole = (width == 1) & (height == 1)
    assert (left >= 0).all() and (top >= 0).all()
    assert (left + width <= 1 + 1e-6).all() and (top + height <= 1 + 1e-6).all()
    assert ((area[~whole] >= 0.6 - 1e-6) & (area[~whole] <= 1 + 1e-6)).all()
    assert ((ratio[~whole] >= 3 / 4 - 1e-6) & (ratio[~whole] <= 4 / 3 + 1e-6)).all()
    side = 1000  # torchvision works in whole pixels: a large side keeps the rounding negligible
    crop = v2.RandomResizedCrop(8, scale=(0.6, 1.0))
    reference = np.array([[p["width"] / side, p["height"] / side, p["left"] / side]
                          for p in (crop.make_params([torch.zeros(3, side, side)]) for _ in range(5000))])
    for ours, theirs in ((area, reference[:, 0] * reference[:, 1]), (ratio, reference[:, 0] / reference[:, 1]),
                         (left, reference[:, 2])):
        assert stats.ks_2samp(ours, theirs).pvalue > 0.01


def test_flips_move_a_mask_to_the_mirrored_corner_like_torchvision():
    image = corner_mask()
    chw = image.permute(0, 3, 1, 2).float() / 255
    for flag, reference in (("hflip", TF.horizontal_flip(chw)), ("vflip", TF.vertical_flip(chw))):
        out = UNIT.apply(image, still(1, **{flag: torch.ones(1, dtype=torch.bool)}))
        torch.testing.assert_close(out, reference, atol=1e-5, rtol=0)
    both = UNIT.apply(image, still(1, hflip=torch.ones(1, dtype=torch.bool), vflip=torch.ones(1, dtype=torch.bool)))
    torch.testing.assert_close(centroid(both), 1 - centroid(chw), atol=1e-3, rtol=0)
    # Half of many draws flip each way: the centroids land in the four corners about equally.
    many = UNIT(image.repeat(4000, 1, 1, 1), torch.Generator().manual_seed(0))
    corners = (centroid(many) > 0.5).long()
    counts = torch.bincount(corners[:, 0] * 2 + corners[:, 1], minlength=4)
    assert ((counts - 1000).abs() < 150).all(), counts


def test_rotation_turns_counter_clockwise_like_torchvision():
    image = smooth_images(1)
    chw = image.permute(0, 3, 1, 2).float() / 255
    quarter = UNIT.apply(image, still(1, angle=torch.tensor([90.0])))
    torch.testing.assert_close(quarter, torch.rot90(chw, 1, dims=(2, 3)), atol=1e-4, rtol=0)
    angle = 17.0
    ours = UNIT.apply(image, still(1, angle=torch.tensor([angle])))
    theirs = TF.rotate(chw, angle, interpolation=v2.InterpolationMode.BILINEAR)
    inner = slice(SIDE // 4, 3 * SIDE // 4)  # away from the corners the rotation brings in
    assert (ours - theirs)[..., inner, inner].abs().max() < 0.02


def test_crop_box_resizes_like_resized_crop():
    image = smooth_images(1, side=40)
    chw = image.permute(0, 3, 1, 2).float() / 255
    augment = TrainAugment(SIDE, random_resized_crop=True, mean=(0.0,) * 3, std=(1.0,) * 3)
    out = augment.apply(image, still(1, crop=torch.tensor([[0.25, 0.125, 0.5, 0.75]])))
    reference = TF.resized_crop(chw, top=5, left=10, height=30, width=20, size=[SIDE, SIDE],
                                interpolation=v2.InterpolationMode.BILINEAR, antialias=False)
    inner = slice(2, SIDE - 2)  # the box's edge pixels read beyond the crop, as a crop of the whole image would not
    torch.testing.assert_close(out[..., inner, inner], reference[..., inner, inner], atol=1e-5, rtol=0)


def test_colour_jitter_is_torchvisions_per_image():
    images = smooth_images(3).permute(0, 3, 1, 2).float() / 255
    factors = torch.tensor([[0.9, 1.1, 1.0], [1.1, 0.9, 1.05], [1.0, 1.0, 0.9]])
    ours = colour_jitter(images.clone(), factors)
    for image, (b, c, s), out in zip(images, factors.tolist(), ours, strict=True):
        reference = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(image, b), c), s)
        torch.testing.assert_close(out, reference, atol=1e-5, rtol=0)


def test_evaluation_batches_match_the_cpu_eval_transform():
    images = smooth_images(4, side=40)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    ours = EvalTransform(SIDE, mean, std)(images)
    cpu = torch.stack([eval_transform(SIDE, mean, std)(i.permute(2, 0, 1)) for i in images])
    assert (ours - cpu).abs().max() < 2 / 255 / min(std)  # uint8 rounding after the CPU resize


def dataset(n: int = 103) -> LesionDataset:
    labels = np.array([5] * 70 + [4] * 20 + [0] * 10 + [6] * 3)[:n]
    return LesionDataset(list(smooth_images(n, side=8).numpy()), labels, transform=lambda x: x.float())


def batch_indices(loader, epoch: int) -> list[list[int]]:
    loader.sampler.set_epoch(epoch)
    return [index.tolist() for _, _, index in loader]


@pytest.mark.parametrize("kind", ["shuffled", "weighted", "eval"])
@pytest.mark.parametrize("rank", [0, 1])
def test_device_batches_draw_exactly_the_dataloaders_indices(kind, rank):
    data = dataset()
    world = 2
    if kind == "weighted":
        counts = np.bincount(data.labels, minlength=7).tolist()
        make = lambda: DistributedWeightedSampler(data.labels, class_weights(counts), world, rank, seed=5)  # noqa: E731
    else:
        make = lambda: DistributedSampler(data, world, rank, shuffle=kind != "eval", seed=5)  # noqa: E731
    drop_last = kind != "eval"
    reference = DataLoader(data, sampler=make(), batch_size=16, drop_last=drop_last)
    store = ImageStore(device_batches.stacked(data.images, torch.device("cpu")), torch.device("cpu"))
    ours = DeviceBatches(data, store, make(), 16, drop_last, transform=lambda x: x)
    for epoch in (1, 2):
        expected = batch_indices(reference, epoch)
        assert batch_indices(ours, epoch) == expected and len(ours) == len(expected)
    images, labels, index = next(iter(ours))
    assert torch.equal(images, torch.from_numpy(np.stack([data.images[i] for i in index.tolist()])))
    assert labels.tolist() == data.labels[index.numpy()].tolist()


def test_the_host_memory_fallback_gives_the_same_batches(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger=device_batches.__name__)
    data = dataset()
    sampler = DistributedSampler(data, 1, 0, shuffle=True, seed=0)
    resident = device_loaders([(data, sampler, True, lambda x: x)], 16, torch.device("cpu"))[0]
    assert "held in cpu memory" in caplog.text
    monkeypatch.setattr(device_batches, "fits_on_device", lambda nbytes, device: (False, "0.0 GiB free"))
    fallback = device_loaders([(data, sampler, True, lambda x: x)], 16, torch.device("cpu"))[0]
    assert "held in host memory, each batch pinned and copied" in caplog.text
    assert not fallback.store.resident
    for (a, la, ia), (b, lb, ib) in zip(resident, fallback, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb) and torch.equal(ia, ib)


def test_the_device_share_is_decided_from_free_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 * 2**30, 80 * 2**30))
    assert device_batches.fits_on_device(3 * 2**30, torch.device("cuda"))[0]
    fits, measured = device_batches.fits_on_device(5 * 2**30, torch.device("cuda"))
    assert not fits and "8.0 GiB free" in measured
    assert math.isclose(device_batches.DEVICE_SHARE, 0.5)
