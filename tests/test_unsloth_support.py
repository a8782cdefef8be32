"""helpers.unsloth_support: the gate of lecture 04's Unsloth half, its CUDA branch exercised with fakes."""

from __future__ import annotations

import importlib.util
import types

import pytest
import torch

from helpers.unsloth_support import unsloth_available


def _spec_found(name):
    return object()


def test_no_cuda_says_so():
    assert unsloth_available(cuda_available=lambda: False) == (False, "Unsloth needs a CUDA GPU; none found.")


def test_real_machine_without_cuda_is_refused():
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU; test_real_gpu_machine covers it")
    ok, reason = unsloth_available()
    assert not ok and "CUDA GPU" in reason


@pytest.mark.gpu
def test_real_gpu_machine():
    """On a CUDA machine the real check agrees with what is installed: with the GPU extra, unsloth
    imports and reports its version; without it, the reason names requirements-gpu.txt."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    ok, reason = unsloth_available()
    if importlib.util.find_spec("unsloth") is None:
        assert (ok, reason) == (False, "unsloth is not installed (pip install -r requirements-gpu.txt).")
    else:
        import unsloth

        assert ok, reason
        assert reason == f"unsloth {unsloth.__version__} imported"


def test_cuda_but_not_installed():
    ok, reason = unsloth_available(cuda_available=lambda: True, find_spec=lambda name: None)
    assert not ok
    assert reason == "unsloth is not installed (pip install -r requirements-gpu.txt)."


def test_cuda_but_import_fails():
    def broken(name):
        raise NotImplementedError("Unsloth: No NVIDIA GPU found?\nmore detail")

    ok, reason = unsloth_available(cuda_available=lambda: True, find_spec=_spec_found, import_module=broken)
    assert not ok
    assert reason == "unsloth failed to import: NotImplementedError: Unsloth: No NVIDIA GPU found?"


def test_cuda_and_importable():
    fake = types.SimpleNamespace(__version__="2026.10.9")
    seen = []
    ok, reason = unsloth_available(cuda_available=lambda: True, find_spec=_spec_found,
                                   import_module=lambda name: seen.append(name) or fake)
    assert ok and reason == "unsloth 2026.10.9 imported" and seen == ["unsloth"]
