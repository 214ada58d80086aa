"""A trained run leaves dermablate: timm alone and onnxruntime alone reproduce it, and its model
card says what it is (core/export.py, core/evaluation/model_card.py)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from core import results
from core.config import from_dict
from core.evaluation.model_card import model_card, sweep_context
from core.export import main as export_cli
from core.inference import load_run
from tests.sweep_fixture import make_sweep
from tests.test_checkpoints import REFUSAL, WritesMarker

REPO = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter from the export folder: it must not reach dermablate's modules.
ALONE = textwrap.dedent("""
    import sys
    sys.path = [p for p in sys.path if p not in ("", ".", {repo!r})]
    import numpy as np
    {load}
    assert not {{"core", "ray_jobs", "dashboards", "ablations", "dermablate"}} & set(sys.modules), sys.modules
""")
TIMM_ALONE = """
import timm, torch
model = timm.create_model("local-dir:" + sys.argv[1], pretrained=True).eval()
with torch.no_grad():
    np.save(sys.argv[3], model(torch.from_numpy(np.load(sys.argv[2]))).numpy())
"""
ONNX_ALONE = """
import onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1] + "/model.onnx", providers=["CPUExecutionProvider"])
np.save(sys.argv[3], session.run(["logits"], {"image": np.load(sys.argv[2])})[0])
"""


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    run_dir, _ = trained_run
    out = tmp_path_factory.mktemp("export") / "baseline"
    assert export_cli(["--run", str(run_dir), "--out", str(out), "--onnx"]) == 0
    return run_dir, out


def alone(load: str, folder, images: np.ndarray, tmp_path) -> np.ndarray:
    inputs, outputs = tmp_path / "images.npy", tmp_path / "logits.npy"
    np.save(inputs, images)
    code = ALONE.format(repo=str(REPO), load=load)
    done = subprocess.run([sys.executable, "-c", code, str(folder), str(inputs), str(outputs)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(outputs)


def batch(trained, n: int) -> np.ndarray:
    return torch.randn(n, 3, trained.image_size, trained.image_size, generator=torch.Generator().manual_seed(n)).numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_the_folder_holds_timms_layout_the_operating_points_and_the_card(exported):
    run_dir, out = exported
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.onnx", "model.safetensors",
                                                     "operating_points.json"]
    trained, metrics = load_run(run_dir), results.read_metrics(run_dir)
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == trained.config.backbone and config["num_classes"] == 7
    assert config["label_names"] == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    pre = config["pretrained_cfg"]
    assert pre["input_size"] == [3, trained.image_size, trained.image_size] and pre["crop_mode"] == "squash"
    assert (tuple(pre["mean"]), tuple(pre["std"])) == (trained.mean, trained.std)
    assert config["dermablate"]["temperature"] == pytest.approx(metrics["calibration"]["temperature"])
    points = json.loads((out / "operating_points.json").read_text())
    assert [p["threshold"] for p in points["softmax"]] == [
        p["threshold"] for p in metrics["mel_operating_points"]["chosen_on_val"] if p["threshold"] is not None]


def test_timm_alone_gives_best_pts_logits(exported, tmp_path):
    run_dir, out = exported
    trained = load_run(run_dir)
    images = batch(trained, 4)
    with torch.no_grad():
        expected = trained.model(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(alone(TIMM_ALONE, out, images, tmp_path), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("n", [1, 5])
def test_onnxruntime_alone_gives_torchs_probabilities(exported, tmp_path, n):
    run_dir, out = exported
    trained = load_run(run_dir)
    images = batch(trained, n)
    with torch.no_grad():
        expected = torch.softmax(trained.model(torch.from_numpy(images)), dim=1).numpy()
    np.testing.assert_allclose(softmax(alone(ONNX_ALONE, out, images, tmp_path)), expected, atol=1e-4, rtol=0)


def test_a_synthetic_runs_card_says_so_first(exported):
    _, out = exported
    card = (out / "README.md").read_text()
    assert card.startswith("SYNTHETIC DEMO DATA")
    assert card.rstrip().endswith("A model trained on it carries those terms.")


def test_a_real_data_runs_card_holds_every_section(tmp_path):
    sweep = make_sweep(tmp_path, "real", {"baseline": "finished"}, synthetic=False, seeds={"baseline": 3})
    record = results.read_sweep_record(sweep)
    record["duplicates"] = {"file": "/data/duplicates.csv", "pairs": 47, "links_applied": 39,
                            "crossing_without": 16, "crossing_with": 0}
    results.write_sweep_record(sweep, record)
    run_dir = sweep / "baseline"
    metrics = results.read_metrics(run_dir)
    metrics["ood"] = {"statistic": "Mahalanobis distance", "threshold": 3.5, "threshold_rule": "95% quantile",
                      "test_false_alarm_rate": 0.04}
    metrics["subgroups"]["rows"][0].update(flagged=True, mel_recall=0.25, mel_recall_lo=0.0, mel_recall_hi=0.6)
    cfg = from_dict(results.read_config(run_dir), source="the fixture's config.json")
    card = model_card(run_dir, metrics, cfg, sweep_context(run_dir))
    first, *_ = card.splitlines()
    assert "SYNTHETIC" not in card and first.startswith("Trained and tested on real dermoscopic images")
    for heading in ("# Model card: baseline", "## Intended use", "## Data", "## Split", "## Test figures",
                    "## Per-class recall (test)", "## Melanoma operating points", "## Calibration",
                    "## Subgroups below the overall figure", "## Out-of-distribution screen", "## Limits",
                    "## Not a medical device", "## Licence of the data"):
        assert f"\n{heading}\n" in card, heading
    assert "split fingerprint: `" in card and "applied: `/data/duplicates.csv`, 47 pair(s)" in card
    assert "mean ± sd over 3 seeds" in card and "| melanoma recall |" in card
    assert "false-alarm rate on the in-distribution test images: 0.040" in card
    flagged = metrics["subgroups"]["rows"][0]
    assert f"| {flagged['attribute']} | {flagged['group']} |" in card and "| 0.250 | [0.000, 0.600] |" in card
    assert "not a medical device" in card and "CC BY-NC 4.0" in card
    assert card.index("## Not a medical device") > card.index("## Limits")


def test_a_crafted_checkpoint_is_refused_and_nothing_runs(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    copy = shutil.copytree(run_dir, tmp_path / "run")
    marker = tmp_path / "code-ran"
    genuine = torch.load(copy / "best.pt", weights_only=True)
    torch.save({**genuine, "payload": WritesMarker(marker)}, copy / "best.pt")
    assert export_cli(["--run", str(copy), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert REFUSAL in err and str(copy / "best.pt") in err
    assert not marker.exists() and not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # no half-built folder


def test_an_existing_folder_is_not_written_over(exported, capsys):
    run_dir, out = exported
    before = (out / "README.md").read_text()
    assert export_cli(["--run", str(run_dir), "--out", str(out)]) == 2
    assert f"{out} exists: choose a new --out" in capsys.readouterr().err
    assert (out / "README.md").read_text() == before
