"""The data layer: real layouts load, the split holds its properties, bad input is named."""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.data.__main__ import main as data_cli
from core.data.cache import DecodedImages, build_cache
from core.data.check import check_dataset, usable_metadata
from core.data.dataset import load_dataset
from core.data.demo import make_demo_dataset
from core.data.images import ImageError, ImageRef, load_rgb
from core.data.lesions import LesionDataset
from core.data.metadata import DatasetError, read_metadata
from core.data.split import SPLITS, attach_split, lesion_split
from core.data.transforms import eval_transform, train_transform
from core.labels import CLASSES
from tests.conftest import HAM, needs_ham

ORIGINALS = HAM / "originals"


def _copy_originals(dest: Path, layout: str) -> Path:
    """Lay the 70 real originals out as users have them: Kaggle, flat folder or Dataverse zips."""
    dest.mkdir(parents=True, exist_ok=True)
    images = sorted(ORIGINALS.glob("*.jpg"))
    meta = pd.read_csv(ORIGINALS / "metadata.csv")
    if layout == "kaggle":
        meta.to_csv(dest / "HAM10000_metadata.csv", index=False)
        for i, image in enumerate(images):
            part = dest / f"HAM10000_images_part_{i % 2 + 1}"
            part.mkdir(exist_ok=True)
            shutil.copy(image, part)
    elif layout == "flat":
        meta.to_csv(dest / "HAM10000_metadata.csv", index=False)
        (dest / "images").mkdir()
        for image in images:
            shutil.copy(image, dest / "images")
    elif layout == "dataverse_zip":
        meta.to_csv(dest / "HAM10000_metadata.tab", sep="\t", index=False)
        for part in (1, 2):
            with zipfile.ZipFile(dest / f"HAM10000_images_part_{part}.zip", "w") as z:
                for image in images[part - 1::2]:
                    z.write(image, image.name)
    return dest


@needs_ham
@pytest.mark.parametrize("layout", ["kaggle", "flat", "dataverse_zip"])
def test_real_originals_load_in_every_layout(tmp_path, layout):
    root = _copy_originals(tmp_path / layout, layout)
    ds = load_dataset(root)
    report = check_dataset(ds)
    assert report.ok, [str(p) for p in report.problems]
    assert report.summary["rows"] == 70
    assert report.summary["classes"] == {c: 10 for c in CLASSES}
    first = ds.metadata["image_id"].iloc[0]
    assert load_rgb(ds.images[first]).size == (600, 450)
    assert not ds.synthetic


@pytest.fixture(scope="module")
def real_metadata() -> pd.DataFrame:
    return read_metadata(HAM / "HAM10000_metadata.csv")


