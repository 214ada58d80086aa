"""core.sampling: rebalanced draws, single-process and per DDP rank."""

from collections import Counter

import pytest
import torch

from core.labels import CLASS_INDEX, NUM_CLASSES
from core.losses import class_weights
from core.sampling import DistributedWeightedSampler, sample_weights

# Skewed like HAM10000: 900 nv, 90 mel, 10 vasc, other classes absent.
LABELS = [CLASS_INDEX["nv"]] * 900 + [CLASS_INDEX["mel"]] * 90 + [CLASS_INDEX["vasc"]] * 10
WEIGHTS = class_weights(torch.bincount(torch.tensor(LABELS), minlength=NUM_CLASSES).tolist())


def _assert_balanced(indices: list[int]) -> None:
    freq = Counter(LABELS[i] for i in indices)
    assert set(freq) == {CLASS_INDEX["nv"], CLASS_INDEX["mel"], CLASS_INDEX["vasc"]}
    for count in freq.values():
        # Each class expects 1/3; the seed is fixed and the bound is over 10 standard deviations.
        assert abs(count / len(indices) - 1 / 3) < 0.05


def test_sample_weights_are_the_class_weight_of_each_label():
    w = sample_weights([0, 2, 2, 6], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    torch.testing.assert_close(w, torch.tensor([1.0, 3.0, 3.0, 7.0], dtype=torch.float64))


def test_one_process_draws_classes_evenly():
    _assert_balanced(list(DistributedWeightedSampler(LABELS, WEIGHTS, 1, 0, num_samples=20_000)))


def test_distributed_sampler_draws_classes_evenly_on_each_rank():
    for rank in range(2):
        _assert_balanced(list(DistributedWeightedSampler(LABELS, WEIGHTS, 2, rank, num_samples=20_000)))


def test_distributed_sampler_lengths():
    sampler = DistributedWeightedSampler(LABELS, WEIGHTS, num_replicas=3, rank=2)
    assert len(sampler) == len(list(sampler)) == 334  # ceil(1000 / 3)
    assert len(DistributedWeightedSampler(LABELS, WEIGHTS, 4, 0, num_samples=10)) == 3


def test_distributed_sampler_is_deterministic_per_seed_epoch_and_rank():
    def draw(rank: int, seed: int = 0, epoch: int = 0) -> list[int]:
        sampler = DistributedWeightedSampler(LABELS, WEIGHTS, num_replicas=2, rank=rank, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert draw(0) == draw(0)
    assert draw(0) != draw(1)
    assert draw(0) != draw(0, epoch=1)
    assert draw(0) != draw(0, seed=1)


def test_distributed_sampler_repeats_its_draw_until_set_epoch():
    sampler = DistributedWeightedSampler(LABELS, WEIGHTS, num_replicas=2, rank=0)
    assert list(sampler) == list(sampler)


def test_distributed_sampler_rejects_bad_rank():
    with pytest.raises(ValueError):
        DistributedWeightedSampler(LABELS, WEIGHTS, num_replicas=2, rank=2)
