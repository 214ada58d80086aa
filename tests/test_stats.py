"""Dataset figures: exact counts on the real HAM10000 metadata, files written, synthetic marking."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from core.data.metadata import SYNTHETIC_DATASET, read_metadata
from core.data.stats import SYNTHETIC_MARK, dataset_stats, sample_ids, write_stats
from core.labels import CLASSES
from tests.conftest import HAM, needs_ham

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def real_metadata() -> pd.DataFrame:
    return read_metadata(HAM / "HAM10000_metadata.csv")


def tiny_frame(**columns) -> pd.DataFrame:
    """One row per class, two images for mel, with the given extra columns."""
    dx = [*CLASSES, "mel"]
    frame = pd.DataFrame(
        {
            "lesion_id": [f"L{i}" for i in range(len(dx) - 1)] + ["L4"],
            "image_id": [f"IMG_{i:03d}" for i in range(len(dx))],
            "dx": dx,
        }
    )
    for name, value in columns.items():
        frame[name] = value
    return frame


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    with Image.open(path) as image:
        image.verify()


@needs_ham
def test_real_metadata_counts(real_metadata):
    stats = dataset_stats(real_metadata)
    assert stats["rows"] == 10015
    assert stats["lesions"] == 7470
    assert stats["class_counts"] == {
        "akiec": 327, "bcc": 514, "bkl": 1099, "df": 115, "mel": 1113, "nv": 6705, "vasc": 142,
    }
    assert list(stats["class_counts"]) == list(CLASSES)
    assert sum(stats["lesions_per_class"].values()) == 7470  # each lesion has one diagnosis
    assert stats["age"]["missing"] == 57
    assert stats["age"]["n"] == 10015 - 57
    assert stats["synthetic"] is False
    assert "unknown_dx" not in stats
    assert len(stats["localization_top10"]) == 10
    assert sum(stats["sex"].values()) == 10015
    assert sum(sum(row.values()) for row in stats["dx_type_table"].values()) == 10015
    json.dumps(stats)


@needs_ham
def test_write_stats_writes_every_file(real_metadata, tmp_path):
    def load_image(image_id: str) -> Image.Image:
        return Image.open(HAM / "images_200x150" / f"{image_id}.jpg")

    stats = write_stats(real_metadata, tmp_path, load_image)

    for name in ("class_distribution.png", "metadata_overview.png", "sample_strip.png"):
        assert_png(tmp_path / name)
    assert json.loads((tmp_path / "stats.json").read_text()) == stats
    dx_type = pd.read_csv(tmp_path / "dx_type.csv", index_col="dx_type")
    assert list(dx_type.columns) == list(CLASSES)
    assert dx_type.to_numpy().sum() == 10015
    assert pd.read_csv(tmp_path / "dataset.csv", index_col="dataset").to_numpy().sum() == 10015
    assert not list(tmp_path.glob(".*.tmp"))


def test_sample_ids_are_the_first_image_of_each_class():
    frame = tiny_frame().iloc[::-1]  # order in the file must not matter
    assert sample_ids(frame) == {c: f"IMG_{i:03d}" for i, c in enumerate(CLASSES)}


def test_synthetic_frame_is_marked(tmp_path):
    frame = tiny_frame(dataset=SYNTHETIC_DATASET, age=[30.0] * 8, sex="male", localization="back")
    stats = write_stats(frame, tmp_path, lambda image_id: Image.new("RGB", (8, 6), "gray"))
    assert stats["synthetic"] is True
    assert stats["lesions_per_class"]["mel"] == 1 and stats["class_counts"]["mel"] == 2
    assert stats["dataset_table"] == {SYNTHETIC_DATASET: {c: 2 if c == "mel" else 1 for c in CLASSES}}
    assert_png(tmp_path / "sample_strip.png")


def test_synthetic_mark_is_in_every_title(monkeypatch, tmp_path):
    import core.data.stats as stats_module

    titles = []
    monkeypatch.setattr(stats_module, "_save", lambda fig, path: titles.append(_figure_title(fig)))
    write_stats(tiny_frame(dataset=SYNTHETIC_DATASET), tmp_path, lambda _: Image.new("RGB", (8, 6)))
    assert len(titles) == 3
    assert all(SYNTHETIC_MARK in t for t in titles), titles


def _figure_title(fig) -> str:
    return fig.get_suptitle() or fig.axes[0].get_title()


def test_missing_optional_columns(tmp_path):
    frame = tiny_frame()
    stats = write_stats(frame, tmp_path, load_image=None)
    assert stats["synthetic"] is False
    assert not {"age", "sex", "localization_top10", "dx_type_table", "dataset_table"} & set(stats)
    assert_png(tmp_path / "class_distribution.png")
    assert_png(tmp_path / "metadata_overview.png")
    assert not (tmp_path / "sample_strip.png").exists()
    assert not (tmp_path / "dx_type.csv").exists()


def test_blank_and_unknown_values_are_counted():
    frame = tiny_frame(age=[None, 40.0, 50.0, None, 60.0, 70.0, 80.0, 90.0], sex=["", *["female"] * 7])
    frame.loc[0, "dx"] = "melanoma?"
    stats = dataset_stats(frame)
    assert stats["unknown_dx"] == {"melanoma?": 1}
    assert stats["class_counts"]["akiec"] == 0
    assert stats["age"] == {"n": 6, "missing": 2, "mean": 65.0, "median": 65.0, "min": 40.0, "max": 90.0}
    assert stats["sex"] == {"female": 7, "(blank)": 1}
