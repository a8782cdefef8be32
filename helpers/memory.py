"""Memory reports in GiB (2**30 bytes): CUDA allocator figures on a GPU, process RSS on CPU.

"Reserved" is what PyTorch's caching allocator holds from the driver (what nvidia-smi sees, and
what runs out); "allocated" is what live tensors use. On CPU there is no allocator to ask, so the
report gives the resident set size of this process and says plainly that it is CPU.

>>> r = memory_report("cpu")
>>> r.device, r.rss_gib > 0
('cpu', True)
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

from .constants import GIB


@dataclass
class MemoryReport:
    device: str  # "cuda:0 (Tesla T4)" or "cpu"
    allocated_gib: float | None = None
    reserved_gib: float | None = None
    peak_reserved_gib: float | None = None
    free_gib: float | None = None
    total_gib: float | None = None
    rss_gib: float | None = None  # CPU only

    @property
    def is_cuda(self) -> bool:
        return self.total_gib is not None

    @property
    def reserved_pct(self) -> float | None:
        return 100 * self.reserved_gib / self.total_gib if self.is_cuda and self.total_gib else None

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs, the one source for both the text and the HTML rendering."""
        if not self.is_cuda:
            return [("device", "CPU (no CUDA GPU)"), ("process RSS", f"{self.rss_gib:.2f} GiB")]
        pct = lambda x: f"{x:.2f} GiB ({100 * x / self.total_gib:.1f} % of card)"  # noqa: E731
        return [("device", self.device), ("allocated", pct(self.allocated_gib)),
                ("reserved", pct(self.reserved_gib)), ("peak reserved", pct(self.peak_reserved_gib)),
                ("free", pct(self.free_gib)), ("total", f"{self.total_gib:.2f} GiB")]

    def __str__(self) -> str:
        return "\n".join(f"{k:>14}: {v}" for k, v in self.rows())

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{v}</td></tr>" for k, v in self.rows())
        return f"<table>{body}</table>"


def _rss_gib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / GIB


def memory_report(device=None, *, cuda=None) -> MemoryReport:
    """Memory of `device` ("cuda", "cuda:1", "cpu"; default: CUDA if present). `cuda` is the
    torch.cuda-like module to ask (tests pass a fake)."""
    import torch

    cuda = cuda or torch.cuda
    if device is None:
        device = "cuda" if cuda.is_available() else "cpu"
    device = str(device)
    if not device.startswith("cuda") or not cuda.is_available():
        return MemoryReport(device="cpu", rss_gib=_rss_gib())
    idx = int(device.split(":")[1]) if ":" in device else 0
    free, total = cuda.mem_get_info(idx)
    return MemoryReport(
        device=f"cuda:{idx} ({cuda.get_device_name(idx)})",
        allocated_gib=cuda.memory_allocated(idx) / GIB,
        reserved_gib=cuda.memory_reserved(idx) / GIB,
        peak_reserved_gib=cuda.max_memory_reserved(idx) / GIB,
        free_gib=free / GIB,
        total_gib=total / GIB,
    )


@dataclass
class PeakMemory:
    """Filled in when the `track_peak_memory` block exits."""

    device: str = ""
    peak_allocated_gib: float = 0.0
    peak_reserved_gib: float = 0.0  # on CPU: peak process RSS seen by a sampler
    start_gib: float = 0.0
    delta_gib: float = 0.0  # peak minus what was in use at the start
    total_gib: float | None = None
    seconds: float = 0.0

    @property
    def pct_of_card(self) -> float | None:
        return 100 * self.peak_reserved_gib / self.total_gib if self.total_gib else None

    def __str__(self) -> str:
        if self.total_gib is None:
            return (f"CPU run: peak process RSS {self.peak_reserved_gib:.2f} GiB "
                    f"(+{self.delta_gib:.2f} GiB during the block), {self.seconds:.1f} s")
        return (f"{self.device}: peak reserved {self.peak_reserved_gib:.2f} GiB = {self.pct_of_card:.1f} % of "
                f"{self.total_gib:.2f} GiB (peak allocated {self.peak_allocated_gib:.2f} GiB, "
                f"+{self.delta_gib:.2f} GiB during the block), {self.seconds:.1f} s")


def children_rss_gib() -> float:
    """Summed RSS of this process's descendants (e.g. a notebook's kernel tree), in GiB."""
    import psutil

    total = 0
    for child in psutil.Process().children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:  # exited between listing and asking
            pass
    return total / GIB


class RssSampler:
    """Samples `measure()` (GiB; default: this process's RSS) in a thread and keeps the peak:
    CPU memory has no allocator peak counter to ask.

    >>> with RssSampler(interval=0.01) as s:
    ...     pass
    >>> s.peak > 0
    True
    """

    def __init__(self, interval: float = 0.02, measure=None):
        import threading

        self.measure = measure or _rss_gib
        self.interval, self.peak = interval, self.measure()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.measure())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.measure())


@contextmanager
def track_peak_memory(device=None, *, cuda=None):
    """Measure the peak memory of the block: resets CUDA peak stats on entry, fills the result on exit.

    >>> with track_peak_memory("cpu") as peak:
    ...     x = bytearray(10 * 2**20)
    >>> peak.device, peak.peak_reserved_gib > 0
    ('cpu', True)
    """
    import torch

    cuda = cuda or torch.cuda
    if device is None:
        device = "cuda" if cuda.is_available() else "cpu"
    result = PeakMemory(device=str(device))
    t0 = time.perf_counter()
    if str(device).startswith("cuda") and cuda.is_available():
        idx = int(str(device).split(":")[1]) if ":" in str(device) else 0
        cuda.synchronize(idx)
        cuda.reset_peak_memory_stats(idx)
        result.start_gib = cuda.memory_reserved(idx) / GIB
        try:
            yield result
        finally:
            cuda.synchronize(idx)
            result.peak_allocated_gib = cuda.max_memory_allocated(idx) / GIB
            result.peak_reserved_gib = cuda.max_memory_reserved(idx) / GIB
            result.total_gib = cuda.mem_get_info(idx)[1] / GIB
            result.device = f"cuda:{idx} ({cuda.get_device_name(idx)})"
            result.delta_gib = result.peak_reserved_gib - result.start_gib
            result.seconds = time.perf_counter() - t0
    else:
        result.device = "cpu"
        result.start_gib = _rss_gib()
        sampler = RssSampler().__enter__()
        try:
            yield result
        finally:
            sampler.__exit__(None, None, None)
            result.peak_reserved_gib = result.peak_allocated_gib = sampler.peak
            result.delta_gib = sampler.peak - result.start_gib
            result.seconds = time.perf_counter() - t0


def free_memory() -> MemoryReport:
    """Collect garbage and hand cached CUDA blocks back to the driver (after `del model, trainer`);
    returns the memory report afterwards.

    >>> free_memory().device
    'cpu'
    """
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return memory_report()
