"""Simulated GPUs at torch's own level, and the lectures' full settings read from their notebooks.

`simulate_gpu(card)` makes *torch itself* report a card on this CPU-only machine. It replaces only
what the CUDA driver/runtime would answer — the `torch._C` bindings (`_cuda_getDeviceCount`,
`_cuda_getDevice`), the device-properties call, `cudart().cudaMemGetInfo`, the NVML device count
(absent: torch falls back to the runtime count) and torch's bf16 probe `_check_bf16_tensor_supported`
(allocating a bf16 tensor succeeds on every CUDA card, a T4 included) — and marks CUDA initialised.
Everything above that is torch's real code: `torch.cuda.is_available`, `device_count`,
`get_device_properties`, `get_device_capability`, `get_device_name`, `mem_get_info`, `current_device`,
`is_bf16_supported`, `memory_allocated`/`memory_reserved`/`max_memory_*`, `reset_peak_memory_stats`,
`synchronize` and `empty_cache` run unchanged; the caching allocator's statistics come from an
`Allocator` the test drives (`simulate_gpu(...).allocator.allocate(n)`). So `torch.cuda.is_bf16_supported()` answers True on the
simulated T4, as it does on a real one (torch 2.13 defaults to `including_emulation=True`).

Nothing can run *on* the simulated card: a kernel launch or `.to("cuda")` still fails. The fixture is
for code that asks torch what the card is (dtype choice, preflight, trainer configuration).

Regenerate the README's T4 table with `python -m tests.simulated_gpus`.
"""

from __future__ import annotations

import ast
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
CUDA_CONTEXT_GIB = 0.25  # what a CUDA context takes before the lesson allocates anything (free < total)


@dataclass(frozen=True)
class Card:
    """The facts a CUDA driver reports about one GPU."""

    name: str
    capability: tuple[int, int]
    total_gib: float
    multi_processor_count: int

    @property
    def free_gib(self) -> float:
        return self.total_gib - CUDA_CONTEXT_GIB


CARDS = {
    "T4": Card("Tesla T4", (7, 5), 15.0, 40),
    "L4": Card("NVIDIA L4", (8, 9), 22.0, 58),
    "A100": Card("NVIDIA A100-SXM4-40GB", (8, 0), 40.0, 108),
    "H100": Card("NVIDIA H100 80GB HBM3", (9, 0), 80.0, 132),
}


@dataclass(frozen=True)
class _Properties:
    """Stands in for torch._C._CudaDeviceProperties (the fields callers read)."""

    name: str
    major: int
    minor: int
    total_memory: int
    multi_processor_count: int
    is_integrated: int = 0
    is_multi_gpu_board: int = 0
    L2_cache_size: int = 4 * 2**20
    gcnArchName: str = "NVIDIA"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"


class Allocator:
    """Stands in for torch's CUDA caching allocator behind `torch._C._cuda_memoryStats` and friends:
    tests call `allocate`/`free` where a lesson would create/drop tensors; reserved memory grows with
    allocations and is kept (cached) until `empty_cache`, as torch's allocator does."""

    def __init__(self):
        self.allocated = self.reserved = self.peak_allocated = self.peak_reserved = 0

    def allocate(self, nbytes: int) -> None:
        self.allocated += nbytes
        self.reserved = max(self.reserved, self.allocated)
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        self.peak_reserved = max(self.peak_reserved, self.reserved)

    def free(self, nbytes: int) -> None:
        self.allocated -= nbytes

    # the torch._C bindings
    def stats(self, device: int) -> dict:
        return {"allocated_bytes": {"all": {"current": self.allocated, "peak": self.peak_allocated}},
                "reserved_bytes": {"all": {"current": self.reserved, "peak": self.peak_reserved}}}

    def reset_peak(self, device: int) -> None:
        self.peak_allocated, self.peak_reserved = self.allocated, self.reserved

    def empty_cache(self) -> None:
        self.reserved = self.allocated


