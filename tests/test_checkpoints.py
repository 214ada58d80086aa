"""Checkpoints never run code: crafted best.pt, last.pt, Ray state and cvae.pt are refused everywhere.

Each crafted file is a genuine checkpoint with one extra object whose unpickling would
create a marker file (what a hostile file does, without the harm). Every loader must
refuse it with UntrustedCheckpoint, and the marker must never appear.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from core.checkpoints import UntrustedCheckpoint, load_checkpoint
from core.cvae.store import load_cvae
from core.data.dataset import load_dataset
from core.evaluate import main as evaluate_cli
from core.explain import main as explain_cli
from core.inference import load_run
from core.predict import main as predict_cli
from core.results import EXTERNAL_METRICS as EXTERNAL_METRICS_FILE
from core.results import run_summary_row, write_summary
from core.train import main as train_cli
from dashboards.report import main as report_cli
from dashboards.state import Dashboard
from dashboards.views.gallery import gallery_page
from dashboards.views.predict import predict_view
from tests.sweep_fixture import CONFIGS, write_sweep_json

pytestmark = pytest.mark.timeout(300)

REFUSAL = "holds objects that are not allowed"


class WritesMarker:
    """Unpickled, this calls open(marker, "w")."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def craft(path: Path, genuine: dict, marker: Path) -> Path:
    torch.save({**genuine, "payload": WritesMarker(marker)}, path)
    return path


def assert_refused(message: str, path: Path, marker: Path) -> None:
    assert str(path) in message and REFUSAL in message and "may not be trusted" in message
    assert not marker.exists()


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "code-ran"


@pytest.fixture(scope="module")
def sweep(trained_run, demo_root, tmp_path_factory) -> Path:
    """Two finished arms: `baseline` as trained, and `hostile`, the same run with a crafted best.pt."""
    sweep_dir = tmp_path_factory.mktemp("results") / "smoke"
    run, _ = trained_run
    shutil.copytree(run, sweep_dir / "baseline")
    hostile = shutil.copytree(run, sweep_dir / "hostile")
    craft(hostile / "best.pt", load_checkpoint(run / "best.pt"), sweep_dir.parent / "code-ran")
    write_summary(sweep_dir, [run_summary_row(arm, sweep_dir / arm, "finished") for arm in ("baseline", "hostile")])
    write_sweep_json(sweep_dir, demo_root, synthetic=True)
    return sweep_dir


def test_the_crafted_file_does_run_code_when_unpickled_unsafely(tmp_path, marker):
    path = craft(tmp_path / "best.pt", {"model": {}}, marker)
    torch.load(path, weights_only=False)
    assert marker.exists()  # so the refusals below are what keeps it from running


def test_genuine_checkpoints_load(trained_run):
    run, state = trained_run
    best = load_checkpoint(run / "best.pt")
    assert {"model", "config", "classes", "mean", "std", "epoch", "synthetic_data"} <= set(best)
    assert load_run(run).config.to_dict() == best["config"]  # a RunConfig, the same values
    resume = load_checkpoint(state)
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "history", "best"} <= set(resume)
    assert len(resume["history"]) == resume["epoch"]


def test_load_checkpoint_names_the_file_and_what_it_holds(tmp_path, marker):
    path = craft(tmp_path / "best.pt", {"model": {}}, marker)
    with pytest.raises(UntrustedCheckpoint) as refused:
        load_checkpoint(path)
    assert_refused(str(refused.value), path, marker)
    assert "open" in str(refused.value)  # the object it would have called
    assert isinstance(refused.value, ValueError)


def test_predict_refuses_a_crafted_best_pt(sweep, demo_root, capsys):
    image = next(demo_root.rglob("*.jpg"))
    assert predict_cli(["--run", str(sweep / "hostile"), str(image)]) == 2
    captured = capsys.readouterr()
    assert_refused(captured.err, sweep / "hostile" / "best.pt", sweep.parent / "code-ran")
    assert captured.out == ""


def external_set(demo_root: Path, folder: Path) -> Path:
    """Three demo images as an ISIC 2018 Task 3 test set (HAM-format ground truth)."""
    ds = load_dataset(demo_root)
    rows = ds.metadata.head(3)
    folder.mkdir()
    for image_id in rows["image_id"]:
        Image.open(ds.images[image_id].path).save(folder / f"{image_id}.jpg")
    rows.to_csv(folder / "ISIC2018_Task3_Test_GroundTruth.csv", index=False)
    return folder


def test_evaluate_refuses_a_crafted_best_pt_and_scores_the_genuine_run(sweep, demo_root, tmp_path, capsys):
    external = external_set(demo_root, tmp_path / "isic2018")
    runs = [sweep / "hostile", sweep / "baseline"]
    assert evaluate_cli(["--external", str(external), "--run", *map(str, runs)]) == 1
    assert_refused(capsys.readouterr().err, sweep / "hostile" / "best.pt", sweep.parent / "code-ran")
    assert not (sweep / "hostile" / EXTERNAL_METRICS_FILE).exists()
    assert (sweep / "baseline" / EXTERNAL_METRICS_FILE).is_file()


