"""The leak audit: near-duplicates under different lesion_ids are found from the pixels and
kept in one split; on the real thumbnails the detector runs in bounded time and memory."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.data.__main__ import main as data_cli
from core.data.check import check_dataset
from core.data.dataset import load_dataset
from core.data.metadata import DatasetError
from core.data.pairs import PAIR_COLUMNS, crossing_pairs, lesion_groups, pairs_in, read_pairs
from core.data.split import duplicates_report, lesion_split
from core.duplicates import DEFAULT_MIN_INLIERS, candidate_pairs, neighbour_pairs
from tests.conftest import HAM, needs_ham

# Each planted copy: (its source's class, how it was made). Saved under a new lesion_id.
EDITS = {
    "reencoded": ("akiec", lambda im: im, 75),  # the same pixels, JPEG quality 75
    "shifted": ("df", lambda im: im.crop((15, 10, im.width, im.height)), 92),  # 15 px left, 10 px up
    "resized": ("nv", lambda im: im.resize((400, 300), Image.BICUBIC), 92),  # two thirds of the size
}


def _plant(root: Path) -> list[tuple[str, str]]:
    """Add one edited copy of an image per EDITS entry, each under a new lesion_id; return (source, copy)."""
    meta = pd.read_csv(root / "HAM10000_metadata.csv", dtype=str, keep_default_na=False)
    planted, rows = [], []
    for name, (dx, edit, quality) in EDITS.items():
        source = meta[meta["dx"] == dx].iloc[0]
        copy = f"{source['image_id']}_{name}"
        image = Image.open(next(root.rglob(f"{source['image_id']}.jpg")))
        edit(image).save(root / "HAM10000_images_part_1" / f"{copy}.jpg", quality=quality)
        rows.append({**source.to_dict(), "image_id": copy, "lesion_id": f"PLANTED_{name}"})
        planted.append((source["image_id"], copy))
    pd.concat([meta, pd.DataFrame(rows)]).to_csv(root / "HAM10000_metadata.csv", index=False)
    return planted


@pytest.fixture(scope="module")
def planted(demo_root, tmp_path_factory) -> tuple[Path, list[tuple[str, str]]]:
    root = tmp_path_factory.mktemp("planted") / "data"
    shutil.copytree(demo_root, root, ignore=shutil.ignore_patterns("masks"))
    return root, _plant(root)


@pytest.fixture(scope="module")
def planted_pairs(planted, tmp_path_factory) -> Path:
    root, _ = planted
    out = tmp_path_factory.mktemp("duplicates") / "duplicates.csv"
    assert data_cli(["duplicates", "--data-root", str(root), "--out", str(out)]) == 0
    return out


def _pair_set(pairs: pd.DataFrame) -> set[frozenset]:
    return {frozenset(p) for p in pairs[["image_id_a", "image_id_b"]].itertuples(index=False)}


def test_detector_flags_every_planted_copy_and_no_two_different_synthetic_lesions(planted, planted_pairs, capsys):
    root, copies = planted
    flagged = read_pairs(planted_pairs)
    assert list(flagged.columns) == list(PAIR_COLUMNS)
    assert _pair_set(flagged) == {frozenset(c) for c in copies}, flagged
    assert (flagged["inliers"].astype(int) >= DEFAULT_MIN_INLIERS).all()
    assert (flagged["lesion_id_a"] != flagged["lesion_id_b"]).all()
    assert planted_pairs.with_name("duplicates_review.png").stat().st_size > 10_000

    # The margin on both sides of the rule: every candidate pair of two different synthetic
    # lesions (the demo's lesions of one class look alike) against the weakest planted copy.
    everything = candidate_pairs(load_dataset(root))
    is_copy = pd.Series([frozenset(p) in {frozenset(c) for c in copies}
                         for p in everything[["image_id_a", "image_id_b"]].itertuples(index=False)])
    planted_lesions = everything["lesion_id_a"].str.startswith("PLANTED") | everything["lesion_id_b"].str.startswith(
        "PLANTED")
    weakest_copy = everything.loc[is_copy, "inliers"].min()
    closest_strangers = everything.loc[~is_copy & ~planted_lesions, "inliers"].max()
    with capsys.disabled():
        print(f"\ndemo: weakest planted copy {weakest_copy} inliers, most among different synthetic lesions "
              f"{closest_strangers}, rule >= {DEFAULT_MIN_INLIERS}")
    assert closest_strangers < DEFAULT_MIN_INLIERS <= weakest_copy


@pytest.mark.slow  # a process pool after OpenCV's threads
def test_verify_after_opencv_ran_threads_in_this_process_does_not_hang(demo_root):
    # A forked matching worker once hung in the OpenCV thread pool it inherited from a parent
    # that had already run SIFT on several threads.
    script = f"""
