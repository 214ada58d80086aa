"""The report reproduces the study's Tables 2-4 (one row per arm) and figures for any sweep."""
from __future__ import annotations

import json
import re

import numpy as np

from core.results import read_sweep_record
from dashboards.report import main
from tests.sweep_fixture import make_sweep, write_sweep_json

TABLES = ("## Table 2", "## Table 3", "## Table 4", "### Table 4b", "## Table 5", "## Table 6")


def table_after(text: str, heading: str) -> list[list[str]]:
    """The body rows (cells) of the first Markdown table after `heading`."""
    lines = text[text.index(heading):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_report_of_the_smoke_sweep(smoke_sweep, tmp_path):
    out = tmp_path / "report"
    assert main(["--sweep", str(smoke_sweep), "--out", str(out), "--gradcam-examples", "2"]) == 0
    text = (out / "report.md").read_text()
    arms = sorted(p.parent.name for p in smoke_sweep.glob("*/metrics.json"))
    assert "SYNTHETIC demo data" in text.split("##")[0]  # labelled at the top
    record = read_sweep_record(smoke_sweep)  # written by the contract's own builders, as the Ray sweep's is
    assert f"- **started**: `{record['started']}`" in text and f"- **ended**: `{record['ended']}`" in text
    for heading in TABLES:
        assert sorted(row[0] for row in table_after(text, heading)) == arms, heading
    # The smoke profile makes two arms one run: the report says so, from sweep.json
    assert "`long_mel_select` is the same run as `b2_mel_select`" in text
    # The demo data has lesion masks: Grad-CAM mass on them, per arm
    mass = table_after(text, "### Grad-CAM mass on the lesion")
    assert sorted(row[0] for row in mass) == arms and all(0 <= float(row[2]) <= 1 for row in mass)
    assert "study test acc" not in text  # the study's HAM10000 figures never sit beside synthetic ones
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert images and all((out / image).is_file() for image in images)
    names = {image.split("/")[-1] for image in images}
    for arm in arms:
        assert {f"confusion_{arm}.png", f"training_{arm}.png", f"gradcam_{arm}.png", f"reliability_{arm}.png"} <= names
    assert {"threshold_curves.png", "recall_heatmap.png", "class_distribution.png", "sample_strip.png"} <= names
    for extra in (smoke_sweep / "baseline_synth").glob("*.png"):  # the cVAE's figures, when the arm has them
        assert f"baseline_synth_{extra.name}" in names


def test_report_of_a_partial_real_data_sweep(tmp_path):
    sweep = make_sweep(tmp_path, "real", {"baseline": "finished", "sampler": "running", "b2_mel_select": "failed"},
                       synthetic=False)
    out = tmp_path / "report"
    assert main(["--sweep", str(sweep), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "SYNTHETIC" not in text
    table2 = table_after(text, "## Table 2")
    assert [row[:2] for row in table2] == [["baseline", "finished"], ["sampler", "running"],
                                           ["b2_mel_select", "failed"]]
    assert table2[1][2:8] == ["-"] * 6 and table2[1][8] == "1/3"  # no metrics yet, one epoch of three
    table2b = table_after(text, "### Table 2b")  # beside the source study
    assert [row[0] for row in table2b] == ["baseline", "sampler", "b2_mel_select"] and "0.7637" in table2b[0]
    for heading in TABLES[1:]:
        rows = table_after(text, heading)
        assert [row[0] for row in rows] == ["baseline", "sampler", "b2_mel_select"]
        assert set(rows[1][1:]) == {"-"}  # the running arm has no figures yet
    assert "Skipped: the sweep's images are not here" in text
    interval = table_after(text, "## Table 5")[0][1]  # baseline's test accuracy: "estimate [low, high]"
    estimate, lo, hi = map(float, re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", interval).groups())
    assert lo <= estimate <= hi and lo < hi
    assert float(table_after(text, "## Table 6")[0][1]) > 0  # the fitted temperature
    assert "## Table 8" not in text  # one finished arm: nothing to compare baseline with


def test_paired_table_compares_each_finished_arm_with_baseline(tmp_path):
    sweep = make_sweep(tmp_path, "pairs", {"baseline": "finished", "sampler": "finished", "b2_mel_select": "running"})
    out = tmp_path / "report"
    assert main(["--sweep", str(sweep), "--out", str(out)]) == 0
    rows = table_after((out / "report.md").read_text(), "## Table 8")
    assert [row[:2] for row in rows] == [["sampler - baseline", "1 x 1"]]
    difference, lo, hi = map(float, re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", rows[0][2]).groups())
    assert lo <= difference <= hi
    assert rows[0][-1] == "one run"  # one training seed each: never called separated
    assert (out / "findings.json").is_file()


def test_seed_table_is_mean_and_std_over_every_seed(tmp_path):
    sweep = make_sweep(tmp_path, "seeds", {"baseline": "finished", "sampler": "finished"}, seeds={"sampler": 3})
    out = tmp_path / "report"
    assert main(["--sweep", str(sweep), "--out", str(out)]) == 0
    rows = table_after((out / "report.md").read_text(), "## Table 9")
    assert [row[:2] for row in rows] == [["sampler", "3"]]  # baseline ran once: no spread to show
    runs = [sweep / "sampler", *sorted((sweep / "sampler" / "seeds").iterdir())]
    tests = [json.loads((run / "metrics.json").read_text())["test"] for run in runs]
    for column, key in ((2, "accuracy"), (3, "macro_f1")):
        values = [test[key] for test in tests]
        assert np.std(values) > 0 and rows[0][column] == f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def test_refuses_a_folder_that_is_not_a_sweep(tmp_path, capsys):
    assert main(["--sweep", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "not a sweep folder" in capsys.readouterr().err


def test_report_of_a_sweep_without_arms(tmp_path):
    (tmp_path / "new").mkdir()
    write_sweep_json(tmp_path / "new", None, synthetic=True, status="running")
    assert main(["--sweep", str(tmp_path / "new"), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "SYNTHETIC demo data" in text and "The sweep has no arms yet." in text


def test_a_full_disk_during_the_report_names_the_file_and_keeps_the_last_report(tmp_path, monkeypatch, capsys):
    from core import io

    sweep, out = make_sweep(tmp_path, "sweep", {"baseline": "finished", "sampler": "finished"}), tmp_path / "report"
    assert main(["--sweep", str(sweep), "--out", str(out), "--gradcam-examples", "0"]) == 0
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}

    def no_space(fd):
        raise OSError(io.errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", no_space)
    assert main(["--sweep", str(sweep), "--out", str(out), "--gradcam-examples", "0"]) == 2
    assert re.search(rf"error: no space left to write {re.escape(str(out))}/\S+ \(\d+ MiB free there\); the previous",
                     capsys.readouterr().err)
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before  # no temporary left
    monkeypatch.undo()  # space is back
    assert main(["--sweep", str(sweep), "--out", str(out), "--gradcam-examples", "0"]) == 0
