"""Where and in what precision a model runs: shared by training, the cVAE and external evaluation."""
from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when there is a GPU, else the CPU; any other name is taken as is."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype (bf16 where the GPU has it, else fp16), or None: full precision off CUDA."""
    if not (amp and device.type == "cuda"):
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def memory_format(channels_last: bool) -> torch.memory_format:
    """channels_last (NHWC) where asked: faster on CUDA and on the CPU alike (benchmarks/cpu_step.py)."""
    return torch.channels_last if channels_last else torch.contiguous_format


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size under torch.distributed; (0, 1) outside it."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def augments_on_device(choice: str) -> bool:
    """`augment: device` or `auto`: whole batches augmented where the model runs, the faster path on
    CUDA and on the CPU alike (benchmarks/cpu_step.py); `cpu` keeps the DataLoader's workers."""
    return choice != "cpu"