import numpy as np
from pathlib import Path
from core.data.images import ImageRef, load_rgb
from core.duplicates import verify
from core.matching import features
files = [ImageRef(p) for p in sorted(Path({str(demo_root)!r}).rglob("*.jpg"))[:4]]
for ref in files:
    features(np.asarray(load_rgb(ref)))
print(verify([(files[0], files[0]), (files[1], files[2])]).tolist())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    same, different = json.loads(done.stdout)
    assert same >= DEFAULT_MIN_INLIERS > different


def test_neighbour_pairs_are_the_full_matrix_top_k():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 16)).astype(np.float32)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = a[:120] + 0.1 * rng.normal(size=(120, 16)).astype(np.float32)
    for k in (1, 5, 20):
        full = a @ a.T
        np.fill_diagonal(full, -np.inf)
        top = np.argsort(-full, axis=1)[:, :k]
        expected = {(min(i, j), max(i, j)) for i in range(len(a)) for j in top[i]}
        i, j, sims = neighbour_pairs(a, k=k)
        assert set(zip(i.tolist(), j.tolist(), strict=True)) == expected and len(i) == len(expected)
        np.testing.assert_allclose(sims, full[i, j], rtol=1e-5)
        across = a @ b.T
        top = np.argsort(-across, axis=1)[:, :k]
        i, j, _ = neighbour_pairs(a, b, k=k)
        assert set(zip(i.tolist(), j.tolist(), strict=True)) == {(r, c) for r in range(len(a)) for c in top[r]}


def test_split_keeps_each_planted_pair_in_one_split_deterministically(planted, planted_pairs, tmp_path):
    root, copies = planted
    meta = load_dataset(root).metadata
    crossed_without = 0
    for seed in range(6):
        plain = lesion_split(meta, seed=seed)
        crossed_without += crossing_pairs(plain, read_pairs(planted_pairs))
        kept = lesion_split(meta, seed=seed, duplicates=planted_pairs)
        split_of = kept.set_index("image_id")["split"]
        assert all(split_of[a] == split_of[b] for a, b in copies), seed
        shuffled = lesion_split(meta.sample(frac=1, random_state=seed), seed=seed, duplicates=read_pairs(planted_pairs))
        pd.testing.assert_frame_equal(kept, shuffled)
    assert crossed_without > 0  # without the file the lesion-wise split does put copies apart

    out = tmp_path / "splits.csv"
    args = ["split", "--data-root", str(root), "--out", str(out), "--duplicates", str(planted_pairs)]
    assert data_cli(args) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out, dtype=str), lesion_split(meta, seed=0, duplicates=planted_pairs),
                                  check_dtype=False)
    report = duplicates_report(meta, planted_pairs, lesion_split(meta, seed=0, duplicates=planted_pairs), seed=0)
    assert report["pairs"] == report["links_applied"] == len(copies) and report["crossing_with"] == 0


def test_split_cli_and_check_report_the_pairs(planted, planted_pairs, tmp_path, capsys):
    root, copies = planted
    meta = load_dataset(root).metadata
    for seed in range(10):  # a seed where the plain split puts a copy apart from its source
        if crossing_pairs(lesion_split(meta, seed=seed), read_pairs(planted_pairs)):
            break
    capsys.readouterr()
    args = ["split", "--data-root", str(root), "--out", str(tmp_path / "s.csv"), "--seed", str(seed),
            "--duplicates", str(planted_pairs)]
    assert data_cli(args) == 0
    crossed = crossing_pairs(lesion_split(meta, seed=seed), read_pairs(planted_pairs))
    assert (f"duplicates: 3 pair(s) in this dataset, 3 extra link(s) applied; {crossed} pair(s) would otherwise "
            "have crossed splits, 0 do now") in capsys.readouterr().out

    report = check_dataset(load_dataset(root), decode=False, duplicates=planted_pairs)
    assert report.ok
    [warning] = [p for p in report.problems if "near-duplicate" in p.what]
    assert warning.severity == "warning" and "3 near-duplicate image pair(s)" in warning.what
    assert all(copy in warning.what for _, copy in copies) and str(planted_pairs) == warning.where
    assert data_cli(["check", "--data-root", str(root), "--no-decode", "--duplicates", str(planted_pairs)]) == 0
    assert "WARNING" in capsys.readouterr().out


