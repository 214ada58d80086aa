"""`python -m core.evaluation.compare`: B minus A on the shared test set, and clear refusals."""
from __future__ import annotations

import json

import pandas as pd

from core.evaluation.compare import main
from tests.sweep_fixture import make_sweep


def test_compare_two_arms_of_a_sweep(tmp_path, capsys):
    sweep = make_sweep(tmp_path, "s", {"baseline": "finished", "sampler": "finished"})
    out = tmp_path / "pair.json"
    assert main([str(sweep / "baseline"), str(sweep / "sampler"), "--replicates", "50", "--out", str(out)]) == 0
    assert "sampler minus baseline" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["a"] == "baseline" and result["b"] == "sampler" and result["replicates"] == 50


def test_runs_tested_on_different_images_are_refused(tmp_path, capsys):
    sweep = make_sweep(tmp_path, "s", {"baseline": "finished", "sampler": "finished"})
    predictions = sweep / "sampler" / "predictions_test.csv"
    pd.read_csv(predictions).iloc[:-1].to_csv(predictions, index=False)  # one image fewer
    assert main([str(sweep / "baseline"), str(sweep / "sampler")]) == 2
    assert "tested on different images" in capsys.readouterr().err


def test_a_missing_run_folder_is_refused(tmp_path, capsys):
    sweep = make_sweep(tmp_path, "s", {"baseline": "finished"})
    assert main([str(sweep / "baseline"), str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
