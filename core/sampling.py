"""Rebalancing samplers: draw training images with probability ∝ their class weight.

Pass class weights from `core.losses.class_weights`. Drawing is with replacement, so an
"epoch" is `num_samples` draws, not one pass over the data.
"""

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DistributedSampler


def sample_weights(labels: Sequence[int], class_weights: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Per-sample weights w[y_i] (float64, unnormalised): image i is drawn with p ∝ w[y_i]."""
    w = torch.as_tensor(class_weights, dtype=torch.float64)
    return w[torch.tensor(np.asarray(labels), dtype=torch.long)]  # a copy: labels may be a read-only view


class DistributedWeightedSampler(DistributedSampler):
    """Rebalancing sampler, one process or one DDP rank of many: each rank draws
    ceil(num_samples / num_replicas) indices.

    Every rank samples the whole dataset with replacement from its own generator, seeded
    from (seed, epoch, rank): ranks draw different indices, runs are reproducible, and
    `set_epoch(epoch)` gives a new draw each epoch, as with DistributedSampler (whose
    validation of rank and world size it reuses).
    """

    def __init__(
        self,
        labels: Sequence[int],
        class_weights: Sequence[float] | torch.Tensor,
        num_replicas: int,
        rank: int,
        seed: int = 0,
        num_samples: int | None = None,
    ):
        # The base class validates rank and keeps seed/epoch; its num_samples is replaced.
        super().__init__(labels, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.weights = sample_weights(labels, class_weights)
        total = len(self.weights) if num_samples is None else num_samples
        self.num_samples = math.ceil(total / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self) -> Iterator[int]:
        seed = np.random.SeedSequence([self.seed, self.epoch, self.rank]).generate_state(1, np.uint64)[0]
        generator = torch.Generator().manual_seed(int(seed))
        draw = torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator)
        return iter(draw.tolist())
