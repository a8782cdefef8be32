"""The project's real code on four GPUs that torch itself reports (tests/simulated_gpus.py).

Expected: fp16 on the T4 (compute capability 7.5), bf16 on the L4, A100 and H100 — although torch's
own `is_bf16_supported()` says True on all four — and every lecture's full recipe passes preflight.
"""

import re
from pathlib import Path

import pytest
import torch
from simulated_gpus import (
    CARDS,
    LECTURES,
    MERGES,
    cuda_build_without_driver,
    run_preflight,
    simulate_gpu,
    t4_table,
    torch_without_cuda_build,
)

import helpers
from helpers.device import supports_bf16, torch_build, unsloth_dtype
from helpers.sft import precision_flags

ROOT = Path(__file__).resolve().parents[1]
BF16 = {"T4": False, "L4": True, "A100": True, "H100": True}


@pytest.fixture(params=sorted(CARDS))
def card(request):
    with simulate_gpu(request.param) as c:
        yield request.param, c


def test_torch_itself_reports_the_card(card):
    key, c = card
    assert torch.cuda.is_available() and torch.cuda.device_count() == 1 and torch.cuda.current_device() == 0
    assert torch.cuda.get_device_name(0) == c.name
    assert torch.cuda.get_device_capability() == c.capability
    free, total = torch.cuda.mem_get_info(0)
    assert total == c.total_gib * 2**30 and free < total
    # the trap: torch's default answer counts emulation, so it says True on the T4 as well
    assert torch.cuda.is_bf16_supported() is True
    assert torch.cuda.is_bf16_supported(including_emulation=False) is BF16[key]


def test_leaves_torch_as_it_was():
    with simulate_gpu("A100"):
        assert torch.cuda.is_available()
    assert not torch.cuda.is_available() and torch.version.cuda is None and not torch.cuda.is_initialized()


def test_compute_dtype_is_fp16_on_a_t4_and_bf16_from_ampere_on(card):
    key, _ = card
    want = torch.bfloat16 if BF16[key] else torch.float16
    assert helpers.compute_dtype("cuda") == want
    assert helpers.compute_dtype() == want  # device None: CUDA is present
    assert helpers.compute_dtype("cpu") == torch.float32
    assert supports_bf16() is BF16[key]


def test_cuda_info(card):
    key, c = card
    info = helpers.cuda_info()
    assert (info.name, info.capability, info.bf16) == (c.name, c.capability, BF16[key])
    assert info.total_gib == pytest.approx(c.total_gib) and info.free_gib == pytest.approx(c.free_gib)


def test_precision_flags_and_4bit_compute_dtype_follow_the_card(card):
    from helpers.sft import bnb_config

    key, _ = card
    half = torch.bfloat16 if BF16[key] else torch.float16
    assert precision_flags(helpers.compute_dtype("cuda")) == {"bf16": BF16[key], "fp16": not BF16[key]}
    assert bnb_config("cuda").bnb_4bit_compute_dtype == half  # what lectures 03-05 quantize with


def test_unsloth_loads_in_the_dtype_the_lecture_trains_in(card):
    """Lecture 04 passes DTYPE to FastLanguageModel.from_pretrained and precision_flags(DTYPE) to the
    trainer; Unsloth keeps a dtype it supports and turns bf16 into fp16 below capability 8."""
    key, _ = card
    dtype = helpers.compute_dtype("cuda")
    assert unsloth_dtype(dtype) == dtype  # Unsloth keeps it, so trainer flags and model dtype agree
    assert unsloth_dtype(None) == (torch.bfloat16 if BF16[key] else torch.float16)
    if not BF16[key]:
        assert unsloth_dtype(torch.bfloat16) == torch.float16  # what the old code's bf16 request became


@pytest.mark.parametrize("lecture", sorted(LECTURES))
def test_every_lecture_passes_preflight_with_its_full_settings(card, lecture):
    key, c = card
    report = run_preflight(lecture, merge=lecture in MERGES, token="")
    assert report.ok and report.gpu.name == c.name and report.gpu.bf16 is BF16[key]
    assert [s.name for s in report.steps] == ["training"] + (["16-bit reload + merge"] if lecture in MERGES else [])
    assert all(s.fits for s in report.steps)
    assert "torch " + torch.__version__ in str(report) and "CUDA 12.8" in str(report)


