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
import shutil
from dataclasses import dataclass

from .constants import BF16_MIN_CAPABILITY, GIB, NVIDIA_DEVICE_NODES, NVIDIA_TOOLS, OFFLINE_ENV, PROFILES


@dataclass(frozen=True)
class CudaInfo:
    """What the first CUDA device offers (GiB are 2**30 bytes)."""

    name: str
    total_gib: float
    free_gib: float
    capability: tuple[int, int]
    bf16: bool


def supports_bf16(capability: tuple[int, int] | None = None) -> bool:
    """True when the GPU computes in bf16 natively: compute capability >= 8.0 (Ampere and newer).

    The one place the course decides bf16. `torch.cuda.is_bf16_supported()` is not it: since torch 2.3
    it defaults to `including_emulation=True` and answers True on a T4 (7.5), where bf16 runs emulated
    and slowly and Unsloth switches to fp16 (see `unsloth_dtype`). With no `capability`, CUDA device 0
    is asked (False without CUDA).

    >>> supports_bf16((7, 5)), supports_bf16((8, 0)), supports_bf16((8, 9)), supports_bf16((9, 0))
    (False, True, True, True)
    """
    if capability is None:
        import torch

        if not torch.cuda.is_available():
            return False
        capability = torch.cuda.get_device_capability(0)
    return tuple(capability) >= BF16_MIN_CAPABILITY


def cuda_info() -> CudaInfo | None:
    """Facts about CUDA device 0, or None when there is no usable CUDA GPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(0)
    capability = tuple(torch.cuda.get_device_capability(0))
    return CudaInfo(
        name=torch.cuda.get_device_name(0),
        total_gib=total / GIB,
        free_gib=free / GIB,
        capability=capability,
        bf16=supports_bf16(capability),
    )


@dataclass(frozen=True)
class TorchBuild:
    """Which torch this is, what CUDA it was built for, and whether it can use the GPU that is attached."""

    torch: str
    cuda: str | None  # torch.version.cuda: None for a CPU-only build
    cuda_available: bool  # torch.cuda.is_available()
    gpu_attached: bool  # an NVIDIA device node or driver tool exists on this machine

    @property
    def problem(self) -> str | None:
        """Why torch cannot use the attached GPU, in words a student can act on; None when all is well.

        >>> print(TorchBuild("2.13.0+cpu", None, False, True).problem)  # doctest: +ELLIPSIS
        A GPU is attached but torch 2.13.0+cpu was built without CUDA...
        >>> print(TorchBuild("2.13.0", "12.8", False, True).problem)  # doctest: +ELLIPSIS
        A GPU is attached but torch 2.13.0 (CUDA 12.8) cannot use it...
        >>> TorchBuild("2.13.0", "12.8", True, True).problem is None
        True
        """
        if self.cuda_available or not self.gpu_attached:
            return None
        if self.cuda is None:
            return (f"A GPU is attached but torch {self.torch} was built without CUDA, so it cannot use it. "
                    "Install a CUDA build of torch (on Colab: keep the runtime's own torch; do not reinstall it).")
        return (f"A GPU is attached but torch {self.torch} (CUDA {self.cuda}) cannot use it: "
                "torch.cuda.is_available() is False. The NVIDIA driver is probably older than this CUDA build "
                "needs (compare `nvidia-smi` with torch.version.cuda); on Colab keep the runtime's torch.")

    def __str__(self) -> str:
        cuda = f"CUDA {self.cuda}" if self.cuda else "no CUDA (CPU-only build)"
        return f"torch {self.torch}, {cuda}, torch.cuda.is_available() = {self.cuda_available}"


def gpu_attached(device_nodes=None, tools=None) -> bool:
    """Whether an NVIDIA GPU is visible to the operating system, whatever torch thinks: a device node
    such as /dev/nvidia0 exists, or the driver's tool (nvidia-smi) is on PATH (defaults: the constants
    NVIDIA_DEVICE_NODES and NVIDIA_TOOLS)."""
    device_nodes = NVIDIA_DEVICE_NODES if device_nodes is None else device_nodes
    tools = NVIDIA_TOOLS if tools is None else tools
    return any(os.path.exists(p) for p in device_nodes) or any(shutil.which(t) for t in tools)


def torch_build(device_nodes=None, tools=None) -> TorchBuild:
    """This process's torch: version, CUDA build, availability, and whether a GPU is attached anyway."""
    import torch

    return TorchBuild(torch=torch.__version__, cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
                      gpu_attached=gpu_attached(device_nodes, tools))


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
            problem = torch_build().problem if resolved == "tiny" else None
            if problem:  # e.g. Colab's GPU with a reinstalled torch its driver cannot run
                print(f"WARNING: {problem}")
        else:
            print(f"PROFILE='{resolved}'.")
        if resolved == "tiny":
            print("Tiny profile: offline stand-in models and shipped data, on CPU, in seconds.")
    return resolved


