"""preflight stops the full profile early with the reason; tiny passes untouched.

The GPU is simulated at torch's level (tests/simulated_gpus.py), so preflight asks torch as it does on
a real card; a machine without CUDA is this CPU-only test machine itself.
"""

import pytest
from simulated_gpus import simulate_gpu

import helpers


def test_tiny_checks_nothing():
    assert helpers.preflight("llama-2-7b-chat", "tiny").ok


def test_full_without_cuda():
    # this machine: a CPU-only torch and no GPU attached
    with pytest.raises(helpers.PreflightError, match="needs a CUDA GPU.*PROFILE = 'tiny'"):
        helpers.preflight("llama-2-7b-chat", "full", device_nodes=(), tools=())


def test_gated_model_without_token():
    with simulate_gpu("A100"):
        with pytest.raises(helpers.PreflightError, match="gated.*HF_TOKEN"):
            helpers.preflight("mistral-7b-instruct", "full", token="")
        assert helpers.preflight("mistral-7b-instruct", "full", token="hf_x").ok


def test_seed_qlora_fits_a_t4_but_full_finetuning_does_not():
    with simulate_gpu("T4"):
        report = helpers.preflight("llama-2-7b-chat", "full", method="qlora", batch_size=4, seq_len=512, token="")
        assert report.ok and report.estimate.total_gib < 15
        with pytest.raises(helpers.PreflightError, match="full fine-tuning.*needs about .* GiB but Tesla T4") as err:
            helpers.preflight("llama-2-7b-chat", "full", method="full", token="")
    assert [s.fits for s in err.value.steps] == [False]


def test_oversized_batch_is_stopped_on_a_t4():
    with simulate_gpu("T4"), pytest.raises(helpers.PreflightError, match="batch 64 × 2048"):
        helpers.preflight("llama-2-7b-chat", "full", batch_size=64, seq_len=2048, token="")


def test_report_names_card_dtype_versions_and_steps():
    with simulate_gpu("T4"):
        text = str(helpers.preflight("llama-2-7b-chat", "full", token="", merge=True))
    assert "Tesla T4 (compute capability 7.5, fp16 only" in text
    assert "CUDA 12.8" in text and "training: QLoRA r=64 on q/k/v/o" in text and "16-bit reload + merge" in text


def test_unknown_key_and_method():
    with pytest.raises(ValueError, match="Unknown model key 'llama-9'.*llama-2-7b-chat"):
        helpers.preflight("llama-9", "tiny")
    with pytest.raises(ValueError, match="Unknown method 'prefix'"):
        helpers.preflight("llama-2-7b-chat", "tiny", method="prefix")
