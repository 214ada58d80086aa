"""The dashboard's caches follow the files: a rewritten best.pt, metrics.json or metadata table is read again."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from core import io
from core.checkpoints import load_checkpoint
from core.data.metadata import find_metadata
from dashboards.cams import cam_images, trained_model
from dashboards.datasets import dataset
from dashboards.results import files_signature

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def run(trained_run, tmp_path):
    return shutil.copytree(trained_run[0], tmp_path / "smoke" / "baseline")


def rewrite_best(run, change) -> None:
    """Retrain, as far as the dashboard can tell: best.pt rewritten in place (atomically, as training does)."""
    best = load_checkpoint(run / "best.pt")
    best["model"] = {k: change(v) if v.is_floating_point() else v for k, v in best["model"].items()}
    io.atomic_write(run / "best.pt", lambda tmp: torch.save(best, tmp))


def first_weight(trained) -> torch.Tensor:
    return next(iter(trained.model.state_dict().values())).clone()


def test_a_rewritten_best_pt_is_loaded_again(run):
    before = trained_model(run)
    assert trained_model(run) is before  # cached while nothing changes
    rewrite_best(run, lambda v: v + 1)
    after = trained_model(run)
    assert after is not before
    assert torch.allclose(first_weight(after), first_weight(before) + 1)


def test_a_rewritten_metrics_json_is_read_again(run):
    before = trained_model(run).operating_points
    metrics = json.loads((run / "metrics.json").read_text())
    for point in metrics["mel_operating_points"]["chosen_on_val"]:
        point["threshold"] = 0.123
    io.write_json(run / "metrics.json", metrics)
    after = trained_model(run).operating_points
    assert [p["threshold"] for p in after] == [0.123] * len(before) != [p["threshold"] for p in before]


def test_grad_cam_overlays_follow_a_rewritten_best_pt(run, demo_root):
    image_id = sorted(dataset(demo_root).images)[0]
    before = cam_images(run, demo_root, image_id)
    assert cam_images(run, demo_root, image_id) is before
    rewrite_best(run, lambda v: -v)
    assert cam_images(run, demo_root, image_id) is not before


def test_a_rewritten_metadata_table_is_read_again(demo_root, tmp_path):
    root = shutil.copytree(demo_root, tmp_path / "data")
    before = dataset(root)
    assert dataset(root) is before
    metadata = find_metadata(root)
    io.write_text(metadata, "".join(metadata.read_text().splitlines(keepends=True)[:-1]))  # one row fewer
    assert len(dataset(root).metadata) == len(before.metadata) - 1


def test_the_sweep_signature_changes_with_a_rewritten_best_pt(run):
    before = files_signature(run.parent)
    rewrite_best(run, lambda v: v * 2)
    assert files_signature(run.parent) != before