def device_for(profile: str) -> str:
    """`cuda` in the full profile, `cpu` in tiny: the only place a notebook's device comes from."""
    return "cuda" if resolve_profile(profile, announce=False) == "full" else "cpu"


def compute_dtype(device: str | None = None):
    """The dtype to compute in: bf16 on compute capability >= 8.0 (`supports_bf16`), fp16 on older GPUs
    (a T4), fp32 on CPU.

    >>> compute_dtype("cpu")
    torch.float32
    """
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda"):
        return torch.bfloat16 if supports_bf16() else torch.float16
    return torch.float32


def unsloth_dtype(requested=None, capability: tuple[int, int] | None = None):
    """The dtype Unsloth's `FastLanguageModel.from_pretrained(dtype=requested)` loads in on a GPU of
    `capability` (default: CUDA device 0) — Unsloth's rule, restated so the course can check it agrees.

    Source: the pinned unsloth 2026.10.9 (the PyPI wheel; the same rule is in unslothai/unsloth at
    015bdef, 2026.8.19):
    - `unsloth/models/_utils.py` (~line 4335): on CUDA, `SUPPORTS_BFLOAT16 = _bf16_cap is not None and
      _bf16_cap[0] >= 8` (the compute capability's major version); `is_bfloat16_supported()` (~line 5273)
      returns it (per device when the cards of one host differ);
    - `unsloth/_gpu_init.py` (~line 557): the same `>= 8` test for the process-wide flag;
    - `unsloth/models/llama.py` (`FastLlamaModel.from_pretrained`, ~line 3601) and
      `unsloth/models/loader.py` (~line 2294): `if dtype is None: dtype = torch.float16 if not
      SUPPORTS_BFLOAT16 else torch.bfloat16`; `elif dtype == torch.bfloat16 and not SUPPORTS_BFLOAT16`
      (and not XPU): warn "Device does not support bfloat16. Will change to float16." and use
      `torch.float16`; any other request is kept.

    A trainer given bf16=True on a model Unsloth loaded in fp16 fails ("Model is in float16 precision but
    you want to use bfloat16"), so lecture 04 must pass a dtype this function leaves unchanged.

    >>> import torch
    >>> unsloth_dtype(None, (7, 5)), unsloth_dtype(torch.bfloat16, (7, 5)), unsloth_dtype(None, (8, 0))
    (torch.float16, torch.float16, torch.bfloat16)
    >>> unsloth_dtype(torch.float16, (9, 0))  # a request Unsloth can honour is kept
    torch.float16
    """
    import torch

    if capability is None:
        capability = torch.cuda.get_device_capability()
    supports = capability[0] >= 8  # Unsloth compares the major version only
    if requested is None:
        return torch.bfloat16 if supports else torch.float16
    if requested == torch.bfloat16 and not supports:
        return torch.float16
    return requested