@pytest.mark.parametrize("labels", ["ham_metadata", "isic2018_one_hot"])
def test_against_pairs_each_copy_with_its_source_across_two_folders(planted, demo_root, tmp_path, capsys, labels):
    root, copies = planted
    other = tmp_path / "other"
    (other / "images").mkdir(parents=True)
    meta = pd.read_csv(root / "HAM10000_metadata.csv", dtype=str, keep_default_na=False)
    rows = meta[meta["image_id"].isin([c for _, c in copies])]
    if labels == "ham_metadata":
        rows.to_csv(other / "HAM10000_metadata.csv", index=False)
    else:  # the ISIC 2018 Task 3 test set's own format: one-hot, no lesion_id
        one_hot = pd.DataFrame({"image": rows["image_id"]})
        for c in ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"):
            one_hot[c] = (rows["dx"].str.upper() == c).astype(float)
        one_hot.to_csv(other / "ISIC2018_Task3_Test_GroundTruth.csv", index=False)
    for image_id in rows["image_id"]:
        shutil.copy(next(root.rglob(f"{image_id}.jpg")), other / "images")
    out = tmp_path / "across.csv"
    assert data_cli(["duplicates", "--data-root", str(demo_root), "--against", str(other), "--out", str(out)]) == 0
    across = read_pairs(out)
    assert _pair_set(across) == {frozenset(c) for c in copies}
    assert set(across["image_id_a"]) == {s for s, _ in copies} and set(across["image_id_b"]) == set(rows["image_id"])
    assert (across["dx_a"] == across["dx_b"]).all()
    assert "3 pair(s) across" in capsys.readouterr().out and (tmp_path / "across_review.png").is_file()


def test_lesion_groups_chain_links_whatever_the_order():
    meta = pd.DataFrame({"image_id": [f"I{i}" for i in range(5)], "lesion_id": ["L3", "L1", "L2", "L2", "L9"]})
    pairs = pd.DataFrame({"image_id_a": ["I0", "I2", "I3"], "image_id_b": ["I2", "I1", "I0"]})
    groups, links = lesion_groups(meta, pairs)
    assert list(groups) == ["L1", "L1", "L1", "L1", "L9"] and links == 2  # I3~I0 joins nothing new
    regrouped, _ = lesion_groups(meta.iloc[::-1], pairs.iloc[::-1])
    assert regrouped.sort_index().equals(groups)


def test_pairs_from_another_dataset_are_refused_with_the_fix():
    meta = pd.DataFrame({"image_id": ["I0", "I1"], "lesion_id": ["L0", "L1"]})
    pairs = pd.DataFrame({"image_id_a": ["X0"], "image_id_b": ["X1"]})
    with pytest.raises(DatasetError, match="made for another one: run `python -m core.data duplicates`"):
        pairs_in(meta, pairs)


def test_duplicates_file_without_the_id_columns_names_them(tmp_path):
    bad = tmp_path / "pairs.csv"
    bad.write_text("a,b\nI0,I1\n")
    with pytest.raises(DatasetError, match=r"pairs.csv lacks the column\(s\) image_id_a, image_id_b"):
        read_pairs(bad)


@pytest.mark.slow  # minutes on 2 cores; the full audit's recall and time: benchmarks/leak_audit.py
@needs_ham
def test_real_thumbnails_audit_flags_a_known_re_photograph_in_bounded_memory(tmp_path, capsys):
    # A fifth of the real thumbnails, with both lesions of one bkl photographed twice under
    # HAM_0007604 and HAM_0000955 (ISIC_0027027 and ISIC_0029036).
    meta = pd.read_csv(HAM / "HAM10000_metadata.csv", dtype=str, keep_default_na=False)
    lesions = set(meta["lesion_id"].drop_duplicates().sample(1500, random_state=0)) | {"HAM_0007604", "HAM_0000955"}
    root = tmp_path / "ham"
    root.mkdir()
    meta[meta["lesion_id"].isin(lesions)].to_csv(root / "HAM10000_metadata.csv", index=False)
    os.symlink(HAM / "images_200x150", root / "images")
    out = tmp_path / "duplicates.csv"
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "core.data", "duplicates", "--data-root", str(root), "--out",
                          str(out), "--cache-dir", str(tmp_path / "cache")], capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    peak = int(re.search(r"peak memory (\d+) MiB", run.stdout).group(1))
    pairs = read_pairs(out)
    images = int(re.search(r"(\d+) images in", run.stdout).group(1))
    with capsys.disabled():
        print(f"\nreal thumbnails: {images} images in {time.perf_counter() - start:.0f} s, peak memory {peak} MiB; "
              f"{len(pairs)} pairs flagged")
    assert images == (meta["lesion_id"].isin(lesions)).sum() and peak < 3072
    assert 1 <= len(pairs) <= images // 20 and (pairs["lesion_id_a"] != pairs["lesion_id_b"]).all()
    assert frozenset({"ISIC_0027027", "ISIC_0029036"}) in _pair_set(pairs)
    assert out.with_name("duplicates_review.png").stat().st_size > 10_000


