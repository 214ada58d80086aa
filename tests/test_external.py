"""External test set (ISIC 2018 Task 3): a local imitation of its files, scored with a smoke-trained run.

The imitation holds the run's own val and test images (demo JPEGs) in a zip laid out like
ISIC2018_Task3_Test_Images.zip, with the ground truth in both formats, so the external
path can be checked against the run's internal predictions.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from core.data.dataset import load_dataset
from core.data.images import read_bytes
from core.data.isic2018 import (
    HAM_FORMAT,
    ONE_HOT_CLASSES,
    ONE_HOT_FORMAT,
    find_ground_truth,
    load_external,
    read_ground_truth,
)
from core.data.metadata import SYNTHETIC_DATASET, DatasetError
from core.evaluate import main
from core.evaluation.bootstrap import confidence_intervals
from core.evaluation.external import evaluate_external
from core.evaluation.metrics import classification_metrics, interval_thresholds
from core.inference import load_run
from core.results import EXTERNAL_METRICS as METRICS_FILE
from core.results import EXTERNAL_PREDICTIONS as PREDICTIONS_FILE
from core.results import read_predictions
from dashboards.report import main as report
from tests.sweep_fixture import build_smoke_sweep
from tests.test_report import table_after

pytestmark = pytest.mark.timeout(120)

GROUND_TRUTH = "ISIC2018_Task3_Test_GroundTruth.csv"
ZIP_FOLDER = "ISIC2018_Task3_Test_Images"


@pytest.fixture(scope="module")
def sweep(demo_root, tmp_path_factory) -> Path:
    """A sweep of one smoke-profile arm (test_efficientnet at 32 px) trained on the demo data."""
    return build_smoke_sweep(tmp_path_factory.mktemp("results") / "smoke", demo_root, arms=["baseline"])


@pytest.fixture(scope="module")
def external(sweep, demo_root, tmp_path_factory) -> Path:
    """The run's val and test images as an ISIC 2018 Task 3 test set: images zip + HAM-format ground truth;
    onehot.csv beside it holds the same ground truth in the challenge's one-hot format."""
    splits = pd.read_csv(sweep / "baseline" / "splits.csv", dtype=str)
    ids = list(splits.loc[splits["split"].isin(["test", "val"]), "image_id"])
    ds = load_dataset(demo_root)
    root = tmp_path_factory.mktemp("isic2018")
    with zipfile.ZipFile(root / f"{ZIP_FOLDER}.zip", "w") as archive:
        for image_id in ids:
            archive.writestr(f"{ZIP_FOLDER}/{image_id}.jpg", read_bytes(ds.images[image_id]))
    truth = ds.metadata.set_index("image_id").loc[ids].reset_index()
    truth[["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset"]].to_csv(
        root / GROUND_TRUTH, index=False)
    one_hot = pd.DataFrame({"image": ids})
    for name in ONE_HOT_CLASSES:
        one_hot[name] = (truth["dx"] == name.lower()).astype(float).to_numpy()
    one_hot.to_csv(root / "onehot.csv", index=False)
    return root


def copy_run(sweep: Path, tmp_path: Path) -> Path:
    """A private copy of the trained arm, so each test writes its own external files."""
    return Path(shutil.copytree(sweep / "baseline", tmp_path / "baseline"))


@pytest.fixture(scope="module")
def evaluated(sweep, external, tmp_path_factory) -> dict[str, Path]:
    """The arm evaluated on the imitation with each ground-truth format: {format: run folder}."""
    runs = {}
    for fmt, labels in ((HAM_FORMAT, None), (ONE_HOT_FORMAT, external / "onehot.csv")):
        run = copy_run(sweep, tmp_path_factory.mktemp(fmt))
        evaluate_external(run, load_run(run), load_external(external, labels))
        runs[fmt] = run
    return runs


def metrics_of(run: Path) -> dict:
    return json.loads((run / METRICS_FILE).read_text())


