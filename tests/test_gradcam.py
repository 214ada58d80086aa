"""core.gradcam on tiny timm models and on a hand-built CNN with a known answer."""

import numpy as np
import pytest
import timm
import torch
from torch import nn

from core.gradcam import cam_mass_inside, compute_cams, find_target_layer, overlay, resolve_layer

SIZE = 64

# Tiny timm models (random weights) -> the layer find_target_layer should pick.
TIMM_LAYERS = {
    "test_efficientnet": lambda m: m.bn2,
    "test_convnext": lambda m: m.stages[-1],
    "test_resnet": lambda m: m.layer4[-1],
    "mobilenetv3_small_050": lambda m: m.blocks[-1],
}


@pytest.fixture(scope="module", params=list(TIMM_LAYERS))
def timm_model(request):
    torch.manual_seed(0)
    return request.param, timm.create_model(request.param, pretrained=False, num_classes=7)


def images(n: int, size: int = SIZE) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(n))


def hooks(model: nn.Module) -> list[str]:
    """Names of the modules that carry any hook."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return [name for name, m in model.named_modules() if any(getattr(m, k) for k in kinds)]


def test_target_layer_is_found(timm_model):
    name, model = timm_model
    assert find_target_layer(model) is TIMM_LAYERS[name](model)


def test_target_layer_is_found_inside_a_wrapper(timm_model):
    name, model = timm_model
    wrapper = nn.Sequential(model)
    assert find_target_layer(wrapper) is TIMM_LAYERS[name](model)


def feature_map_side(model: nn.Module, layer: nn.Module, size: int) -> int:
    seen = []
    handle = layer.register_forward_hook(lambda module, args, out: seen.append(out.shape[-1]))
    with torch.no_grad():
        model.eval()(images(1, size))
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("size", [32, 64, 96, 128, 224])
def test_the_cam_layer_has_a_map_of_at_least_7_cells_where_the_input_allows(timm_model, size):
    name, model = timm_model
    layer = find_target_layer(model, size)
    side = feature_map_side(model, layer, size)
    if size >= 224:  # the last feature map is 7x7: the layer the classifier pools
        assert layer is TIMM_LAYERS[name](model) and side == 7
    else:  # the deepest stage that still has 7 cells a side (or the first, on tiny inputs)
        stages = [info["module"] for info in model.feature_info]
        chosen = next(i for i, stage in enumerate(stages) if model.get_submodule(stage) is layer)
        assert side >= 7 or chosen == 0
        assert all(feature_map_side(model, model.get_submodule(s), size) < 7 for s in stages[chosen + 1:])


def test_compute_cams_picks_the_layer_by_the_images_size(monkeypatch):
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=7)
    chosen = []
    real = compute_cams.__globals__["find_target_layer"]
    monkeypatch.setitem(compute_cams.__globals__, "find_target_layer",
                        lambda m, size: chosen.append(size) or real(m, size))
    compute_cams(model, images(1, 48))
    assert chosen == [48]


def test_cams_for_a_batch_with_different_targets(timm_model):
    _, model = timm_model
    model.train()
    find_target_layer(model).eval()  # mixed train/eval states must come back as they were
    modes = {name: m.training for name, m in model.named_modules()}

    cams = compute_cams(model, images(2), target_classes=[0, 3])

    assert cams.shape == (2, SIZE, SIZE) and cams.dtype == np.float32
    assert cams.min() >= 0 and cams.max() <= 1
    assert hooks(model) == []
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(p.grad is None for p in model.parameters())


def test_cams_under_no_grad_for_the_predicted_class():
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=7).eval()
    with torch.no_grad():
        cams = compute_cams(model, images(1))
    assert cams.shape == (1, SIZE, SIZE)
    assert not model.training


def test_target_layer_by_name():
    model = timm.create_model("test_resnet", pretrained=False, num_classes=7)
    assert resolve_layer(model, "layer4.0") is model.layer4[0]
    assert compute_cams(model, images(1), [2], target_layer="layer3").shape == (1, SIZE, SIZE)
    with pytest.raises(ValueError, match="no layer 'layer9'"):
        resolve_layer(model, "layer9")


def test_bad_target_classes_are_rejected():
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=7)
    with pytest.raises(ValueError, match="2 target classes for 1 images"):
        compute_cams(model, images(1), [0, 1])
    with pytest.raises(ValueError, match="out of range"):
        compute_cams(model, images(1), [7])
    assert hooks(model) == []


class Quadrants(nn.Module):
    """Class 0 sees only the bottom-right quadrant of the image, class 1 only the top-left."""

    def __init__(self, size: int):
        super().__init__()
        masks = torch.zeros(2, 1, size, size)
        masks[0, :, size // 2 :, size // 2 :] = 1
        masks[1, :, : size // 2, : size // 2] = 1
        self.register_buffer("masks", masks)
        # One group per class: its three input channels are the image under its mask.
        self.conv = nn.Conv2d(6, 2, kernel_size=2, stride=2, groups=2, bias=False)
        nn.init.constant_(self.conv.weight, 0.1)
        self.features = nn.Sequential(self.conv, nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masked = torch.cat([x * self.masks[0], x * self.masks[1]], dim=1)
        return self.features(masked).mean(dim=(2, 3))


def test_cam_mass_lies_where_the_class_looks():
    size = 32
    model = Quadrants(size)
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    top_left = np.zeros((size, size), dtype=bool)
    top_left[: size // 2, : size // 2] = True
    bottom_right = np.zeros((size, size), dtype=bool)
    bottom_right[size // 2 :, size // 2 :] = True

    cams = compute_cams(model, x, target_classes=[1, 0], target_layer=model.features)

    assert cam_mass_inside(cams[0], top_left) > 0.9
    assert cam_mass_inside(cams[1], bottom_right) > 0.9
    assert hooks(model) == []


def test_unknown_architecture_asks_for_a_target_layer():
    with pytest.raises(ValueError, match="pass target_layer"):
        find_target_layer(Quadrants(8))


def test_overlay_is_uint8_rgb():
    rgb = np.random.default_rng(0).random((SIZE, SIZE, 3))
    cam = np.zeros((SIZE, SIZE), dtype=np.float32)
    cam[:8, :8] = 1
    out = overlay(rgb, cam)
    assert out.dtype == np.uint8 and out.shape == (SIZE, SIZE, 3)
    with pytest.raises(ValueError, match="differ in size"):
        overlay(rgb, cam[:10])


def test_cam_mass_inside_by_hand():
    cam = np.array([[1.0, 3.0], [0.0, 0.0]])
    assert cam_mass_inside(cam, np.array([[True, False], [False, False]])) == 0.25
    assert cam_mass_inside(np.zeros((2, 2)), np.ones((2, 2), dtype=bool)) == 0.0
