"""memory_report / track_peak_memory: the CUDA branch on a GPU that torch itself reports (its caching
allocator's statistics driven by the test, tests/simulated_gpus.py), the CPU branch for real."""

import time

import pytest
import torch
from simulated_gpus import simulate_gpu

import helpers

GIB = 2**30


def test_cuda_report_in_gib_and_percent():
    with simulate_gpu("T4") as gpu:
        gpu.allocator.allocate(3 * GIB)
        gpu.allocator.free(1 * GIB)  # 2 GiB live, 3 GiB kept by the caching allocator
        r = helpers.memory_report()
    assert r.is_cuda and r.device == "cuda:0 (Tesla T4)"
    assert (r.allocated_gib, r.reserved_gib, r.peak_reserved_gib, r.total_gib) == (2, 3, 3, 15)
    assert r.free_gib == pytest.approx(15 - 0.25 - 3)  # the card minus the CUDA context minus reserved
    assert r.reserved_pct == pytest.approx(20.0)
    text = str(r)
    assert "3.00 GiB (20.0 % of card)" in text and "GB" not in text.replace("GiB", "")
    assert "<table>" in r._repr_html_()


def test_cpu_report_says_cpu():
    r = helpers.memory_report("cpu")
    assert not r.is_cuda and r.rss_gib > 0
    assert "CPU" in str(r) and "RSS" in str(r)


def test_track_peak_cuda_resets_and_measures():
    with simulate_gpu("T4") as gpu:
        gpu.allocator.allocate(10 * GIB)
        gpu.allocator.free(7 * GIB)
        torch.cuda.empty_cache()  # 3 GiB live; a stale 10 GiB peak from before: must be reset on entry
        with helpers.track_peak_memory("cuda") as peak:
            gpu.allocator.allocate(4 * GIB)
            gpu.allocator.free(4 * GIB)
        helpers.free_memory()
        assert torch.cuda.memory_reserved() == 3 * GIB  # free_memory emptied the cache
    assert peak.peak_reserved_gib == pytest.approx(7) and peak.peak_allocated_gib == pytest.approx(7)
    assert peak.delta_gib == pytest.approx(4)
    assert peak.pct_of_card == pytest.approx(100 * 7 / 15)
    assert "% of" in str(peak) and "Tesla T4" in str(peak)


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
