"""Errors no retry can fix: the first attempt records one in its run folder, and retries stop at once.

Ray 2.60's Tune retries every failed trial alike (`FailureConfig` has no per-exception
filter). So a trial that fails with a bad config, bad data, an untrusted checkpoint, a
packed GPU's out-of-memory or missing pretrained weights writes `failed.json` (the error's
type and message) beside where its results would go, then raises. Tune's retry finds it
and raises the same error before any training; the sweep summary shows the message.
A new start or --resume of the sweep clears the records, so a fixed cause trains again.
"""
from __future__ import annotations

from collections.abc import Iterator

from core.checkpoints import UntrustedCheckpoint
from core.config import ConfigError, RunConfig
from core.data.metadata import DatasetError
from core.model import weights_problem
from core.results import SAMPLES_DIR, SEEDS_DIR
from ray_jobs import storage
from ray_jobs.packing import PackedOutOfMemory

FAILED_FILE = "failed.json"
PERMANENT = (ConfigError, DatasetError, UntrustedCheckpoint, PackedOutOfMemory)


class PermanentFailure(RuntimeError):
    """A retried trial whose earlier attempt failed for good; its message is that attempt's error."""


def causes(error: BaseException) -> Iterator[BaseException]:
    """`error` and what it wraps: Ray Train's worker and controller failures, and exception chains."""
    seen, todo = set(), [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, getattr(e, "cause", None), getattr(e, "controller_failure", None),
                 *getattr(e, "worker_failures", {}).values()]


def permanent_cause(error: BaseException, cfg: RunConfig) -> BaseException | None:
    """The error inside `error` that a retry cannot fix, or None when a retry may help."""
    for e in causes(error):
        if isinstance(e, PERMANENT):
            return e
        # build_model raises RuntimeError for weights it cannot get; whether they can be had is checked afresh
        if isinstance(e, RuntimeError) and weights_problem(cfg.backbone, cfg.pretrained):
            return e
    return None


def record_if_permanent(out: str, error: BaseException, cfg: RunConfig) -> None:
    """Write the run's failed.json when `error` is one that no retry can fix."""
    cause = permanent_cause(error, cfg)
    if cause is not None:
        storage.write_json(storage.join(out, FAILED_FILE), {"error": type(cause).__name__, "message": str(cause)})


def read_record(out: str) -> str | None:
    """The error an earlier attempt of the run at `out` recorded, as "Type: message"; None if none did."""
    failed_file = storage.join(out, FAILED_FILE)
    if not storage.exists(failed_file):
        return None
    failed = storage.read_json(failed_file)
    return f"{failed['error']}: {failed['message']}"


def raise_if_recorded(out: str) -> None:
    """PermanentFailure with the recorded error, when an earlier attempt of this run recorded one."""
    recorded = read_record(out)
    if recorded:
        raise PermanentFailure(f"{recorded} (not retried: an earlier attempt failed the same way, recorded in "
                               f"{storage.join(out, FAILED_FILE)})")


def run_folders(arm_dir: str) -> list[str]:
    """The arm's run folder, and those of its samples and other seeds."""
    return [arm_dir, *(storage.join(arm_dir, sub, name) for sub in (SAMPLES_DIR, SEEDS_DIR)
                       for name in storage.list_dirs(storage.join(arm_dir, sub)))]


def recorded_error(arm_dir: str) -> str | None:
    """The first recorded permanent error among the arm's runs."""
    return next(filter(None, map(read_record, run_folders(arm_dir))), None)


def clear_records(results: str, arms: list[str]) -> None:
    """Forget the permanent errors of an earlier start of the sweep: the user may have fixed their cause."""
    for arm in arms:
        for folder in run_folders(storage.join(results, arm)):
            storage.remove(storage.join(folder, FAILED_FILE))