def test_sweep_records_the_links_and_the_crossings_avoided(planted, planted_pairs, tmp_path):
    from core.config import RunConfig
    from ray_jobs.sweep import Sweep, check_data

    root, copies = planted
    sweep = Sweep(results=str(tmp_path / "sweep"), profile="smoke", data_root=str(root), arms=["baseline"],
                  split_seed=2)
    cfg = RunConfig(duplicates_file=str(planted_pairs))
    facts, splits = check_data(sweep, {"baseline": cfg}, None)
    meta = load_dataset(root).metadata
    assert facts["duplicates"] == {"file": str(planted_pairs), **duplicates_report(meta, planted_pairs, splits, 2)}
    assert facts["duplicates"]["links_applied"] == len(copies) and facts["duplicates"]["crossing_with"] == 0
    assert check_data(sweep, {"baseline": RunConfig()}, None)[0]["duplicates"] is None


def test_a_sweep_applies_the_audit_it_finds_beside_the_data_and_says_so(planted, planted_pairs, tmp_path,
                                                                        monkeypatch, caplog):
    from ablations import run_all
    from ray_jobs.sweep import check_data
    from tests.test_preflight import ReachedRay, stop_before_ray

    root, copies = planted
    data = tmp_path / "data"
    shutil.copytree(root, data)
    stop_before_ray(monkeypatch)
    facts = []
    monkeypatch.setattr("ray_jobs.driver.check_data", lambda *a: facts.append(check_data(*a)) or facts[-1])

    def start(*extra: str) -> dict | None:
        caplog.clear()
        with caplog.at_level("INFO"), pytest.raises(ReachedRay):
            run_all.main(["--data-root", str(data), "--profile", "smoke", "--arms", "baseline",
                          "--results", str(tmp_path / f"results{len(facts)}"), *extra])
        return facts[-1][0]["duplicates"]

    assert start() is None
    assert f"no leak audit applied: no duplicates_file set and no duplicates.csv in {data}" in caplog.text
    shutil.copy(planted_pairs, data / "duplicates.csv")
    found = start()
    assert found["file"] == str(data / "duplicates.csv") and found["links_applied"] == len(copies)
    assert f"leak audit applied: {data / 'duplicates.csv'}, 3 pair(s), 3 extra link(s)" in caplog.text
    assert start("--set", "duplicates_file=null") is None  # declined
    assert "no leak audit applied" in caplog.text


def test_an_audit_that_could_not_write_its_list_stops_before_any_work(demo_root, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    out = tmp_path / "a_file" / "duplicates.csv"
    assert data_cli(["duplicates", "--data-root", str(demo_root), "--out", str(out)]) == 2
    assert re.search(rf"cannot write {re.escape(str(out))} \(.+\); pass --out", capsys.readouterr().err)


def test_training_with_a_duplicates_file_leaves_no_listed_pair_across_splits(planted, planted_pairs, tmp_path):
    from core.config import RunConfig
    from core.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from core.training import prepare_data

    root, copies = planted
    meta = load_dataset(root).metadata
    seed = next(s for s in range(10) if crossing_pairs(lesion_split(meta, seed=s), read_pairs(planted_pairs)))
    cfg = RunConfig(duplicates_file=str(planted_pairs), split_seed=seed, cache=False, image_size=32,
                    cache_dir=str(tmp_path))
    data = prepare_data(cfg, root, IMAGENET_MEAN, IMAGENET_STD)
    assert crossing_pairs(data.splits, read_pairs(planted_pairs)) == 0
