"""Which profile and device a notebook runs on, and which dtype it computes in.

>>> resolve_profile("tiny", announce=False)
'tiny'
>>> resolve_profile("medium")
Traceback (most recent call last):
...
ValueError: Unknown profile 'medium'. Use one of: auto, tiny, full.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .constants import GIB, OFFLINE_ENV, PROFILES


@dataclass(frozen=True)
class CudaInfo:
    """What the first CUDA device offers (GiB are 2**30 bytes)."""

    name: str
    total_gib: float
    free_gib: float
    capability: tuple[int, int]
    bf16: bool


def cuda_info() -> CudaInfo | None:
    """Facts about CUDA device 0, or None when there is no usable CUDA GPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(0)
    return CudaInfo(
        name=torch.cuda.get_device_name(0),
        total_gib=total / GIB,
        free_gib=free / GIB,
        capability=torch.cuda.get_device_capability(0),
        bf16=torch.cuda.is_bf16_supported(),
    )


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def set_offline() -> None:
    """Forbid Hub access for this process (the tiny profile never needs the network)."""
    os.environ.update(OFFLINE_ENV)


def resolve_profile(profile: str = "auto", *, announce: bool = True) -> str:
    """Turn `auto` into `full` (CUDA present) or `tiny` (no CUDA) and say so; check the name.

    The `tiny` profile also switches this process to offline mode (HF_HUB_OFFLINE=1 …).
    """
    if profile not in PROFILES:
        raise ValueError(f"Unknown profile {profile!r}. Use one of: {', '.join(PROFILES)}.")
    resolved = profile
    if profile == "auto":
        resolved = "full" if has_cuda() else "tiny"
    if resolved == "tiny":
        set_offline()
    if announce:
        if profile == "auto":
            why = "a CUDA GPU is present" if resolved == "full" else "no CUDA GPU was found"
            print(f"PROFILE='auto' -> '{resolved}' ({why}).")
        else:
            print(f"PROFILE='{resolved}'.")
        if resolved == "tiny":
            print("Tiny profile: offline stand-in models and shipped data, on CPU, in seconds.")
    return resolved


def device_for(profile: str) -> str:
    """`cuda` in the full profile, `cpu` in tiny: the only place a notebook's device comes from."""
    return "cuda" if resolve_profile(profile, announce=False) == "full" else "cpu"


def compute_dtype(device: str | None = None):
    """The dtype to compute in: bf16 where the GPU supports it, fp16 on older GPUs (T4), fp32 on CPU.

    >>> compute_dtype("cpu")
    torch.float32
    """
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32
