"""memory_report / track_peak_memory: the CUDA branch with a fake torch.cuda, the CPU branch for real."""

import time

import pytest

import helpers

GIB = 2**30


class FakeCuda:
    """Just enough of torch.cuda for the memory helpers: a 15 GiB T4 with a live allocator."""

    def __init__(self):
        self.allocated, self.reserved, self.peak_alloc, self.peak_res = 2 * GIB, 3 * GIB, 2 * GIB, 3 * GIB
        self.total = 15 * GIB

    def is_available(self): return True
    def get_device_name(self, i=0): return "Tesla T4"
    def mem_get_info(self, i=0): return (self.total - self.reserved, self.total)
    def memory_allocated(self, i=0): return self.allocated
    def memory_reserved(self, i=0): return self.reserved
    def max_memory_allocated(self, i=0): return self.peak_alloc
    def max_memory_reserved(self, i=0): return self.peak_res
    def synchronize(self, i=0): pass

    def reset_peak_memory_stats(self, i=0):
        self.peak_alloc, self.peak_res = self.allocated, self.reserved

    def allocate(self, nbytes):
        self.allocated += nbytes
        self.reserved += nbytes
        self.peak_alloc = max(self.peak_alloc, self.allocated)
        self.peak_res = max(self.peak_res, self.reserved)


def test_cuda_report_in_gib_and_percent():
    r = helpers.memory_report("cuda", cuda=FakeCuda())
    assert r.is_cuda and r.device == "cuda:0 (Tesla T4)"
    assert (r.allocated_gib, r.reserved_gib, r.free_gib, r.total_gib) == (2, 3, 12, 15)
    assert r.reserved_pct == pytest.approx(20.0)
    text = str(r)
    assert "3.00 GiB (20.0 % of card)" in text and "GB" not in text.replace("GiB", "")
    assert "<table>" in r._repr_html_()


def test_cpu_report_says_cpu():
    r = helpers.memory_report("cpu")
    assert not r.is_cuda and r.rss_gib > 0
    assert "CPU" in str(r) and "RSS" in str(r)


def test_track_peak_cuda_resets_and_measures():
    cuda = FakeCuda()
    cuda.peak_res = 10 * GIB  # a stale peak from before: must be reset on entry
    with helpers.track_peak_memory("cuda", cuda=cuda) as peak:
        cuda.allocate(4 * GIB)
        cuda.allocated -= 4 * GIB
    assert peak.peak_reserved_gib == pytest.approx(7)
    assert peak.delta_gib == pytest.approx(4)
    assert peak.pct_of_card == pytest.approx(100 * 7 / 15)
    assert "% of" in str(peak)


def test_track_peak_cpu_sees_an_allocation():
    with helpers.track_peak_memory("cpu") as peak:
        block = bytearray(300 * 2**20)  # 300 MiB, touched
        block[::4096] = b"x" * len(block[::4096])
        time.sleep(0.2)  # a sampler sees what lives across its ticks (every 0.02 s)
        del block
    assert peak.device == "cpu" and peak.total_gib is None
    assert peak.delta_gib > 0.2
    assert "CPU" in str(peak)


def test_track_peak_fills_result_even_when_block_raises():
    with pytest.raises(ZeroDivisionError):
        with helpers.track_peak_memory("cpu") as peak:
            1 / 0
    assert peak.peak_reserved_gib > 0