@pytest.mark.slow  # the full HAM10000 metadata
@needs_ham
def test_split_on_real_metadata_is_lesion_wise_stratified_and_sized(real_metadata, tmp_path):
    out = tmp_path / "splits.csv"
    assert data_cli(["split", "--metadata", str(HAM / "HAM10000_metadata.csv"), "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["image_id", "lesion_id", "dx", "split"] and len(frame) == 10015
    sizes = frame["split"].value_counts()
    for split, expected in {"train": 8012, "val": 1000, "test": 1003}.items():
        assert abs(sizes[split] - expected) <= 0.01 * expected, sizes.to_dict()
    assert (frame.groupby("lesion_id")["split"].nunique() == 1).all()
    whole = frame["dx"].value_counts(normalize=True)
    for split in SPLITS:
        mix = frame.loc[frame["split"] == split, "dx"].value_counts(normalize=True)
        assert set(mix.index) == set(CLASSES)
        assert ((mix - whole).abs() * 100 < 2).all(), (split, (mix - whole).to_dict())
    shuffled = lesion_split(real_metadata.sample(frac=1, random_state=3), seed=0)
    pd.testing.assert_frame_equal(frame, shuffled, check_dtype=False)


def test_split_depends_on_the_seed(demo_root):
    meta = load_dataset(demo_root).metadata
    assert not lesion_split(meta, seed=0)["split"].equals(lesion_split(meta, seed=1)["split"])


def test_demo_is_deterministic_passes_check_and_is_labelled_synthetic(tmp_path, demo_root):
    one, two = (make_demo_dataset(tmp_path / name, n=50, seed=3) for name in ("one", "two"))
    pd.testing.assert_frame_equal(one, two)
    first = one["image_id"].iloc[5]
    same = [np.asarray(Image.open(next((tmp_path / r).rglob(f"{first}.jpg")))) for r in ("one", "two")]
    assert np.array_equal(*same)
    other = make_demo_dataset(tmp_path / "other", n=50, seed=4)
    assert not other[["dx_type", "age", "sex"]].equals(one[["dx_type", "age", "sex"]])

    again = pd.read_csv(demo_root / "HAM10000_metadata.csv")
    ds = load_dataset(demo_root)
    report = check_dataset(ds)
    assert report.ok, [str(p) for p in report.problems]
    assert ds.synthetic and report.summary["synthetic"]
    assert (again["dataset"] == "synthetic_demo").all()
    assert "SYNTHETIC" in (demo_root / "README_SYNTHETIC.txt").read_text()
    counts = again["dx"].value_counts()
    assert counts.idxmax() == "nv" and counts.min() >= 20
    assert again["lesion_id"].nunique() < len(again)  # several images per lesion
    assert Image.open(next(demo_root.rglob(f"{first}.jpg"))).size == (600, 450)
    mask = np.asarray(Image.open(demo_root / "masks" / f"{first}_segmentation.png"))
    assert mask.shape == (450, 600) and 0.02 < (mask > 0).mean() < 0.8
    splits = lesion_split(again, seed=0)
    assert (splits.groupby("split")["dx"].nunique() == len(CLASSES)).all()


# --- bad input: each names the file or row, and nothing else is lost ---------------------


def _small_dataset(root: Path, n: int = 6) -> Path:
    """n real-looking rows with valid tiny JPEGs, built in place."""
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        image_id = f"ISIC_{i:07d}"
        Image.new("RGB", (60, 45), (120 + i, 80, 60)).save(root / "images" / f"{image_id}.jpg")
        rows.append({"lesion_id": f"HAM_{i:07d}", "image_id": image_id, "dx": CLASSES[i % 7], "age": 50.0})
    pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)
    return root


def _errors_for(root: Path) -> list[str]:
    return [str(p) for p in check_dataset(load_dataset(root)).errors]


@pytest.mark.parametrize("damage, expected", [
    ("corrupt", "not a readable image"),
    ("truncated", "not a readable image"),
    ("zero_bytes", "empty (0 bytes)"),
    ("bomb", "decompression-bomb"),
    ("missing", "no image file"),
])
def test_bad_image_is_named_and_only_it_is_excluded(tmp_path, damage, expected):
    root = _small_dataset(tmp_path)
    victim = root / "images" / "ISIC_0000002.jpg"
    if damage == "corrupt":
        victim.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)
    elif damage == "truncated":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    elif damage == "zero_bytes":
        victim.write_bytes(b"")
    elif damage == "bomb":
        # A valid 20000x20000 PNG header is enough: the guard fires before decoding.
        Image.new("1", (20000, 20000)).save(victim.with_suffix(".png"))
        victim.unlink()
    else:
        victim.unlink()
    errors = _errors_for(root)
    assert len(errors) == 1 and "ISIC_0000002" in errors[0] and expected in errors[0], errors

    ds = load_dataset(root)
    report = check_dataset(ds)
    with pytest.raises(DatasetError, match="--skip-bad-images"):
        usable_metadata(ds, report, skip_bad_images=False)
    kept = usable_metadata(ds, report, skip_bad_images=True)
    assert list(kept["image_id"]) == [f"ISIC_{i:07d}" for i in (0, 1, 3, 4, 5)]
    assert list(report.excluded()["image_id"]) == ["ISIC_0000002"]


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "I;16", "CMYK"])
def test_odd_colour_modes_become_rgb(tmp_path, mode):
    path = tmp_path / ("x.png" if mode != "CMYK" else "x.jpg")
    Image.new(mode, (30, 20)).save(path)
    img = load_rgb(ImageRef(path))
    assert img.mode == "RGB" and img.size == (30, 20)


def test_rgba_keeps_the_colour_under_the_alpha(tmp_path):
    Image.new("RGBA", (4, 4), (200, 100, 50, 0)).save(tmp_path / "a.png")
    assert load_rgb(ImageRef(tmp_path / "a.png")).getpixel((0, 0)) == (200, 100, 50)


def test_metadata_row_problems_name_the_line(tmp_path):
    root = _small_dataset(tmp_path)
    meta = pd.read_csv(root / "HAM10000_metadata.csv")
    meta.loc[1, "dx"] = "melanoma"
    meta = pd.concat([meta, meta.iloc[[3]]], ignore_index=True)
    meta.loc[0, "age"] = None
    meta.to_csv(root / "HAM10000_metadata.csv", index=False)
    report = check_dataset(load_dataset(root))
    errors = [str(p) for p in report.errors]
    assert any("line 3" in e and "unknown dx 'melanoma'" in e and "akiec" in e for e in errors), errors
    assert any("lines 5, 8" in e and "ISIC_0000003 appears 2 times" in e for e in errors), errors
    warnings = [str(p) for p in report.problems if p.severity == "warning"]
    assert any("line" in w and "blank age" in w for w in warnings), warnings


@pytest.mark.parametrize("content, match", [
    ("", "is empty"),
    ("lesion_id,image_id,dx\n", "no rows"),
    ("lesion_id,image_id,age\nHAM_1,ISIC_1,40\n", "lacks the required column.*dx"),
    ("just some notes\nnothing tabular here\n", "lacks the required column"),
])
def test_broken_metadata_tables_fail_clearly(tmp_path, content, match):
    path = tmp_path / "HAM10000_metadata.csv"
    path.write_text(content)
    with pytest.raises(DatasetError, match=match) as e:
        read_metadata(path)
    assert str(path) in str(e.value)


