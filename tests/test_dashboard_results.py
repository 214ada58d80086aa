"""Reading the results contract: complete, partial and empty sweeps, refused paths, refresh."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core.results import read_history, read_metrics, run_summary_row, write_summary
from dashboards.results import UnsafePath, list_sweeps, load_sweep, resolve_inside, sweep_path
from dashboards.tables import (
    operating_point_rows,
    operating_points_by_arm,
    overall_table,
    recall_table,
    study_comparison,
)
from tests.sweep_fixture import fake_arm, make_sweep, write_sweep_json


def test_complete_sweep(tmp_path):
    make_sweep(tmp_path, "full", {"baseline": "finished", "sampler": "finished", "b2_mel_select": "finished"})
    sweep = load_sweep(sweep_path(tmp_path, "full"))
    assert sweep.arms == ["baseline", "sampler", "b2_mel_select"]
    assert sweep.finished_arms() == sweep.arms
    assert sweep.synthetic is True
    overall = overall_table(sweep.summary)
    assert list(overall["status"]) == ["finished"] * 3
    assert overall["test acc"].between(0, 1).all() and list(overall["progress"]) == ["3/3"] * 3
    assert list(recall_table(sweep.summary).columns) == ["arm", "akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    metrics = read_metrics(sweep.arm_dir("baseline"))
    assert list(operating_point_rows(metrics)["target_recall"]) == [0.85, 0.90, 0.95]
    assert list(operating_point_rows(metrics, "chosen_on_test")["target_recall"]) == [0.85, 0.90, 0.95]


def test_partial_sweep_shows_running_and_failed_arms(tmp_path):
    sweep_dir = make_sweep(tmp_path, "partial", {"baseline": "finished", "sampler": "running",
                                                 "b2_mel_select": "failed", "long_mel_select": "pending"})
    fake_arm(sweep_dir / "mel_upweight_x3", finished=False)  # started, not yet in summary.csv
    sweep = load_sweep(sweep_dir)
    status = dict(zip(sweep.summary["arm"], sweep.summary["status"], strict=True))
    assert status == {"baseline": "finished", "sampler": "running", "b2_mel_select": "failed",
                      "long_mel_select": "pending", "mel_upweight_x3": "running"}
    assert sweep.finished_arms() == ["baseline"]
    assert read_metrics(sweep.arm_dir("sampler")) is None
    assert len(read_history(sweep.arm_dir("sampler"))) == 1
    overall = overall_table(sweep.summary).set_index("arm")
    assert overall.loc["sampler", "progress"] == "1/3"
    assert pd.isna(overall.loc["sampler", "test acc"]) and pd.isna(overall.loc["sampler", "epoch"])
    table4 = operating_points_by_arm({arm: read_metrics(sweep.arm_dir(arm)) for arm in sweep.arms})
    assert list(table4["arm"]) == sweep.arms
    assert table4.set_index("arm").loc["sampler"].isna().all()


def test_sweep_whose_arms_all_run(tmp_path):
    sweep = load_sweep(make_sweep(tmp_path, "started", {"baseline": "running", "sampler": "pending"}))
    overall = overall_table(sweep.summary)
    assert list(overall["status"]) == ["running", "pending"] and list(overall["progress"]) == ["1/3", "0"]
    assert overall["test acc"].isna().all() and sweep.finished_arms() == []


def test_empty_sweep_and_empty_root(tmp_path):
    assert list_sweeps(tmp_path) == []
    assert list_sweeps(tmp_path / "absent") == []
    (tmp_path / "new").mkdir()
    write_sweep_json(tmp_path / "new", None, synthetic=True, status="running")
    (tmp_path / "not_a_sweep").mkdir()
    assert list_sweeps(tmp_path) == ["new"]
    sweep = load_sweep(sweep_path(tmp_path, "new"))
    assert sweep.arms == [] and sweep.finished_arms() == []
    assert overall_table(sweep.summary).empty and recall_table(sweep.summary).empty


def test_data_origin_comes_from_sweep_json_then_arms(tmp_path):
    real = make_sweep(tmp_path, "real", {"baseline": "finished"}, synthetic=False)
    assert load_sweep(real).synthetic is False
    compared = study_comparison(load_sweep(real).summary).set_index("arm")
    assert compared.loc["baseline", "study test acc"] == 0.7637
    assert compared.loc["baseline", "test acc"] == load_sweep(real).summary.set_index("arm").loc["baseline", "test_acc"]
    (real / "sweep.json").unlink()
    assert load_sweep(real).synthetic is False  # the arm's own flag
    shutil.rmtree(real / "baseline")
    write_summary(real, [run_summary_row("sampler", real / "sampler", "pending")])
    assert load_sweep(real).synthetic is None  # nothing says


@pytest.mark.parametrize("name", ["../x", "..", "/etc", "/tmp", "a/../../x", "", "."])
def test_names_that_leave_the_root_are_refused(tmp_path, name):
    root = tmp_path / "results"
    root.mkdir()
    (tmp_path / "x").mkdir()
    with pytest.raises(UnsafePath):
        resolve_inside(root, name)
    with pytest.raises(UnsafePath):
        sweep_path(root, name)


def test_symlink_out_of_the_root_is_refused_and_not_listed(tmp_path):
    root = tmp_path / "results"
    outside = make_sweep(tmp_path, "elsewhere", {"baseline": "finished"})
    make_sweep(root, "inside", {"baseline": "finished"})
    os.symlink(outside, root / "link_out")
    os.symlink(root / "inside", root / "link_in")
    assert sorted(list_sweeps(root)) == ["inside", "link_in"]
    with pytest.raises(UnsafePath):
        sweep_path(root, "link_out")
    sweep = load_sweep(sweep_path(root, "inside"))
    os.symlink(outside / "baseline", sweep.path / "arm_out")
    with pytest.raises(UnsafePath):
        sweep.arm_dir("arm_out")


def test_dashboard_refuses_a_requested_sweep_outside_the_root(tmp_path):
    from dashboards.state import Dashboard

    root = tmp_path / "results"
    make_sweep(root, "smoke", {"baseline": "finished"})
    make_sweep(tmp_path, "secret", {"baseline": "finished"})
    dash = Dashboard(root, requested="../secret")
    assert "Refused" in dash.message and dash.sweep_name == "smoke"
    assert dash.sweep.path == (root / "smoke").resolve()


def test_dashboard_selects_the_sweep_and_arm_an_address_asks_for(tmp_path):
    from dashboards.state import Dashboard

    make_sweep(tmp_path, "first", {"baseline": "finished"})
    make_sweep(tmp_path, "second", {"baseline": "finished", "sampler": "finished"})
    dash = Dashboard(tmp_path, requested="second", arm="sampler")
    assert (dash.sweep_name, dash.arm, dash.message) == ("second", "sampler", "")
    dash = Dashboard(tmp_path, requested="first", arm="sampler")
    assert (dash.sweep_name, dash.arm) == ("first", "baseline") and "no arm 'sampler'" in dash.message
    for parameter, name in (("sweep_name", "../second"), ("arm", "sampler")):  # as pn.state.location sets them
        with pytest.raises(ValueError):
            setattr(dash, parameter, name)
    assert (dash.sweep_name, dash.arm) == ("first", "baseline")


def test_dashboard_poll_picks_up_a_finishing_arm_and_new_sweeps(tmp_path):
    from dashboards.state import Dashboard

    sweep_dir = make_sweep(tmp_path, "live", {"baseline": "finished", "sampler": "running"})
    dash = Dashboard(tmp_path)
    version = dash.version
    dash.poll()
    assert dash.version == version  # nothing changed on disk
    fake_arm(sweep_dir / "sampler", seed=5)
    write_summary(sweep_dir, [run_summary_row(a, sweep_dir / a, "finished") for a in ("baseline", "sampler")])
    dash.poll()
    assert dash.version > version
    assert dash.sweep.finished_arms() == ["baseline", "sampler"]
    make_sweep(tmp_path, "later", {"baseline": "finished"})
    dash.poll()
    assert dash.param.sweep_name.objects == ["later", "live"] and dash.sweep_name == "live"
    shutil.rmtree(sweep_dir)
    dash.poll()
    assert dash.sweep_name == "later" and dash.sweep.name == "later"


@pytest.mark.slow  # a fresh interpreter imports the whole dashboard
def test_the_dashboard_never_imports_ray():
    code = ("import sys, dashboards.app, dashboards.report; "
            "sys.exit(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))[:3] or 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_sweep_tab_names_arms_the_profile_made_one_run(tmp_path):
    from dashboards.views.sweeps import describe

    sweep = make_sweep(tmp_path, "demo", {"b2_mel_select": "finished", "long_mel_select": "finished"})
    write_sweep_json(sweep, None, synthetic=True, same_run_as={"long_mel_select": "b2_mel_select"})
    text = describe(load_sweep(sweep))
    assert text.startswith("### Sweep `demo`")
    assert "`long_mel_select` is the same run as `b2_mel_select` on this profile" in text
    write_sweep_json(sweep, None, synthetic=True)
    assert "same run" not in describe(load_sweep(sweep))