@pytest.mark.parametrize("fmt", [HAM_FORMAT, ONE_HOT_FORMAT])
def test_predictions_are_the_ground_truth_images_and_the_metric_recomputes(evaluated, external, fmt):
    run = evaluated[fmt]
    y, probs, frame = read_predictions(run / PREDICTIONS_FILE)
    truth = pd.read_csv(external / GROUND_TRUTH, dtype=str)
    assert list(frame["image_id"]) == list(truth["image_id"])
    assert list(frame["dx"]) == list(truth["dx"])

    metrics = metrics_of(run)
    balanced = metrics["balanced_multiclass_accuracy"]
    assert balanced["estimate"] == pytest.approx(balanced_accuracy_score(y, probs.argmax(axis=1)), abs=1e-12)
    assert balanced["lo"] <= balanced["estimate"] <= balanced["hi"]
    assert "ISIC 2018 Task 3" in balanced["definition"]
    assert json.dumps(metrics["metrics"], sort_keys=True) == json.dumps(classification_metrics(y, probs),
                                                                        sort_keys=True)
    assert metrics["external_data"]["images"] == len(truth)
    assert metrics["external_data"]["ground_truth_format"] == fmt


def test_both_ground_truth_formats_give_identical_predictions(evaluated):
    ham = pd.read_csv(evaluated[HAM_FORMAT] / PREDICTIONS_FILE)
    one_hot = pd.read_csv(evaluated[ONE_HOT_FORMAT] / PREDICTIONS_FILE)
    pd.testing.assert_frame_equal(ham, one_hot)


def test_bootstrap_resamples_lesions_when_the_ground_truth_has_them(evaluated, external):
    truth = pd.read_csv(external / GROUND_TRUTH, dtype=str)
    assert truth["lesion_id"].nunique() < len(truth)  # the imitation has lesions with several images
    y, probs, _ = read_predictions(evaluated[HAM_FORMAT] / PREDICTIONS_FILE)
    ham = metrics_of(evaluated[HAM_FORMAT])
    replicates = ham["intervals"]["replicates"]
    assert ham["intervals"]["lesions"] == ham["external_data"]["lesions"] == truth["lesion_id"].nunique()
    thresholds = interval_thresholds(ham["mel_operating_points"])
    expected = confidence_intervals(y, probs, truth["lesion_id"], thresholds, replicates, seed=0)
    assert ham["intervals"]["figures"] == expected["figures"]

    one_hot = metrics_of(evaluated[ONE_HOT_FORMAT])
    assert one_hot["intervals"]["lesions"] == one_hot["external_data"]["lesions"] == len(truth)
    assert "each image counts as its own lesion" in one_hot["external_data"]["lesion_ids"]
    assert any("each image counts as its own lesion" in note for note in one_hot["notes"])
    assert not any("own lesion" in note for note in ham["notes"])


def test_subgroups_recompute_from_the_predictions_where_the_ground_truth_has_metadata(evaluated, external):
    truth = pd.read_csv(external / GROUND_TRUTH, dtype=str)
    y, probs, _ = read_predictions(evaluated[HAM_FORMAT] / PREDICTIONS_FILE)
    rows = metrics_of(evaluated[HAM_FORMAT])["subgroups"]["rows"]
    by_sex = {row["group"]: row for row in rows if row["attribute"] == "sex"}
    assert set(by_sex) == set(truth["sex"])
    for sex, row in by_sex.items():
        mine = (truth["sex"] == sex).to_numpy()
        assert row["n_images"] == mine.sum()
        assert row["accuracy"] == pytest.approx((probs[mine].argmax(axis=1) == y[mine]).mean())
    assert metrics_of(evaluated[ONE_HOT_FORMAT])["subgroups"]["rows"] == []  # no metadata columns


def test_preprocessing_is_that_of_internal_evaluation(evaluated):
    """The run's own val and test images, through the external path, give its internal probabilities."""
    run = evaluated[HAM_FORMAT]
    external = pd.read_csv(run / PREDICTIONS_FILE).set_index("image_id")
    for split in ("test", "val"):
        internal = pd.read_csv(run / f"predictions_{split}.csv").set_index("image_id")
        np.testing.assert_allclose(external.loc[internal.index, internal.columns[1:]].to_numpy(),
                                   internal.iloc[:, 1:].to_numpy(), atol=1e-5, rtol=0)