class _CudaRuntime:
    """Stands in for torch._C._cudart: only cudaMemGetInfo is asked (free = total - context - reserved)."""

    def __init__(self, card: Card, allocator: Allocator):
        self.card, self.allocator = card, allocator

    def cudaMemGetInfo(self, device: int) -> tuple[int, int]:  # noqa: N802 - the CUDA runtime's name
        assert device == 0, device
        return int(self.card.free_gib * GIB) - self.allocator.reserved, int(self.card.total_gib * GIB)


@dataclass(frozen=True)
class SimulatedGpu:
    """What `simulate_gpu` yields: the card's facts (as attributes) and its allocator."""

    card: Card
    allocator: Allocator

    def __getattr__(self, name):
        return getattr(self.card, name)


@contextlib.contextmanager
def simulate_gpu(card: Card | str, *, cuda_version: str = "12.8"):
    """Within the block, this process's torch reports one CUDA device, `card` (a Card or a key of CARDS)."""
    import torch

    card = CARDS[card] if isinstance(card, str) else card
    props = _Properties(card.name, *card.capability, int(card.total_gib * GIB), card.multi_processor_count)
    allocator = Allocator()
    with pytest.MonkeyPatch.context() as mp:
        # the driver and runtime
        mp.setattr(torch._C, "_cuda_getDeviceCount", lambda: 1, raising=False)
        mp.setattr(torch._C, "_cuda_getDevice", lambda: 0, raising=False)
        mp.setattr(torch._C, "_cuda_setDevice", lambda i: None, raising=False)
        mp.setattr(torch._C, "_cuda_synchronize", lambda: None, raising=False)
        mp.setattr(torch.cuda, "_exchange_device", lambda i: 0)
        mp.setattr(torch.cuda, "_maybe_exchange_device", lambda i: 0)
        mp.setattr(torch.cuda, "_device_count_nvml", lambda: -1)  # no NVML: torch asks the runtime
        mp.setattr(torch.cuda, "_get_device_properties", lambda i: props, raising=False)
        mp.setattr(torch.cuda, "_cudart", _CudaRuntime(card, allocator))
        # the caching allocator's statistics
        mp.setattr(torch._C, "_cuda_memoryStats", allocator.stats, raising=False)
        mp.setattr(torch._C, "_cuda_resetPeakMemoryStats", allocator.reset_peak, raising=False)
        mp.setattr(torch._C, "_cuda_emptyCache", allocator.empty_cache, raising=False)
        # torch's probe for emulated bf16 allocates a bf16 tensor on the device: that works on any CUDA card
        mp.setattr(torch.cuda, "_check_bf16_tensor_supported", lambda device: True)
        # an initialised CUDA runtime (torch.cuda._lazy_init returns at once), a CUDA build
        mp.setattr(torch.cuda, "_initialized", True)
        mp.setattr(torch.cuda, "_cached_device_count", None)
        mp.setattr(torch.version, "cuda", cuda_version)
        yield SimulatedGpu(card, allocator)


@contextlib.contextmanager
def torch_without_cuda_build():
    """Within the block, torch looks like a CPU-only build (torch.version.cuda is None, no CUDA)."""
    import torch

    with pytest.MonkeyPatch.context() as mp:
        mp.delattr(torch._C, "_cuda_getDeviceCount", raising=False)
        mp.setattr(torch.version, "cuda", None)
        yield


@contextlib.contextmanager
def cuda_build_without_driver(cuda_version: str = "12.8"):
    """Within the block, torch is a CUDA build whose runtime finds no usable device (driver too old or
    missing): `cudaGetDeviceCount` answers 0, as it does then."""
    import torch

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch._C, "_cuda_getDeviceCount", lambda: 0, raising=False)
        mp.setattr(torch.cuda, "_device_count_nvml", lambda: -1)
        mp.setattr(torch.cuda, "_cached_device_count", None)
        mp.setattr(torch.version, "cuda", cuda_version)
        yield


# --- the lectures' full settings, read from their notebooks ----------------------------------------

