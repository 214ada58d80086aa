"""core.model: the classifier and its pretrained sources."""

import time

import numpy as np
import pytest
import timm
import torch
from huggingface_hub import constants as hf_constants
from PIL import Image
from safetensors.torch import save_file
from skimage import data as skdata

from core.labels import NUM_CLASSES
from core.model import build_model, pypi_weights_file

TINY = "test_efficientnet"  # timm's small test model, about 0.4M parameters


def _backbone_equal(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items() if not k.startswith("classifier"))


def test_output_is_one_logit_per_class():
    model = build_model(TINY).eval()
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, NUM_CLASSES)


def test_dropout_rate_is_applied():
    assert build_model(TINY, dropout=0.35).drop_rate == 0.35


def test_unknown_backbone_names_close_matches():
    with pytest.raises(ValueError, match="efficientnet_b0"):
        build_model("efficientnet_bo")


def test_unknown_pretrained_source_names_choices():
    with pytest.raises(ValueError, match="imagenet"):
        build_model(TINY, pretrained="/no/such/weights.pth")


def test_imagenet_offline_fails_fast_naming_alternatives(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    start = time.monotonic()
    with pytest.raises(RuntimeError) as err:
        build_model(TINY, pretrained="imagenet")
    assert time.monotonic() - start < 10
    for alternative in ("pypi", "path", "none"):
        assert alternative in str(err.value)


def test_imagenet_offline_uses_hub_cache(monkeypatch, tmp_path):
    source = timm.create_model(TINY)
    snapshot = tmp_path / "models--timm--test_efficientnet.r160_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    save_file(source.state_dict(), snapshot / "model.safetensors")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))

    model = build_model(TINY, pretrained="imagenet")
    assert _backbone_equal(model, source.state_dict())


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_file_loads_backbone_and_new_head(tmp_path, suffix):
    source = timm.create_model(TINY)  # 1000-class ImageNet-shaped head
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pth":
        torch.save(source.state_dict(), path)
    else:
        save_file(source.state_dict(), path)

    model = build_model(TINY, pretrained=str(path), dropout=0.3)
    assert _backbone_equal(model, source.state_dict())
    assert model.classifier.out_features == NUM_CLASSES
    assert model.drop_rate == 0.3


def test_pypi_rejects_other_backbones():
    with pytest.raises(ValueError, match="tf_efficientnet_lite0"):
        build_model("efficientnet_b0", pretrained="pypi")


@pytest.fixture(scope="module")
def lite0_imagenet() -> torch.nn.Module:
    return build_model("tf_efficientnet_lite0", pretrained="pypi", num_classes=1000).eval()


def test_pypi_lite0_maps_every_tensor_in_order(lite0_imagenet):
    source = torch.load(pypi_weights_file("tf_efficientnet_lite0"), map_location="cpu", weights_only=True)
    src = [v for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [v for k, v in lite0_imagenet.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert len(src) == len(dst) == 247
    assert all(torch.equal(a, b) for a, b in zip(src, dst, strict=True))


def test_pypi_head_is_reset_for_seven_classes():
    model = build_model("tf_efficientnet_lite0", pretrained="pypi")
    assert model.classifier.out_features == NUM_CLASSES
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)  # TF-trained: inputs scaled to [-1, 1]


@pytest.mark.parametrize(("image", "imagenet_class"), [(skdata.chelsea, 285), (skdata.coffee, 967)])
def test_pypi_lite0_recognises_imagenet_photos(lite0_imagenet, image, imagenet_class):
    cfg = lite0_imagenet.pretrained_cfg
    pixels = np.array(Image.fromarray(image()).resize(cfg["input_size"][1:], Image.BICUBIC))
    x = torch.from_numpy(pixels).permute(2, 0, 1).float().div(255)
    x = (x - torch.tensor(cfg["mean"]).view(3, 1, 1)) / torch.tensor(cfg["std"]).view(3, 1, 1)
    with torch.no_grad():
        probs = lite0_imagenet(x[None]).softmax(-1)[0]
    assert probs.argmax().item() == imagenet_class  # 285 Egyptian cat, 967 espresso
    assert probs[imagenet_class] > 0.5