def test_internal_figures_thresholds_and_synthetic_flags_are_reported(evaluated):
    run = evaluated[HAM_FORMAT]
    metrics, internal = metrics_of(run), json.loads((run / "metrics.json").read_text())
    assert metrics["internal_test"] == internal["test"]
    assert metrics["internal_test_intervals"] == internal["test_intervals"]
    chosen_on_val = [p for p in internal["mel_operating_points"]["chosen_on_val"] if p["threshold"] is not None]
    assert [p["threshold"] for p in metrics["mel_operating_points"]] == [p["threshold"] for p in chosen_on_val]
    assert metrics["synthetic_training_data"] is True
    assert set(pd.read_csv(metrics["external_data"]["ground_truth"])["dataset"]) == {SYNTHETIC_DATASET}
    assert metrics["external_data"]["synthetic"] is True
    assert any("SYNTHETIC demo data: nothing here is an ISIC 2018 result" in n for n in metrics["notes"])
    assert metrics_of(evaluated[ONE_HOT_FORMAT])["external_data"]["synthetic"] is False  # no dataset column


# --------------------------------------------------------------------------- bad input


def test_unknown_dx_is_named_by_file_and_line(external, tmp_path):
    truth = pd.read_csv(external / GROUND_TRUTH, dtype=str)
    truth.loc[3, "dx"] = "melanoma"
    truth.to_csv(tmp_path / GROUND_TRUTH, index=False)
    with pytest.raises(DatasetError, match=rf"{tmp_path / GROUND_TRUTH}: 1 row\(s\) with unknown dx.*line 5 "
                                           rf"\('{truth.loc[3, 'image_id']}', dx 'melanoma'\).*fix"):
        read_ground_truth(tmp_path / GROUND_TRUTH)


def test_one_hot_row_with_two_ones_is_named(external, tmp_path):
    one_hot = pd.read_csv(external / "onehot.csv", dtype=str)
    one_hot.loc[0, ["MEL", "NV"]] = "1.0"
    one_hot.to_csv(tmp_path / "onehot.csv", index=False)
    image = one_hot.loc[0, "image"]
    with pytest.raises(DatasetError, match=rf"onehot.csv: 1 row\(s\) are not one-hot.*exactly one 1.*line 2 "
                                           rf"\({image}: MEL=1.0, NV=1.0"):
        read_ground_truth(tmp_path / "onehot.csv")


def test_missing_image_is_named_with_the_fix(external, tmp_path):
    truth = pd.read_csv(external / GROUND_TRUTH, dtype=str)
    extra = truth.iloc[[0]].assign(image_id="ISIC_0099999", lesion_id="HAM_0099999")
    pd.concat([truth, extra]).to_csv(tmp_path / "truth.csv", index=False)
    with pytest.raises(DatasetError, match=rf"1 of the {len(truth) + 1} images truth.csv lists are not under "
                                           rf"{external} \(e.g. ISIC_0099999\): unpack ISIC2018_Task3_Test_Images"):
        load_external(external, tmp_path / "truth.csv")


def test_no_ground_truth_file_or_an_unknown_table_is_explained(tmp_path):
    with pytest.raises(DatasetError, match=rf"no ISIC2018_Task3_Test_GroundTruth.csv or .*tab under {tmp_path}: "
                                           r"python -m core.data download"):
        find_ground_truth(tmp_path)
    (tmp_path / "labels.csv").write_text("name,label\nISIC_0034524,mel\n")
    with pytest.raises(DatasetError, match=r"labels.csv is in neither ground-truth format \(found columns: name, "
                                           r"label\).*lesion_id, image_id, dx.*image, MEL, NV"):
        read_ground_truth(tmp_path / "labels.csv")


def test_ground_truth_is_found_anywhere_under_the_folder_csv_before_tab(external, tmp_path):
    nested = tmp_path / "dataverse" / "isic"
    nested.mkdir(parents=True)
    tab = nested / "ISIC2018_Task3_Test_GroundTruth.tab"
    pd.read_csv(external / GROUND_TRUTH, dtype=str).to_csv(tab, sep="\t", index=False)  # an ingested table
    assert find_ground_truth(tmp_path) == tab
    assert read_ground_truth(tab).format == HAM_FORMAT
    (nested / GROUND_TRUTH).write_bytes((external / GROUND_TRUTH).read_bytes())
    assert find_ground_truth(tmp_path) == nested / GROUND_TRUTH  # the original upload wins beside the .tab


