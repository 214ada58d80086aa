"""The torch Dataset over labelled lesion images, from the cache or decoded per item."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


class LesionDataset(Dataset):
    """Items are (image tensor, label, index); the index lets DDP evaluation de-duplicate.

    `images[i]` is a uint8 (H, W, 3) array: an ImageCache, DecodedImages or any sequence.
    """

    def __init__(self, images: Sequence[np.ndarray], labels: Sequence[int], transform: Callable,
                 image_ids: Sequence[str] | None = None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.transform = images, np.asarray(labels, dtype=np.int64), transform
        self.image_ids = list(image_ids) if image_ids is not None else [str(i) for i in range(len(labels))]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        image = torch.from_numpy(self.images[i]).permute(2, 0, 1)
        return self.transform(image), int(self.labels[i]), i
