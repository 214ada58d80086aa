"""Load checkpoints (best.pt, last.pt, Ray's state.pt, cvae.pt) without running code from them.

A .pt file is a pickle, and unpickling can call any function the file names. Every
checkpoint goes through `load_checkpoint`, which lets torch rebuild only tensors,
numbers, strings, lists and dicts (torch.load(weights_only=True)). That is all the
project has ever written, so a file it wrote always loads; a file that names anything
else was made or altered elsewhere and is refused before any of it runs.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch


class UntrustedCheckpoint(ValueError):
    """A checkpoint that holds objects other than tensors, numbers, strings, lists and dicts."""


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> Any:
    """torch.load(path) with weights_only=True; UntrustedCheckpoint when the file names other objects."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        named = re.search(r"GLOBAL (\S+)", str(e))
        what = f" ({named.group(1)})" if named else ""
        raise UntrustedCheckpoint(
            f"{path} holds objects that are not allowed in a checkpoint{what}: it may not be trusted, so it was "
            "not loaded and nothing in it ran. dermablate writes only tensors, numbers, strings, lists and dicts, "
            "so this file was made or altered elsewhere; train the run again, or get the file from its source"
        ) from None
