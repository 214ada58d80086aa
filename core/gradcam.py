"""Grad-CAM heatmaps for the timm classifiers, through pytorch-grad-cam."""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from timm.models.convnext import ConvNeXt
from timm.models.efficientnet import EfficientNet
from timm.models.mobilenetv3 import MobileNetV3
from timm.models.resnet import ResNet
from torch import nn

MIN_CAM_CELLS = 7  # a map coarser than 7x7 paints blocks, not the lesion


def find_target_layer(model: nn.Module, image_size: int | None = None) -> nn.Module:
    """The Grad-CAM layer of a timm EfficientNet, ConvNeXt, ResNet or MobileNetV3.

    The last spatial feature layer, unless at `image_size` its map is under 7x7 cells: then
    the deepest stage whose map has at least 7 (stride 16 at 112-223 px, stride 8 at 56-111).
    The timm network may be wrapped: the first one found among `model.modules()` is used.
    """
    net = next((m for m in model.modules() if isinstance(m, (EfficientNet, ConvNeXt, ResNet, MobileNetV3))), None)
    if net is None:
        raise ValueError(
            f"no Grad-CAM target layer known for {type(model).__name__}; pass target_layer "
            "by name (a dotted path such as 'layer4.1' or 'blocks.6')"
        )
    stages = net.feature_info
    if image_size is not None and image_size // stages[-1]["reduction"] < MIN_CAM_CELLS:
        fine_enough = [s for s in stages if image_size // s["reduction"] >= MIN_CAM_CELLS] or stages[:1]
        return net.get_submodule(fine_enough[-1]["module"])
    if isinstance(net, EfficientNet):
        return net.bn2  # conv_head + BN + activation: the map the classifier pools
    if isinstance(net, ConvNeXt):
        return net.stages[-1]
    if isinstance(net, ResNet):
        return net.layer4[-1]
    return net.blocks[-1]  # MobileNetV3 pools before conv_head, so that map is 1x1


def resolve_layer(model: nn.Module, dotted_name: str) -> nn.Module:
    """The submodule at `dotted_name` (e.g. 'blocks.6.0'), or ValueError."""
    try:
        return model.get_submodule(dotted_name)
    except AttributeError as error:
        raise ValueError(f"{type(model).__name__} has no layer {dotted_name!r}") from error


def compute_cams(
    model: nn.Module,
    images: torch.Tensor,
    target_classes: list[int] | None = None,
    target_layer: nn.Module | str | None = None,
) -> np.ndarray:
    """Grad-CAM maps, float32 [B, H, W] in [0, 1], one per normalised image in [B, 3, H, W].

    `target_classes` gives one class per image; None means each image's predicted
    class. `target_layer` is a module, a dotted name, or None for find_target_layer at the
    images' size.
    The model runs in eval mode; every module's train/eval state is restored after.
    """
    if target_classes is not None and len(target_classes) != images.shape[0]:
        raise ValueError(f"{len(target_classes)} target classes for {images.shape[0]} images")
    if target_layer is None:
        target_layer = find_target_layer(model, min(images.shape[-2:]))
    elif isinstance(target_layer, str):
        target_layer = resolve_layer(model, target_layer)

    modes = {m: m.training for m in model.modules()}
    cams = None
    try:
        # Gradients are needed even when the caller runs under torch.no_grad().
        with torch.enable_grad(), GradCAM(model=model, target_layers=[target_layer]) as cam:
            targets = None if target_classes is None else [ClassifierOutputTarget(c) for c in target_classes]
            cams = cam(input_tensor=images, targets=targets)
    finally:
        for m, training in modes.items():
            m.training = training
        model.zero_grad(set_to_none=True)  # GradCAM's backward leaves parameter gradients
    if cams is None:  # GradCAM.__exit__ swallows the IndexError of a class out of range
        raise ValueError(f"target classes {target_classes} out of range for the model output")
    return cams


def overlay(rgb: np.ndarray, cam: np.ndarray, image_weight: float = 0.5) -> np.ndarray:
    """Jet heatmap of `cam` [H, W] over a float RGB image [H, W, 3] in [0, 1]; uint8 HWC."""
    if rgb.shape[:2] != cam.shape:
        raise ValueError(f"image {rgb.shape[:2]} and cam {cam.shape} differ in size")
    return show_cam_on_image(rgb.astype(np.float32), cam, use_rgb=True, image_weight=image_weight)


def cam_mass_inside(cam: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of the CAM's total mass inside a boolean mask of the same shape (0 if empty)."""
    if cam.shape != mask.shape:
        raise ValueError(f"cam {cam.shape} and mask {mask.shape} differ in shape")
    total = float(cam.sum())
    return float(cam[mask.astype(bool)].sum()) / total if total > 0 else 0.0
