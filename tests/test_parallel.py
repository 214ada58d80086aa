"""The CPU count the data layer spreads work over, on Linux and where there is no affinity mask."""
from __future__ import annotations

import os

import pytest

from core.data import parallel
from core.data.parallel import parallel_map, usable_cpus


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no affinity mask on this OS")
def test_the_affinity_mask_is_used_where_there_is_one():
    assert usable_cpus() == len(os.sched_getaffinity(0))


def test_without_an_affinity_mask_it_falls_back_to_the_cpu_count(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # as on macOS and Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert usable_cpus() == 3
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # "undeterminable"
    assert usable_cpus() == 1


def test_parallel_map_spreads_over_the_cpu_count_without_an_affinity_mask(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    pools = []
    monkeypatch.setattr(parallel, "ProcessPoolExecutor", lambda workers: pools.append(workers) or _Serial())
    assert parallel_map(abs, list(range(-100, 0)), "test") == list(range(100, 0, -1))
    assert pools == [4]


class _Serial:
    """A stand-in pool that maps in this process."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items, chunksize=1):
        return map(fn, items)