def test_resume_refuses_a_crafted_last_pt(trained_run, demo_root, tmp_path, marker, capsys):
    run, state = trained_run
    out = Path(shutil.copytree(run, tmp_path / "run"))
    craft(out / "last.pt", load_checkpoint(state), marker)
    args = ["--config", str(CONFIGS / "baseline.yaml"), "--data-root", str(demo_root), "--out", str(out),
            "--profile", "smoke", "--resume"]
    assert train_cli(args) == 2
    assert_refused(capsys.readouterr().err, out / "last.pt", marker)
    assert pd.read_csv(out / "history.csv").equals(pd.read_csv(run / "history.csv"))  # nothing trained


def test_ray_resume_refuses_a_crafted_state_and_loads_a_genuine_one(trained_run, tmp_path, marker):
    from ray.train import Checkpoint

    from ray_jobs.trainable import STATE_FILE, resume_state

    _, state = trained_run
    genuine = tmp_path / "genuine"
    genuine.mkdir()
    shutil.copy(state, genuine / STATE_FILE)
    assert resume_state(Checkpoint.from_directory(str(genuine)))["epoch"] == load_checkpoint(state)["epoch"]
    assert resume_state(None) is None

    hostile = tmp_path / "hostile"
    hostile.mkdir()
    craft(hostile / STATE_FILE, load_checkpoint(state), marker)
    with pytest.raises(UntrustedCheckpoint) as refused:
        resume_state(Checkpoint.from_directory(str(hostile)))
    assert_refused(str(refused.value), hostile / STATE_FILE, marker)


def test_cvae_loader_refuses_a_crafted_file(tmp_path, marker):
    path = craft(tmp_path / "cvae.pt", {"model": {}, "classes": []}, marker)
    with pytest.raises(UntrustedCheckpoint) as refused:
        load_cvae(path)
    assert_refused(str(refused.value), path, marker)


def test_explain_refuses_a_crafted_best_pt(sweep, demo_root, tmp_path, capsys):
    assert explain_cli(["--run", str(sweep / "hostile"), "--data-root", str(demo_root),
                        "--out", str(tmp_path / "cams")]) == 2
    assert_refused(capsys.readouterr().err, sweep / "hostile" / "best.pt", sweep.parent / "code-ran")
    assert not (tmp_path / "cams").exists()


def test_the_report_notes_the_refusal_and_shows_the_other_arm(sweep, tmp_path):
    assert report_cli(["--sweep", str(sweep), "--out", str(tmp_path / "report"), "--gradcam-examples", "2"]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "hostile: no Grad-CAM examples: " in text
    assert_refused(text, sweep / "hostile" / "best.pt", sweep.parent / "code-ran")
    assert (tmp_path / "report" / "figures" / "gradcam_baseline.png").is_file()
    assert not (tmp_path / "report" / "figures" / "gradcam_hostile.png").exists()


def test_predict_tab_shows_the_refusal_and_serves_the_other_arm(sweep, demo_root):
    dash = Dashboard(sweep.parent)
    view = predict_view(dash)
    upload, arm, _ = view[2]
    message, result = view[3], view[4]
    assert arm.options == ["baseline", "hostile"]
    arm.value = "hostile"
    image = next(demo_root.rglob("*.jpg"))
    upload.value = {image.name: image.read_bytes()}
    assert message.visible and "Cannot load arm hostile" in message.object
    assert_refused(message.object, sweep / "hostile" / "best.pt", sweep.parent / "code-ran")
    assert len(result) == 0

    arm.value = "baseline"
    # the synthetic-data banner (the smoke sweep's data), the images row and the probabilities row
    assert not message.visible and len(result) == 3
    assert "synthetic-banner" in result[0].css_classes


def test_gallery_shows_the_refusal_and_serves_the_other_arm(sweep):
    dash = Dashboard(sweep.parent)
    refused = gallery_page(dash, "hostile", "all", "all", 1)
    assert refused.alert_type == "danger"
    assert_refused(refused.object, sweep / "hostile" / "best.pt", sweep.parent / "code-ran")
    page = gallery_page(dash, "baseline", "all", "all", 1)
    assert "test images of arm `baseline` match" in page[0].object
    assert len(page[1]) > 0  # the cards


@pytest.mark.slow
def test_predict_tab_in_a_browser_refuses_the_crafted_arm_and_predicts_with_the_other(sweep, demo_root, tmp_path):
    from tests import test_dashboard_browser as browser  # skips this test without playwright

    if not browser.CHROMIUM.is_file():
        pytest.skip(f"{browser.CHROMIUM} not installed: run scripts/install_browser")
    with browser.serving(sweep.parent, tmp_path / "serve.log") as url, \
            browser.browsing(url, tmp_path / "chromium-profile") as page:
        browser.open_tab(page, "Predict")
        page.locator(".predict-arm select").select_option("hostile")
        page.locator(".upload input[type=file]").set_input_files(next(demo_root.rglob("*.jpg")))
        refusal = page.get_by_text("Cannot load arm hostile")
        refusal.wait_for()
        assert "may not be trusted" in refusal.inner_text()
        assert page.locator(".gradcam img").count() == 0

        page.locator(".predict-arm select").select_option("baseline")
        page.locator(".gradcam img").wait_for()
        refusal.wait_for(state="hidden")
        assert page.locator(".probabilities .tabulator-row").count() == 7
    assert not (sweep.parent / "code-ran").exists()