# --------------------------------------------------------------------------- command line


def test_cli_sweep_end_to_end(sweep, external, tmp_path, capsys):
    copy = Path(shutil.copytree(sweep, tmp_path / "smoke"))
    shutil.copytree(sweep / "baseline", copy / "baseline" / "seeds" / "seed_1")  # as run_all --seeds 2 leaves it
    assert main(["--external", str(external), "--sweep", str(copy), "--batch-size", "7"]) == 0
    out = capsys.readouterr().out
    assert f"{len(pd.read_csv(external / GROUND_TRUTH))} images from {external / GROUND_TRUTH} ({HAM_FORMAT})" in out
    metrics = metrics_of(copy / "baseline")
    internal = metrics["internal_test"]["balanced_accuracy"]
    balanced = metrics["balanced_multiclass_accuracy"]
    row = next(line for line in out.splitlines() if line.strip().startswith("balanced accuracy"))
    assert f"{internal:.4f}" in row
    assert f"{balanced['estimate']:.4f} [{balanced['lo']:.4f}, {balanced['hi']:.4f}]" in row
    assert "[trained on SYNTHETIC demo data]" in out
    assert (copy / "baseline" / PREDICTIONS_FILE).is_file()
    assert metrics_of(copy / "baseline" / "seeds" / "seed_1")["balanced_multiclass_accuracy"] == balanced
    # The report shows it as Table 10, beside the internal figure
    assert report(["--sweep", str(copy), "--out", str(tmp_path / "report"), "--gradcam-examples", "0"]) == 0
    (row,) = table_after((tmp_path / "report" / "report.md").read_text(), "## Table 10")
    assert row[:4] == ["baseline", str(len(pd.read_csv(external / GROUND_TRUTH))), f"{internal:.3f}",
                       f"{balanced['estimate']:.3f} [{balanced['lo']:.3f}, {balanced['hi']:.3f}]"]


def test_cli_run_with_one_hot_labels_and_tta(sweep, external, tmp_path):
    run = copy_run(sweep, tmp_path)
    assert main(["--external", str(external), "--run", str(run), "--labels", str(external / "onehot.csv"),
                 "--tta"]) == 0
    metrics = metrics_of(run)
    y, plain, _ = read_predictions(run / PREDICTIONS_FILE)
    _, tta, _ = read_predictions(run / "predictions_external_tta.csv")
    assert not np.allclose(plain, tta)
    assert metrics["tta"]["balanced_multiclass_accuracy"]["estimate"] == pytest.approx(
        balanced_accuracy_score(y, tta.argmax(axis=1)))
    assert metrics["balanced_multiclass_accuracy"]["estimate"] == pytest.approx(
        balanced_accuracy_score(y, plain.argmax(axis=1)))  # the plain figures stay beside


def test_cli_bad_input_exits_2_naming_the_problem(sweep, external, tmp_path, capsys):
    assert main(["--external", str(tmp_path), "--run", str(sweep / "baseline")]) == 2
    assert "error: no ISIC2018_Task3_Test_GroundTruth.csv" in capsys.readouterr().err
    assert main(["--external", str(external), "--run", str(tmp_path)]) == 2
    assert f"error: no best.pt in {tmp_path}" in capsys.readouterr().err
    assert main(["--external", str(external), "--sweep", str(tmp_path)]) == 2
    assert f"error: no arm folder with best.pt in {tmp_path}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["--external", str(external), "--run", str(sweep / "baseline"), "--batch-size", "0"])
    assert exit_.value.code == 2 and "--batch-size must be at least 1" in capsys.readouterr().err
    assert not (sweep / "baseline" / METRICS_FILE).exists()  # nothing written


def test_cli_a_failing_run_gives_status_1_and_the_others_still_run(sweep, external, tmp_path, capsys):
    good, bad = copy_run(sweep, tmp_path / "good"), copy_run(sweep, tmp_path / "bad")
    (bad / "metrics.json").unlink()
    assert main(["--external", str(external), "--run", str(bad), str(good)]) == 1
    err = capsys.readouterr().err
    assert f"error: {bad}: {bad / 'metrics.json'} not found" in err and "1 run(s) failed" in err
    assert (good / METRICS_FILE).is_file() and not (bad / METRICS_FILE).exists()
