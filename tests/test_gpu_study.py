"""benchmarks/gpu_study.py at a tiny scale on the CPU: prepare, run (smoke profile), report."""
from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmarks import gpu_study


@pytest.fixture(scope="module")
def carry(demo_root, tmp_path_factory) -> Path:
    """The demo data laid out as ../shared/ham10000 is (metadata + images_200x150/), prepared to carry."""
    ham = tmp_path_factory.mktemp("ham")
    shutil.copy(demo_root / "HAM10000_metadata.csv", ham)
    (ham / "images_200x150").mkdir()
    for image in demo_root.glob("HAM10000_images_part_*/*.jpg"):
        shutil.copy(image, ham / "images_200x150")
    out = tmp_path_factory.mktemp("carry")
    gpu_study.main(["prepare", "--ham", str(ham), "--carry", str(out)])
    return out


def test_prepare_writes_the_lite_weights_in_timms_naming_as_fp16(carry):
    for backbone in ("tf_efficientnet_lite0", "tf_efficientnet_lite2"):
        state = torch.load(gpu_study.weights_file(carry, backbone), weights_only=True)
        assert state["conv_stem.weight"].dtype == torch.float16 and state["classifier.weight"].shape[0] == 1000
    assert len(list((carry / "ham10000" / "images_200x150").glob("*.jpg"))) > 200


@pytest.mark.slow  # trains the arms in parallel processes
def test_run_trains_the_arms_side_by_side_and_the_report_reads_them(carry, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    gpu_study.main(["run", "--carry", str(carry), "--out", str(out), "--work", str(work), "--profile", "smoke",
                    "--arms", "baseline", "b2_260_acc_select", "--at-once", "2"])
    with tarfile.open(out / "study.tar.gz") as archive:
        names = archive.getnames()
    assert not any(name.endswith(".pt") for name in names)  # the weights stay on the GPU machine
    assert {"gpu_study/summary.csv", "gpu_study/sweep.json", "gpu_study/baseline/metrics.json",
            "gpu_study/b2_260_acc_select/predictions_test.csv"} <= set(names)
    sweep = work / "gpu_study"
    assert list(pd.read_csv(sweep / "summary.csv")["status"]) == ["finished", "finished"]
    for arm, backbone, side in (("baseline", "tf_efficientnet_lite0", 32), ("b2_260_acc_select",
                                                                           "tf_efficientnet_lite2", 32)):
        cfg = json.loads((sweep / arm / "config.json").read_text())
        assert (cfg["backbone"], cfg["augment"], cfg["image_size"]) == (backbone, "device", side)
        assert cfg["pretrained"] == str(gpu_study.weights_file(carry, backbone))
        assert "augment=device" in (sweep / f"{arm}.log").read_text()
    # both arms trained on the one split the driver made
    splits = [pd.read_csv(sweep / arm / "splits.csv") for arm in ("baseline", "b2_260_acc_select")]
    pd.testing.assert_frame_equal(splits[0], splits[1])
    record = json.loads((sweep / "sweep.json").read_text())
    assert record["status"] == "finished" and record["label"].startswith("SYNTHETIC")

    gpu_study.main(["report", "--archive", str(out / "study.tar.gz"), "--out", str(tmp_path / "report")])
    text = (tmp_path / "report" / "report" / "report.md").read_text()
    assert "SYNTHETIC" in text and "| baseline | finished |" in text and "EfficientNet-Lite0/Lite2" in text


def test_arms_still_running_at_the_budget_are_stopped_and_reported(carry, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    gpu_study.main(["run", "--carry", str(carry), "--out", str(out), "--work", str(work), "--profile", "smoke",
                    "--arms", "baseline", "sampler", "--at-once", "1", "--budget-s", "2"])
    record = json.loads((work / "gpu_study" / "sweep.json").read_text())
    assert record["status"] == "failed"
    assert record["arm_runs"]["baseline"] == {**record["arm_runs"]["baseline"], "status": "failed",
                                              "stopped_at_budget": True}
    assert record["arm_runs"]["sampler"]["status"] == "pending"
    assert (out / "study.tar.gz").is_file()