def test_the_bf16_guard_fires_on_a_t4():
    with simulate_gpu("T4"):
        with pytest.raises(helpers.PreflightError, match="bf16 was requested but Tesla T4 .compute capability 7.5"):
            run_preflight("03", bf16=True, token="")
    with simulate_gpu("L4"):
        assert run_preflight("03", bf16=True, token="").ok


def test_the_merge_step_is_checked():
    """Llama 3.1 8B trains in 4-bit on a T4, but its 16-bit reload (~15 GiB) for a merge does not fit."""
    with simulate_gpu("T4"):
        assert helpers.preflight("llama-3.1-8b-instruct", "full", token="").ok
        with pytest.raises(helpers.PreflightError, match="16-bit reload \\+ merge needs about 1[5-9].* GiB but Tesla T4"):
            helpers.preflight("llama-3.1-8b-instruct", "full", token="", merge=True)
    with simulate_gpu("A100"):
        assert helpers.preflight("llama-3.1-8b-instruct", "full", token="", merge=True).ok


def test_lecture_03_merge_is_tight_on_a_t4():
    with simulate_gpu("T4") as c:
        merge = run_preflight("03", merge=True, token="").steps[1]
    assert 12.55 < merge.estimate.weights_gib < merge.estimate.total_gib < c.free_gib


def test_gpu_attached_but_torch_is_a_cpu_build(tmp_path):
    node = tmp_path / "nvidia0"
    node.touch()
    with torch_without_cuda_build():
        build = torch_build(device_nodes=[str(node)], tools=())
        assert (build.cuda, build.cuda_available, build.gpu_attached) == (None, False, True)
        with pytest.raises(helpers.PreflightError, match="A GPU is attached but torch .* was built without CUDA"):
            helpers.preflight("llama-2-7b-chat", "full", device_nodes=[str(node)], tools=(), token="")
        # no device node, no driver tool: simply no GPU
        with pytest.raises(helpers.PreflightError, match="needs a CUDA GPU, but none was found .torch .*no CUDA"):
            helpers.preflight("llama-2-7b-chat", "full", device_nodes=[str(tmp_path / "absent")], tools=(), token="")


def test_gpu_attached_but_the_driver_is_too_old_for_torch(tmp_path):
    node = tmp_path / "nvidia0"
    node.touch()
    with cuda_build_without_driver("13.0"):
        assert not torch.cuda.is_available()
        with pytest.raises(helpers.PreflightError,
                           match=r"attached but torch .* \(CUDA 13.0\) cannot use it.*driver"):
            helpers.preflight("llama-2-7b-chat", "full", device_nodes=[str(node)], tools=(), token="")


def test_readme_t4_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"### What a T4 can run \(preflight verdicts\)\n(.*?)\n## GPU figures", readme, re.S)
    assert section, "README lacks the 'What a T4 can run (preflight verdicts)' subsection before '## GPU figures'"
    assert t4_table() in section.group(1), "regenerate it: python -m tests.simulated_gpus"


def test_auto_falling_back_to_tiny_says_why_when_a_gpu_is_attached(tmp_path, monkeypatch, capsys):
    """Colab with a torch its driver cannot run: `auto` becomes `tiny`, and the student is told why."""
    node = tmp_path / "nvidia0"
    node.touch()
    monkeypatch.setattr("helpers.device.NVIDIA_DEVICE_NODES", (str(node),))  # where the driver's node is
    with cuda_build_without_driver("13.0"):
        assert helpers.resolve_profile("auto") == "tiny"
        out = capsys.readouterr().out
        report = str(helpers.preflight("llama-2-7b-chat", "auto", device_nodes=[str(node)], tools=()))
    assert "PROFILE='auto' -> 'tiny'" in out and "WARNING: A GPU is attached but torch" in out
    assert "nothing to check" in report and "CUDA 13.0" in report and "WARNING: A GPU is attached" in report
    with simulate_gpu("T4"):  # torch can use the card: no warning
        assert "WARNING" not in str(helpers.preflight("llama-2-7b-chat", "tiny", token=""))
