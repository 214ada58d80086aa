"""How many trials share the one GPU of a single-GPU node by default: measured, never guessed.

`python -m benchmarks.gpu_train --packing` trains the eight arms for one epoch each, at the
full profile's sizes, 1, 2, 4 and 8 at a time on one GPU, and records for that kind of card
(Ray's `accelerator_type`, e.g. H200) whether each count completed, its summed images/s and
its peak memory, in benchmarks/results/packing.json. The default is then the smallest count
that completed and whose summed images/s is within 5% of the best that completed: more
trials at once than that only share the same throughput among more processes.

With no record for the card, one trial holds the whole GPU, and the sweep says how to
measure it. `--gpus-per-worker` always overrides. When the packed trials do not fit after
all (a larger backbone, another batch size), a trial fails with `PackedOutOfMemory`, which
names the fix; it is not retried.
"""
from __future__ import annotations

import json
from pathlib import Path

PACKING_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "packing.json"
THROUGHPUT_TOLERANCE = 0.05


class PackedOutOfMemory(RuntimeError):
    """A trial sharing its GPU ran out of memory: a retry on the same share fails the same way."""


def accelerator_type(cluster: dict) -> str | None:
    """Ray's `accelerator_type:<type>` resource of the cluster (e.g. "H200"), if it names exactly one."""
    types = [key.split(":", 1)[1] for key in cluster if key.startswith("accelerator_type:")]
    return types[0] if len(types) == 1 else None


def read_measurements(path: Path = PACKING_FILE) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def best_count(rows: list[dict]) -> int:
    """The smallest count that completed within THROUGHPUT_TOLERANCE of the best summed images/s."""
    done = [row for row in rows if row["completed"]]
    if not done:
        return 1
    best = max(row["sum_images_per_s"] for row in done)
    return min(row["at_once"] for row in done if row["sum_images_per_s"] >= (1 - THROUGHPUT_TOLERANCE) * best)


def default_share(cluster: dict, workers: int, measurements: dict) -> tuple[float, str]:
    """(GPU fraction per worker, why) for a sweep whose --gpus-per-worker was not given."""
    gpus = cluster.get("GPU", 0)
    if not gpus:
        return 0.0, "no GPU in the cluster"
    if gpus != 1 or workers != 1:
        return 1.0, "one GPU per worker"
    card = accelerator_type(cluster)
    record = measurements.get(card or "")
    if not record:
        return 1.0, (f"one trial on the GPU: no packing measurement for {card or 'this card'} in {PACKING_FILE.name} "
                     f"(measure with python -m benchmarks.gpu_train --packing, or pass --gpus-per-worker 0.25)")
    count = best_count(record["rows"])
    measured = ", ".join(f"{row['at_once']} at once {row['sum_images_per_s']:.0f} img/s" for row in record["rows"])
    return 1.0 / count, f"{count} trials share the {card}: measured {record['date']} ({measured})"


def out_of_memory_message(arm: str, gpus_per_worker: float, error: BaseException) -> str:
    share = f"{gpus_per_worker:g} of a GPU"
    return (f"arm {arm} ran out of GPU memory on its share ({share}, about {round(1 / gpus_per_worker)} trials "
            f"at once): run fewer at once with --gpus-per-worker {min(1.0, 2 * gpus_per_worker):g}, or lower "
            f"batch_size with --set batch_size=N. ({error})" if gpus_per_worker < 1 else
            f"arm {arm} ran out of GPU memory with a whole GPU: lower batch_size or image_size. ({error})")
