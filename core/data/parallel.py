"""Map a function over many items in worker processes, with a progress bar."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from core.log import progress

T = TypeVar("T")
R = TypeVar("R")


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask where the OS has one (Linux), else all of them."""
    if hasattr(os, "sched_getaffinity"):  # Linux only: absent on macOS and Windows
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def parallel_map(fn: Callable[[T], R], items: Sequence[T], desc: str, workers: int | None = None) -> list[R]:
    """`[fn(x) for x in items]`, in order, spread over processes when there is enough work."""
    workers = workers or min(usable_cpus(), 8)
    chunksize = max(1, len(items) // (workers * 16))
    bar = dict(total=len(items), desc=desc, unit="img")
    if workers <= 1 or len(items) < 64:
        return list(progress(map(fn, items), **bar))
    with ProcessPoolExecutor(workers) as pool:
        results: Iterable[R] = pool.map(fn, items, chunksize=chunksize)
        return list(progress(results, **bar))
