"""`augment: device`: a split's uint8 images held once on the device, batched and augmented there.

`DeviceBatches` iterates like the DataLoader it replaces: the same sampler (shuffled,
weighted or DDP-sharded), the same `BatchSampler(sampler, batch_size, drop_last)`, and
items `(images, labels, indices)`. On a GPU the images live in its memory when they fit in
the measured free memory, else in host memory, each batch pinned and copied without
blocking. On the CPU (`augment: auto` there too) the cache stays memory-mapped.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, Sampler

from core.data.cache import ImageCache
from core.data.lesions import LesionDataset

log = logging.getLogger(__name__)

DEVICE_SHARE = 0.5  # of the free device memory the images of one run may take; the rest is for the model


def stacked(images: Sequence[np.ndarray], device: torch.device) -> np.ndarray:
    """(N, H, W, 3) uint8 array of a dataset's images. A memory-mapped cache is read once, into
    memory, for a GPU; on the CPU it stays mapped, shared with every process on the machine."""
    if isinstance(images, ImageCache):
        mapped = np.load(images.path, mmap_mode="r")
        return mapped if device.type == "cpu" else np.array(mapped)  # one sequential read
    return np.stack([images[i] for i in range(len(images))]) if len(images) else np.zeros((0, 1, 1, 3), np.uint8)


def fits_on_device(nbytes: int, device: torch.device) -> tuple[bool, str]:
    """Whether `nbytes` of images should live on the device, and the measurement that decided it."""
    if device.type != "cuda":
        return True, f"{device.type} memory"
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_SHARE * free, f"{free / 2**30:.1f} GiB free on {device}"


class ImageStore:
    """uint8 (N, H, W, 3) images on `device`: on the CPU, the array given, without a copy; on a GPU,
    in its memory, or (resident=False) in host memory, each batch copied to a pinned buffer and on
    to the device without blocking. (Pinning the whole store would buy nothing: indexing a batch
    out of it makes an unpinned copy.)"""

    def __init__(self, images: np.ndarray, device: torch.device, resident: bool = True):
        self.device, self.resident = device, resident
        if device.type == "cpu":
            self.images = images  # indexed as it is: often a read-only memory map of the cache
        else:
            host = torch.from_numpy(images)
            self.images = host.to(device) if resident else host

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu":
            return torch.from_numpy(self.images[index.numpy()])  # a copy: the batch's own memory
        if self.resident:
            return self.images[index.to(self.device)]
        batch = self.images[index]
        if self.device.type == "cuda":
            batch = batch.pin_memory()
        return batch.to(self.device, non_blocking=True)


class DeviceBatches:
    """A DataLoader's iteration over a LesionDataset whose images are in an ImageStore."""

    def __init__(self, dataset: LesionDataset, store: ImageStore, sampler: Sampler, batch_size: int,
                 drop_last: bool, transform: Callable[[torch.Tensor], torch.Tensor]):
        if len(store) != len(dataset):
            raise ValueError(f"{len(store)} stored images for a dataset of {len(dataset)}")
        self.dataset, self.store, self.sampler, self.transform = dataset, store, sampler, transform
        self.batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.labels = torch.tensor(np.asarray(dataset.labels), dtype=torch.long, device=store.device)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for indices in self.batch_sampler:
            index = torch.as_tensor(indices, dtype=torch.long)
            yield self.transform(self.store.batch(index)), self.labels[index.to(self.store.device)], index


def device_loaders(parts: Sequence[tuple], batch_size: int, device: torch.device) -> list[DeviceBatches]:
    """DeviceBatches for each (dataset, sampler, drop_last, transform), all held where the measured
    free memory allows: every split on the device, or every split in host memory."""
    arrays = [stacked(dataset.images, device) for dataset, *_ in parts]
    nbytes = sum(a.nbytes for a in arrays)
    resident, measured = fits_on_device(nbytes, device)
    where = f"{device} memory" if resident else "host memory, each batch pinned and copied"
    log.info("augment=device: %d images (%.2f GiB) held in %s (%s)", sum(map(len, arrays)), nbytes / 2**30, where,
             measured)
    return [DeviceBatches(dataset, ImageStore(array, device, resident), sampler, batch_size, drop_last, transform)
            for (dataset, sampler, drop_last, transform), array in zip(parts, arrays, strict=True)]
