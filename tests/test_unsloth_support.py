"""helpers.unsloth_support: the gate of lecture 04's Unsloth half, its CUDA branch exercised with fakes."""

from __future__ import annotations

import types

import torch

from helpers.unsloth_support import unsloth_available


def _spec_found(name):
    return object()


def test_no_cuda_says_so():
    assert unsloth_available(cuda_available=lambda: False) == (False, "Unsloth needs a CUDA GPU; none found.")


def test_real_machine_without_cuda_is_refused():
    if torch.cuda.is_available():
        return  # on a GPU machine the answer depends on the installed extra
    ok, reason = unsloth_available()
    assert not ok and "CUDA GPU" in reason


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