LECTURES = {
    "00": ROOT / "lectures" / "00_environment_check.ipynb",
    "03": ROOT / "lectures" / "03_qlora_llama2.ipynb",
    "04": ROOT / "lectures" / "04_unsloth_llama31.ipynb",
    "05": ROOT / "lectures" / "05_dpo.ipynb",
}
# Lectures that reload the base model in 16-bit and merge the adapter into it (lecture 03 cell
# "reloaded = AutoPeftModelForCausalLM...merge_and_unload()", lecture 05's SFT merge).
MERGES = {"03", "05"}


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def parameters(lecture: str) -> dict:
    """The names the lecture's `parameters` cell assigns. The cell holds only assignments of literals and
    `dict(...)` (checked with ast), so it is run with no builtins but `dict`."""
    cell = next(c for c in _cells(LECTURES[lecture]) if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id == "dict"):
            raise ValueError(f"lecture {lecture}'s parameters cell calls something other than dict(): "
                             f"{ast.unparse(node)}")
    ns: dict = {"__builtins__": {"dict": dict}}
    exec(compile(tree, f"lecture {lecture} parameters", "exec"), ns)  # noqa: S102
    return {k: v for k, v in ns.items() if k != "__builtins__"}


def preflight_call(lecture: str) -> ast.Call:
    """The lecture's own `helpers.preflight(...)` call, as written in its code cell."""
    for cell in _cells(LECTURES[lecture]):
        if cell["cell_type"] != "code":
            continue
        try:
            tree = ast.parse("".join(cell["source"]))
        except SyntaxError:  # the Colab install cell (shell escapes): no preflight there
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "preflight"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "helpers"):
                return node
    raise LookupError(f"lecture {lecture} has no helpers.preflight(...) call")


def lecture_namespace(lecture: str) -> dict:
    """What the lecture's cells have defined when it calls preflight in the full profile on this machine:
    its parameters, CFG = SETTINGS['full'], DEVICE, DTYPE (from helpers.compute_dtype), helpers, sft, torch."""
    import torch

    import helpers
    from helpers import sft

    ns = parameters(lecture)
    ns.update(PROFILE="full", DEVICE="cuda", DTYPE=helpers.compute_dtype("cuda"), helpers=helpers, sft=sft,
              torch=torch)
    if "SETTINGS" in ns:
        ns["CFG"] = ns["SETTINGS"]["full"]
    return ns


def run_preflight(lecture: str, *, merge: bool = False, **extra):
    """Evaluate the lecture's own preflight call with its full settings (plus keyword `extra`), under
    whatever torch reports now (wrap it in `simulate_gpu`). `merge=True` adds the 16-bit merge step."""
    call = preflight_call(lecture)
    keywords = {k.arg: k for k in call.keywords}
    for name, value in (dict(extra, merge=True) if merge else extra).items():
        keywords[name] = ast.keyword(arg=name, value=ast.Constant(value))
    new = ast.Call(func=call.func, args=call.args, keywords=list(keywords.values()))
    return eval(compile(ast.fix_missing_locations(ast.Expression(new)), f"lecture {lecture}", "eval"),  # noqa: S307
                lecture_namespace(lecture))


def t4_rows() -> list[tuple[str, ...]]:
    """One row per full recipe step: (lecture, step, model, recipe, estimate GiB, verdict) on a T4."""
    import helpers

    rows = []
    with simulate_gpu("T4") as card:
        for lecture in LECTURES:
            try:
                report = run_preflight(lecture, merge=lecture in MERGES, token="")
                steps, error = report.steps, None
            except helpers.PreflightError as err:
                steps, error = getattr(err, "steps", []), err
            for step in steps:
                verdict = "fits" if step.fits else "does NOT fit"
                rows.append((lecture, step.name, step.model, step.recipe, f"{step.estimate.total_gib:.1f}",
                             f"{verdict} ({card.free_gib:.2f} GiB free)"))
            if error is not None and not steps:
                rows.append((lecture, "-", "-", "-", "-", f"stopped: {error}"))
    return rows


def t4_table() -> str:
    """The README's table of every full recipe's preflight verdict on a simulated 15 GiB T4."""
    head = ("lecture", "step", "model", "recipe", "estimate (GiB)", "verdict on a T4")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in t4_rows()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(t4_table())