def test_binary_file_passed_as_metadata_fails_clearly(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.new("RGB", (10, 10)).save(path)
    with pytest.raises(DatasetError, match="not a text table"):
        read_metadata(path)


def test_tab_separated_metadata_reads_like_the_csv(tmp_path):
    root = _small_dataset(tmp_path)
    meta = pd.read_csv(root / "HAM10000_metadata.csv")
    (root / "HAM10000_metadata.csv").unlink()
    meta.to_csv(root / "HAM10000_metadata.tab", sep="\t", index=False)
    assert list(load_dataset(root).metadata["image_id"]) == list(meta["image_id"])


def test_no_or_ambiguous_metadata_is_explained(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no metadata table"):
        load_dataset(tmp_path / "empty")
    root = _small_dataset(tmp_path / "two")
    shutil.copy(root / "HAM10000_metadata.csv", root / "images" / "HAM10000_metadata.csv")
    with pytest.raises(DatasetError, match="--metadata"):
        load_dataset(root)


def test_split_refuses_classes_too_small_to_split():
    meta = pd.DataFrame({"lesion_id": [f"L{i}" for i in range(70)], "image_id": [f"I{i}" for i in range(70)],
                         "dx": [CLASSES[i % 7] for i in range(70)]})
    meta.loc[meta["dx"] == "df", "dx"] = "nv"
    meta.loc[0, "dx"] = "df"
    with pytest.raises(DatasetError, match="no images of df"):
        lesion_split(meta)


def test_attach_split_refuses_a_split_from_another_dataset(demo_root):
    meta = load_dataset(demo_root).metadata
    splits = lesion_split(meta)
    assert len(attach_split(meta, splits)) == len(meta)
    with pytest.raises(DatasetError, match="not in the split file"):
        attach_split(meta, splits.iloc[10:])


# --- transforms, cache, dataset -----------------------------------------------------------


def test_cache_matches_direct_decoding_and_is_reused(demo_root):
    ds = load_dataset(demo_root)
    ids = list(ds.metadata["image_id"][:12])
    cache = build_cache(ds, ids, side=48)
    decoded = DecodedImages([ds.images[i] for i in ids], side=48)
    for i in (0, 7, 11):
        assert cache[i].shape == (48, 48, 3) and cache[i].dtype == np.uint8
        assert np.array_equal(cache[i], decoded[i])
    mtime = cache.path.stat().st_mtime_ns
    assert build_cache(ds, ids, side=48).path.stat().st_mtime_ns == mtime
    assert build_cache(ds, ids[:5], side=48).path != cache.path
    assert not list(cache.path.parent.glob("*.tmp*"))


def test_cache_is_reopened_not_copied_by_workers(demo_root):
    import pickle

    ds = load_dataset(demo_root)
    cache = build_cache(ds, list(ds.metadata["image_id"][:4]), side=32)
    _ = cache[0]
    assert len(pickle.dumps(cache)) < 4 * 32 * 32 * 3


def test_transforms_shapes_and_augmentation():
    image = torch_image = __import__("torch").randint(0, 256, (3, 40, 40), dtype=__import__("torch").uint8)
    out = eval_transform(32)(torch_image)
    assert out.shape == (3, 32, 32) and out.dtype.is_floating_point
    assert abs(float(out.mean())) < 3
    aug = train_transform(32, random_resized_crop=True)
    assert not all(bool((aug(image) == aug(image)).all()) for _ in range(3))


def test_lesion_dataset_yields_normalized_tensor_label_and_index(demo_root):
    ds = load_dataset(demo_root)
    ids = list(ds.metadata["image_id"][:3])
    items = LesionDataset(DecodedImages([ds.images[i] for i in ids], 40), [4, 5, 6], eval_transform(32))
    x, y, index = items[2]
    assert x.shape == (3, 32, 32) and y == 6 and index == 2
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        LesionDataset(items.images, [1, 2], eval_transform(32))


# --- the command line -----------------------------------------------------------------------


def test_cli_check_exit_status_and_split_file(tmp_path, capsys):
    root = _small_dataset(tmp_path / "data", n=7)
    assert data_cli(["check", "--data-root", str(root)]) == 0
    (root / "images" / "ISIC_0000004.jpg").write_bytes(b"")
    assert data_cli(["check", "--data-root", str(root)]) == 1
    assert "ISIC_0000004" in capsys.readouterr().out
    assert data_cli(["check", "--data-root", str(tmp_path / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_image_error_is_an_error_type_with_the_path(tmp_path):
    with pytest.raises(ImageError, match=str(tmp_path / "nope.jpg")):
        load_rgb(ImageRef(tmp_path / "nope.jpg"))
