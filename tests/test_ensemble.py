"""An ensemble of finished arms: mean probabilities, evaluated like a run, shown beside the arms."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from core.evaluation.ensemble import main
from core.evaluation.metrics import classification_metrics
from core.results import read_predictions
from dashboards.report import main as report_main
from tests.sweep_fixture import make_sweep
from tests.test_report import table_after


def test_ensemble_averages_the_members_and_joins_the_summary(tmp_path, capsys):
    sweep = make_sweep(tmp_path, "s", {"baseline": "finished", "sampler": "finished", "b2_mel_select": "running"})
    assert main(["--sweep", str(sweep), "--arms", "baseline", "sampler"]) == 0
    out = sweep / "ensemble_baseline+sampler"
    assert "ensemble_baseline+sampler: test acc" in capsys.readouterr().out
    _, a, frame = read_predictions(sweep / "baseline" / "predictions_test.csv")
    _, b, other = read_predictions(sweep / "sampler" / "predictions_test.csv")
    b = b[other.set_index("image_id").index.get_indexer(frame["image_id"])]
    y, mean, _ = read_predictions(out / "predictions_test.csv")
    np.testing.assert_allclose(mean, (a + b) / 2, atol=1e-9)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == classification_metrics(y, mean)["accuracy"]
    assert metrics["members"] == ["baseline", "sampler"] and "test_intervals" in metrics
    summary = pd.read_csv(sweep / "summary.csv")
    assert summary["arm"].tolist()[-1] == out.name and summary["status"].tolist()[-1] == "finished"

    report = tmp_path / "report"
    assert report_main(["--sweep", str(sweep), "--out", str(report)]) == 0
    text = (report / "report.md").read_text()
    assert out.name in [row[0] for row in table_after(text, "## Table 2")]
    assert f"{out.name} - baseline" in [row[0] for row in table_after(text, "## Table 8")]  # compared too


def test_an_unfinished_member_is_refused(tmp_path, capsys):
    sweep = make_sweep(tmp_path, "s", {"baseline": "finished", "sampler": "running"})
    assert main(["--sweep", str(sweep), "--arms", "baseline", "sampler"]) == 2
    err = capsys.readouterr().err
    assert "arm(s) without results" in err and "sampler" in err
    assert not (sweep / "ensemble_baseline+sampler").exists()


def test_one_arm_is_not_an_ensemble(tmp_path, capsys):
    sweep = make_sweep(tmp_path, "s", {"baseline": "finished"})
    assert main(["--sweep", str(sweep), "--arms", "baseline"]) == 2
    assert "at least two arms" in capsys.readouterr().err


def test_members_evaluated_on_different_images_are_refused(tmp_path, capsys):
    sweep = make_sweep(tmp_path, "s", {"baseline": "finished", "sampler": "finished"})
    predictions = sweep / "sampler" / "predictions_val.csv"
    pd.read_csv(predictions).iloc[:-1].to_csv(predictions, index=False)
    assert main(["--sweep", str(sweep), "--arms", "baseline", "sampler"]) == 2
    assert "different val images" in capsys.readouterr().err
    assert not (sweep / "ensemble_baseline+sampler").exists()
