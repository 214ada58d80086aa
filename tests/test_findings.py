"""A sweep's findings: the comparisons the design makes, seed-aware, written by the report as
findings.json and as its Findings section, and shown by the dashboard's sweep tab."""
from __future__ import annotations

import json

import pytest

from core.arms import DESIGN_PAIRS, REFERENCE, comparisons, study_arms
from core.evaluation.findings import VERDICTS, sweep_findings
from core.evaluation.seeds import FIGURES
from dashboards.report import main as report
from dashboards.results import load_sweep
from tests.sweep_fixture import make_sweep
from tests.test_report import table_after

KEYS = {"arm", "reference", "metric", "estimate", "low", "high", "p_improvement", "seeds", "verdict"}


def test_the_design_compares_every_arm_with_baseline_and_its_one_choice_pairs():
    pairs = comparisons(study_arms())
    assert [(REFERENCE, arm) for arm in study_arms() if arm != REFERENCE] == pairs[:len(study_arms()) - 1]
    assert pairs[len(study_arms()) - 1:] == [(a, b) for a, b, _ in DESIGN_PAIRS]
    # An arm the profile made the same run as another is not compared twice.
    demo = comparisons(study_arms(), {"long_mel_select": "b2_mel_select"})
    assert not any("long_mel_select" in pair for pair in demo)
    assert comparisons(["sampler", "mel_upweight_x3"]) == []  # no baseline, no design pair


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """baseline and sampler with 3 seeds (sampler predicts far better), mel_upweight_x3 with one."""
    root = tmp_path_factory.mktemp("findings")
    sweep = make_sweep(root, "seeded", {"baseline": "finished", "sampler": "finished", "mel_upweight_x3": "finished"},
                       seeds={"baseline": 3, "sampler": 3}, signal={"sampler": 6.0})
    out = root / "report"
    assert report(["--sweep", str(sweep), "--out", str(out)]) == 0
    return sweep, out, json.loads((out / "findings.json").read_text())


def test_findings_json_holds_every_comparison_with_a_verdict(seeded):
    _, _, found = seeded
    entries = found["findings"]
    assert [(e["arm"], e["metric"]) for e in entries] == [(arm, m) for arm in ("sampler", "mel_upweight_x3")
                                                          for m in FIGURES]
    assert all(set(e) >= KEYS and e["reference"] == "baseline" and e["verdict"] in VERDICTS for e in entries)
    assert found["comparisons"] == len(FIGURES)  # the one-run arm's entries carry no p-value
    sampler = {e["metric"]: e for e in entries if e["arm"] == "sampler"}
    assert sampler["accuracy"]["verdict"] == "higher" and sampler["accuracy"]["seeds"] == [3, 3]
    assert sampler["accuracy"]["low"] > 0 and sampler["accuracy"]["p_improvement"] == 1.0
    one = [e for e in entries if e["arm"] == "mel_upweight_x3"]
    assert {e["verdict"] for e in one} == {"one run"} and all(e["p_value"] is None for e in one)


def test_the_report_states_the_findings_and_draws_them(seeded):
    _, out, found = seeded
    text = (out / "report.md").read_text()
    section = text.split("## Findings")[1].split("\n## ")[0]
    assert "`sampler` has higher test accuracy than `baseline`" in section
    assert "One run (one training run: training variance not measured)" in section
    assert (out / "figures" / "forest.png").is_file()
    rows = table_after(text, "## Table 8")
    assert [row[:2] for row in rows] == [["sampler - baseline", "3 x 3"], ["mel_upweight_x3 - baseline", "3 x 1"]]
    assert "Δ test acc higher" in rows[0][-1] and rows[1][-1] == "one run"
    difference = next(e for e in found["findings"] if e["arm"] == "sampler" and e["metric"] == "accuracy")
    assert rows[0][2] == f"{difference['estimate']:+.3f} [{difference['low']:+.3f}, {difference['high']:+.3f}]"


def test_the_sweep_tab_shows_the_same_findings(seeded):
    from dashboards.views.sweeps import findings_panes

    sweep, _, found = seeded
    panes = findings_panes(load_sweep(sweep))
    text, table = panes[0].object, panes[-1].value
    assert "`sampler` has higher test accuracy than `baseline`" in text
    assert list(table["verdict"]) == [e["verdict"] for e in found["findings"]]
    assert list(table["estimate"].round(9)) == [round(e["estimate"], 9) for e in found["findings"]]


def test_with_one_seed_every_verdict_is_one_run(tmp_path):
    sweep = make_sweep(tmp_path, "once", {"baseline": "finished", "sampler": "finished"}, signal={"sampler": 6.0})
    found = sweep_findings(sweep, ["baseline", "sampler"])
    assert {e["verdict"] for e in found["findings"]} == {"one run"} and found["comparisons"] == 0
    out = tmp_path / "report"
    assert report(["--sweep", str(sweep), "--out", str(out)]) == 0
    assert "nothing is called separated" in (out / "report.md").read_text()


def test_runs_tested_on_other_images_are_refused(tmp_path):
    sweep = make_sweep(tmp_path, "mixed", {"baseline": "finished", "sampler": "finished"}, seeds={"sampler": 2})
    test = sweep / "sampler" / "seeds" / "seed_1" / "predictions_test.csv"
    test.write_text(test.read_text().replace("IMG_test_0001", "IMG_other_0001"))
    with pytest.raises(ValueError, match="tested on other images than the sweep's other runs"):
        sweep_findings(sweep, ["baseline", "sampler"])
    out = tmp_path / "report"
    assert report(["--sweep", str(sweep), "--out", str(out)]) == 0  # the rest of the report is written
    assert "Not computed:" in (out / "report.md").read_text()


def test_the_figure_names_follow_the_statistics_figures():
    from core.evaluation.findings import FIGURE_NAMES

    assert tuple(FIGURE_NAMES) == FIGURES


def test_a_rerun_confirms_or_contradicts_each_separated_finding(seeded, tmp_path, capsys):
    from core.evaluation.findings import agreement, main

    _, out, found = seeded
    same = agreement(found, found)
    separated = [e for e in found["findings"] if e["verdict"] in ("higher", "lower")]
    assert len(same["confirmed"]) == len(separated) > 0 and same["contradicted"] == []
    flipped = json.loads(json.dumps(found))
    first = next(e for e in flipped["findings"] if e["verdict"] in ("higher", "lower"))
    first["verdict"] = "lower" if first["verdict"] == "higher" else "higher"
    other = next(e for e in flipped["findings"] if e["verdict"] in ("higher", "lower") and e is not first)
    other["verdict"] = "not separated"
    (tmp_path / "rerun.json").write_text(json.dumps(flipped))
    assert main([str(out / "findings.json"), str(tmp_path / "rerun.json")]) == 1  # a contradiction fails
    printed = capsys.readouterr().out
    assert f"confirmed: {len(separated) - 2}" in printed and "contradicted: 1" in printed
    assert "one_only: 1" in printed
    assert main([str(out / "findings.json"), str(tmp_path / "missing.json")]) == 2
