"""preflight stops the full profile early with the reason; tiny passes untouched."""

import pytest

import helpers
from helpers.device import CudaInfo
from helpers.preflight import _NO_CUDA

T4 = CudaInfo("Tesla T4", total_gib=15.0, free_gib=14.6, capability=(7, 5), bf16=False)
A100 = CudaInfo("NVIDIA A100-SXM4-80GB", total_gib=80.0, free_gib=79.0, capability=(8, 0), bf16=True)


def test_tiny_checks_nothing():
    assert helpers.preflight("llama-2-7b-chat", "tiny").ok


def test_full_without_cuda():
    with pytest.raises(helpers.PreflightError, match="needs a CUDA GPU.*PROFILE = 'tiny'"):
        helpers.preflight("llama-2-7b-chat", "full", cuda=_NO_CUDA)


def test_bf16_on_a_t4():
    with pytest.raises(helpers.PreflightError, match="bf16.*Tesla T4"):
        helpers.preflight("llama-2-7b-chat", "full", bf16=True, cuda=T4, token="x")


def test_gated_model_without_token():
    with pytest.raises(helpers.PreflightError, match="gated.*HF_TOKEN"):
        helpers.preflight("mistral-7b-instruct", "full", cuda=A100, token="")
    assert helpers.preflight("mistral-7b-instruct", "full", cuda=A100, token="hf_x").ok


def test_seed_qlora_fits_a_t4_but_full_finetuning_does_not():
    report = helpers.preflight("llama-2-7b-chat", "full", method="qlora", batch_size=4, seq_len=512, cuda=T4, token="")
    assert report.ok and report.estimate.total_gib < 15
    with pytest.raises(helpers.PreflightError, match="full fine-tuning.*needs about .* GiB but Tesla T4"):
        helpers.preflight("llama-2-7b-chat", "full", method="full", cuda=T4, token="")


def test_oversized_batch_is_stopped_on_a_t4():
    with pytest.raises(helpers.PreflightError, match="batch 64 × 2048"):
        helpers.preflight("llama-2-7b-chat", "full", batch_size=64, seq_len=2048, cuda=T4, token="")


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown model key 'llama-9'.*llama-2-7b-chat"):
        helpers.preflight("llama-9", "tiny")
