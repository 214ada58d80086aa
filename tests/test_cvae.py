"""core.cvae: a real conditional VAE, trained on the training split only, whose images reach
training batches and nothing else, cached and reused across runs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import core.cvae.store
from core import train, training
from core.config import ConfigError, from_dict, load_config
from core.cvae.__main__ import main as cvae_main
from core.cvae.fit import train_cvae
from core.cvae.model import CVAEConfig, generate
from core.cvae.store import load_cvae
from core.cvae.synthetic import synthetic_plan
from core.data.cache import build_cache
from core.data.dataset import load_dataset
from core.data.split import lesion_split
from core.labels import CLASS_INDEX, CLASSES

CONFIGS = Path(__file__).resolve().parents[1] / "ablations" / "configs"
SYNTH = CONFIGS / "baseline_synth.yaml"
TINY = CVAEConfig(resolution=32, latent=16, epochs=4, width=16, batch_size=32, kl_warmup=0.0)


@pytest.fixture(scope="module")
def demo_train(demo_root):
    """The demo training split at 32 px: uint8 images and labels."""
    ds = load_dataset(demo_root)
    rows = lesion_split(ds.metadata).query("split == 'train'")
    images = np.load(build_cache(ds, list(rows["image_id"]), 32).path)
    return images, rows["dx"].map(CLASS_INDEX).to_numpy()


@pytest.fixture(scope="module")
def trained(demo_train):
    return train_cvae(*demo_train, TINY, torch.device("cpu"))


@pytest.fixture(scope="module")
def synth_run(demo_root, tmp_path_factory):
    """baseline_synth end to end under the smoke profile, with its own cache; counts cVAE trainings."""
    base = tmp_path_factory.mktemp("synth")
    calls = []

    def spy(images, labels, *args, **kwargs):
        calls.append(np.bincount(labels, minlength=len(CLASSES)).tolist())
        return train_cvae(images, labels, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(core.cvae.store, "train_cvae", spy)
        argv = ["--config", str(SYNTH), "--data-root", str(demo_root), "--out", str(base / "run"),
                "--profile", "smoke", "--set", f"cache_dir={base / 'cache'}"]
        assert train.main(argv) == 0
    cfg = load_config(SYNTH, "smoke", {"cache_dir": str(base / "cache")})
    return {"run": base / "run", "cache": base / "cache", "cfg": cfg, "calls": calls}


# --------------------------------------------------------------------------- the model


def test_elbo_falls_over_a_few_epochs(trained):
    _, history = trained
    assert list(history["epoch"]) == [1, 2, 3, 4]
    # Deterministic for the seed: the bound tightens every epoch.
    assert history["neg_elbo"].is_monotonic_decreasing and history["neg_elbo"].iloc[-1] < history["neg_elbo"].iloc[0]
    assert history["recon"].iloc[-1] < history["recon"].iloc[0]
    assert (history["kl"] >= 0).all()


def test_samples_have_the_right_shape_range_and_seed(trained, demo_train):
    model, _ = trained
    y = torch.tensor([CLASS_INDEX["mel"]] * 5)
    x = model.sample(y)
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    labels = np.array([0, 1, 2, 3, 4, 5, 6])
    images = generate(model, labels, side=48, seed=1)
    assert images.shape == (7, 48, 48, 3) and images.dtype == np.uint8
    assert np.array_equal(images, generate(model, labels, side=48, seed=1))
    assert not np.array_equal(images, generate(model, labels, side=48, seed=2))
    # Drawn from the prior, not copied: no generated image is any training image.
    real = {image.tobytes() for image in demo_train[0]}
    assert not any(image.tobytes() in real for image in generate(model, labels, side=32))


def test_only_the_class_condition_changes_the_output(trained):
    model, _ = trained
    noise = torch.randn(4, TINY.latent, generator=torch.Generator().manual_seed(0))
    mel, nv = (model.sample(torch.full((4,), CLASS_INDEX[c]), noise) for c in ("mel", "nv"))
    assert torch.equal(mel, model.sample(torch.full((4,), CLASS_INDEX["mel"]), noise))
    assert (mel - nv).abs().mean() > 1e-3


def test_plan_brings_each_class_up_to_the_target_fraction():
    counts = [10, 100, 0, 40, 60, 200, 5]
    assert synthetic_plan(counts, 0.25) == [40, 0, 0, 10, 0, 0, 45]
    assert synthetic_plan(counts, 1.0) == [190, 100, 0, 160, 140, 0, 195]


# --------------------------------------------------------------------------- the arm


def test_baseline_synth_is_the_baseline_plus_cvae_images():
    base, synth = load_config(CONFIGS / "baseline.yaml").to_dict(), load_config(SYNTH).to_dict()
    differs = {k for k in base if base[k] != synth[k]}
    assert differs == {"name", "synthetic"} and synth["synthetic"] == "cvae"
    smoke = load_config(SYNTH, "smoke")
    assert smoke.cvae_resolution == 32 and smoke.cvae_epochs <= 3


def test_arm_trains_end_to_end_and_reports_its_synthetic_images(synth_run):
    run, cfg = synth_run["run"], synth_run["cfg"]
    metrics = json.loads((run / "metrics.json").read_text())
    splits = pd.read_csv(run / "splits.csv", dtype=str)
    real = splits.query("split == 'train'")["dx"].value_counts().reindex(CLASSES, fill_value=0).tolist()
    expected = dict(zip(CLASSES, synthetic_plan(real, cfg.synthetic_target), strict=True))
    assert metrics["synthetic_counts"] == expected and sum(expected.values()) > 0
    assert metrics["train_counts"] == {c: real[i] + expected[c] for i, c in enumerate(CLASSES)}
    table = pd.read_csv(run / "synthetic.csv")
    assert table["synthetic"].tolist() == list(expected.values()) and table["real"].tolist() == real
    for name in ("cvae_losses.png", "cvae_samples.png", "cvae_history.csv"):
        assert (run / name).stat().st_size > 0
    # The cVAE saw the training split only, once.
    assert synth_run["calls"] == [real]


def test_synthetic_images_never_reach_val_test_or_the_split(synth_run, demo_root):
    run, cfg = synth_run["run"], synth_run["cfg"]
    splits = pd.read_csv(run / "splits.csv", dtype=str)
    without = training.prepare_data(from_dict({**cfg.to_dict(), "synthetic": "none"}), demo_root, (0.5,) * 3,
                                    (0.5,) * 3)
    pd.testing.assert_frame_equal(splits, without.splits.reset_index(drop=True).astype(str))
    for name in ("val", "test"):
        ids = pd.read_csv(run / f"predictions_{name}.csv", dtype=str)["image_id"]
        assert sorted(ids) == sorted(splits.query("split == @name")["image_id"])
        assert not ids.str.startswith("synth-").any()


def test_synthetic_images_appear_in_training_batches_only(synth_run, demo_root):
    cfg = synth_run["cfg"]
    data = training.prepare_data(cfg, demo_root, (0.5,) * 3, (0.5,) * 3)
    loaders = training.make_loaders(cfg, data, torch.device("cpu"))
    # The items each loader's batches are made of (its batch sampler), without decoding them.
    seen = {name: {dataset.image_ids[i] for batch in loader.batch_sampler for i in batch}
            for name, loader, dataset in zip(("train", "val", "test"), loaders, (data.train, data.val, data.test),
                                             strict=True)}
    synthetic = {i for i in data.train.image_ids if i.startswith("synth-")}
    assert len(synthetic) == sum(data.generated.counts.values()) and synthetic & seen["train"]
    assert seen["val"] == set(data.splits.query("split == 'val'")["image_id"])
    assert seen["test"] == set(data.splits.query("split == 'test'")["image_id"])
    key = data.generated.cvae_path.parent.name[:8]
    image, label, _ = data.train[data.train.image_ids.index(sorted(synthetic)[0])]
    assert image.shape == (3, cfg.image_size, cfg.image_size)
    assert sorted(synthetic)[0].startswith(f"synth-{key}-{CLASSES[label]}-")


class Retrained(Exception):
    pass


def _refuse_training(*args, **kwargs):
    raise Retrained


def test_a_second_run_reuses_the_cached_cvae(synth_run, demo_root, monkeypatch):
    monkeypatch.setattr(core.cvae.store, "train_cvae", _refuse_training)
    models = list(synth_run["cache"].glob("cvae/*/cvae.pt"))
    assert len(models) == 1
    before = models[0].stat().st_mtime_ns
    path = core.cvae.store.ensure_cvae(synth_run["cfg"], demo_root, synth_run["run"] / "splits.csv")
    assert path == models[0] and path.stat().st_mtime_ns == before
    data = training.prepare_data(synth_run["cfg"], demo_root, (0.5,) * 3, (0.5,) * 3)
    assert data.generated.cvae_path == path
    # A different cVAE setting is a different model.
    other = from_dict({**synth_run["cfg"].to_dict(), "cvae_latent": 8})
    with pytest.raises(Retrained):
        core.cvae.store.ensure_cvae(other, demo_root, synth_run["run"] / "splits.csv")


# --------------------------------------------------------------------------- command line and config


def test_cli_samples_pngs_from_a_cached_model(synth_run, tmp_path):
    model = next(synth_run["cache"].glob("cvae/*/cvae.pt"))
    assert cvae_main(["sample", "--model", str(model), "--class", "df", "--n", "3", "--out", str(tmp_path),
                      "--size", "40"]) == 0
    files = sorted(tmp_path.glob("df_*.png"))
    assert len(files) == 3 and Image.open(files[0]).size == (40, 40)
    assert load_cvae(model)[1]["train_counts"]["df"] > 0


def test_cli_trains_into_a_folder(demo_root, tmp_path):
    out = tmp_path / "cvae"
    assert cvae_main(["train", "--data-root", str(demo_root), "--out", str(out), "--resolution", "32",
                      "--epochs", "1", "--latent", "8"]) == 0
    assert {p.name for p in out.iterdir()} >= {"cvae.pt", "cvae_history.csv", "cvae_losses.png", "cvae_samples.png"}
    assert load_cvae(out / "cvae.pt")[0].cfg.latent == 8


@pytest.mark.parametrize("values, message", [
    ({"synthetic": "gan"}, "synthetic='gan' is not one of none, cvae"),
    ({"cvae_resolution": 80}, "cvae_resolution=80 is not one of 32, 64, 96, 128"),
    ({"cvae_beta": 0}, "cvae_beta must be > 0"),
    ({"cvae_epochs": -1}, "cvae_epochs must be > 0"),
    ({"cvae_latent": 2.5}, "cvae_latent must be int"),
    ({"synthetic_target": 1.5}, "synthetic_target is a fraction, at most 1"),
    ({"cvae_kl_warmup": -0.1}, "cvae_kl_warmup must be >= 0"),
    ({"cvae_epoch": 3}, "did you mean cvae_epochs"),
])
def test_bad_synthetic_settings_are_config_errors(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        from_dict(values)


def test_bad_cli_values_are_reported(demo_root, tmp_path, capsys):
    assert cvae_main(["train", "--data-root", str(demo_root), "--out", str(tmp_path), "--resolution", "50"]) == 2
    assert "cvae_resolution=50" in capsys.readouterr().err
