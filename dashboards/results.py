"""Read the results contract (RESULTS/<sweep>/...): pure functions, no Panel.

The dashboard and the report both read through here. Every path that comes from
outside (a sweep name picked in the page, an arm name from summary.csv) is resolved
and must stay inside its root: `..`, absolute paths and symlinks that lead out are
refused with UnsafePath.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from core import results
from core.evaluation.findings import sweep_findings
from core.results import STATUSES, SUMMARY_COLUMNS, read_config, read_history, read_predictions, run_summary_row

SWEEP_MARKERS = (results.SWEEP_RECORD, results.SUMMARY)
ARM_FILES = (results.CONFIG, results.HISTORY, results.METRICS)  # what makes a folder an arm's run folder


class UnsafePath(ValueError):
    """A requested path that would leave the folder it must stay in."""


def resolve_inside(root: str | Path, name: str) -> Path:
    """`root/name`, fully resolved, or UnsafePath when it is not strictly inside `root`."""
    base = Path(root).resolve()
    if not name or Path(name).is_absolute():
        raise UnsafePath(f"{name!r} is not a name inside {base}")
    target = (base / name).resolve()
    if base not in target.parents:
        raise UnsafePath(f"{name!r} leads outside {base}")
    return target


def is_sweep(path: Path) -> bool:
    return path.is_dir() and any((path / marker).is_file() for marker in SWEEP_MARKERS)


def list_sweeps(results_root: str | Path) -> list[str]:
    """Names of the sweep folders directly under the results root, sorted.

    A folder (or symlink) that resolves outside the root is left out.
    """
    root = Path(results_root)
    if not root.is_dir():
        return []
    sweeps = []
    for child in root.iterdir():
        try:
            path = resolve_inside(root, child.name)
        except UnsafePath:
            continue
        if is_sweep(path):
            sweeps.append(child.name)
    return sorted(sweeps)


def sweep_path(results_root: str | Path, name: str) -> Path:
    """The folder of sweep `name` under the results root; UnsafePath or FileNotFoundError otherwise."""
    path = resolve_inside(results_root, name)
    if not is_sweep(path):
        raise FileNotFoundError(f"no sweep {name!r} under {Path(results_root).resolve()}")
    return path


@dataclass
class SweepView:
    """A sweep folder as the dashboard and the report show it."""

    path: Path
    info: dict  # sweep.json; {} while it is not written yet
    summary: pd.DataFrame  # summary.csv columns plus epochs_done and epochs, one row per arm

    @property
    def name(self) -> str:
        return self.info.get("name") or self.path.name

    @property
    def synthetic(self) -> bool | None:
        """sweep.json's synthetic_data, else the arms' own flag; None when nothing says."""
        if isinstance(self.info.get("synthetic_data"), bool):
            return self.info["synthetic_data"]
        flags = self.summary["synthetic_data"].dropna()
        return bool(flags.astype(str).str.lower().eq("true").any()) if len(flags) else None

    @property
    def data_root(self) -> Path | None:
        return Path(self.info["data_root"]) if self.info.get("data_root") else None

    @property
    def arms(self) -> list[str]:
        return list(self.summary["arm"])

    def finished_arms(self) -> list[str]:
        return list(self.summary.loc[self.summary["status"] == "finished", "arm"])

    def arm_dir(self, arm: str) -> Path:
        return resolve_inside(self.path, arm)


def load_sweep(path: str | Path) -> SweepView:
    path = Path(path)
    return SweepView(path, results.read_sweep_record(path) or {}, load_summary(path))


def load_summary(sweep_dir: str | Path) -> pd.DataFrame:
    """summary.csv, plus a row for each arm folder it does not list yet.

    An unlisted folder counts as finished when it holds metrics.json and as running
    otherwise. Every row gains `epochs_done` (rows of history.csv) and `epochs` (the
    configured number), so a running arm can show its progress.
    """
    sweep_dir = Path(sweep_dir)
    columns = list(SUMMARY_COLUMNS)
    summary = results.read_summary(sweep_dir)
    summary = pd.DataFrame(columns=columns) if summary is None else summary.reindex(columns=columns)
    listed = set(summary["arm"])
    extra = []
    for folder in sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name not in listed):
        if any((folder / f).is_file() for f in ARM_FILES):
            status = "finished" if (folder / results.METRICS).is_file() else "running"
            extra.append(run_summary_row(folder.name, folder, status))
    if extra:
        summary = pd.concat([summary, pd.DataFrame(extra, columns=columns)], ignore_index=True)
    summary["status"] = summary["status"].where(summary["status"].isin(STATUSES), "pending")
    progress = [_progress(sweep_dir, arm) for arm in summary["arm"]]
    summary["epochs_done"] = [done for done, _ in progress]
    summary["epochs"] = [total for _, total in progress]
    return summary


def _progress(sweep_dir: Path, arm: str) -> tuple[int, int | None]:
    try:
        arm_dir = resolve_inside(sweep_dir, arm)
    except UnsafePath:
        return 0, None
    history = read_history(arm_dir)
    config = read_config(arm_dir) or {}
    return (0 if history is None else len(history)), config.get("epochs")


def load_predictions(arm_dir: Path, split: str) -> pd.DataFrame | None:
    """predictions_<split>.csv, validated by core.evaluation.metrics; None when the arm has none yet."""
    path = results.predictions_path(arm_dir, split)
    return read_predictions(path)[2] if path.is_file() else None


def arm_images(arm_dir: Path) -> list[Path]:
    """Extra PNG figures an arm wrote into its run folder (e.g. the cVAE's losses and samples)."""
    return sorted(arm_dir.glob("*.png"))


def stamp(path: Path) -> tuple[int, int, int] | None:
    """(mtime_ns, size, inode) of a file, None when it is absent. Part of a cache key, it makes a
    rewritten file miss: an atomic rewrite gives it a new inode even within the clock's resolution."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def files_signature(sweep_dir: Path) -> tuple:
    """(name, stamp) of every results file of a sweep and of its checkpoints: it changes whenever a run writes."""
    files = [sweep_dir / name for name in SWEEP_MARKERS]
    if sweep_dir.is_dir():
        files += [p for arm in sweep_dir.iterdir() if arm.is_dir() for p in arm.iterdir()
                  if p.name in (*ARM_FILES, results.CHECKPOINT) or p.suffix == ".png"]
    entries = [(str(path), stamp(path)) for path in files if path.is_file()]
    return tuple(sorted(entries))


def sweep_findings_of(sweep: SweepView) -> dict:
    """findings.json's content for the sweep's finished arms (core/evaluation/findings.py), computed once
    per state of their runs' test predictions: the report and the sweep tab show the same figures."""
    arms = tuple(sweep.finished_arms())
    runs = [run for arm in arms for run in results.seed_runs(sweep.arm_dir(arm))]
    state = tuple((str(run), stamp(results.predictions_path(run, "test"))) for run in runs)
    same = tuple(sorted((sweep.info.get("same_run_as") or {}).items()))
    return _findings(str(sweep.path), arms, same, state)


@lru_cache(maxsize=4)
def _findings(path: str, arms: tuple[str, ...], same_run_as: tuple, _state: tuple) -> dict:
    return sweep_findings(Path(path), list(arms), dict(same_run_as))
