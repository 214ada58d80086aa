"""A disk that fills mid-sweep, while the sweep rewrites summary.csv: run_all names the file and
the space left, keeps the last good summary, and --resume finishes the sweep once space is back.
(A full disk inside a trial, at its checkpoint or metrics.json, is test_train.py's.)"""
from __future__ import annotations

import errno
import shutil

import pandas as pd
import pytest
import ray

from ablations import run_all
from ray_jobs import storage

pytestmark = pytest.mark.slow


def test_a_full_disk_mid_sweep_is_named_and_resume_finishes_once_space_is_back(ray_cluster, demo_root, tmp_path,
                                                                               monkeypatch, capsys):
    results, sweep = tmp_path / "results", tmp_path / "results" / "smoke"
    common = ["--results", str(results), "--name", "smoke", "--address", ray_cluster.address]
    copy, summaries = shutil.copyfile, []

    def full_after_the_first_summary(src, dst):
        if "summary.csv" in str(dst):
            summaries.append(pd.read_csv(src))
            if len(summaries) > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
        return copy(src, dst)

    monkeypatch.setattr(storage.shutil, "copyfile", full_after_the_first_summary)
    try:
        status = run_all.main([*common, "--data-root", str(demo_root), "--profile", "smoke", "--arms", "baseline",
                               "--seeds", "1", "-q"])
    finally:
        ray.shutdown()
    captured = capsys.readouterr()
    assert status == 2
    assert f"error: no space left to write {sweep}/summary.csv (" in captured.err and "MiB free there)" in captured.err
    assert f"continue it with: python ablations/run_all.py --results {results} --name smoke --resume" in captured.out
    kept = pd.read_csv(sweep / "summary.csv")
    assert kept.equals(summaries[0]) and kept["status"].tolist() == ["running"]  # the last good one, whole
    assert sorted(p.name for p in sweep.iterdir() if "summary" in p.name) == ["summary.csv"]  # no temporary

    monkeypatch.undo()  # space is back
    try:
        assert run_all.main([*common, "--resume", "-q"]) == 0
    finally:
        ray.shutdown()
    assert pd.read_csv(sweep / "summary.csv")["status"].tolist() == ["finished"]
    assert (sweep / "baseline" / "metrics.json").is_file()
