"""benchmarks.gpu_recipes: the CPU skip, the HF recipe's measuring path on a tiny shape (CPU), the exit
status of the real main (crash, missed goal, success), and the real recipes on a CUDA GPU (gpu marker)."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks import gpu_recipes
from helpers import sft
from helpers.estimate import lora_parameters
from helpers.models import Shape


def test_skips_without_cuda(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_recipes.main([]) == 0
    assert capsys.readouterr().out.strip() == "no CUDA GPU: skipped (GPU figures not measured)"


def _full_settings(notebook: str) -> dict:
    """SETTINGS["full"] of a lecture's parameters cell, read with ast (the notebook is not run)."""
    import ast
    import json
    from pathlib import Path

    nb = json.loads((Path(__file__).resolve().parents[1] / "lectures" / notebook).read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    node = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "SETTINGS")
    return eval(compile(ast.Expression(node), notebook, "eval"), {"__builtins__": {}, "dict": dict})["full"]


def test_recipes_are_the_lectures_full_settings():
    """The benchmark measures what lectures 03 and 04 run in `full` (read from their parameters cells):
    rank, targets, sequences per pass and per step, optimizer; both Llama 3.1 runs share them."""
    r = {x.name: x for x in gpu_recipes.recipes()}
    l03, l04 = _full_settings("03_qlora_llama2.ipynb"), _full_settings("04_unsloth_llama31.ipynb")
    hf2 = r["hf-llama2"]
    assert (hf2.lora_r, hf2.lora_alpha, hf2.targets) == (l03["lora_r"], l03["lora_alpha"], sft.ATTENTION)
    assert (hf2.batch_size, hf2.grad_accum, hf2.optim) == (l03["batch_size"], l03["grad_accum"], l03["optim"])
    for name in ("hf-llama31", "unsloth-llama31"):
        x = r[name]
        assert (x.lora_r, x.lora_alpha, x.targets) == (l04["lora_r"], l04["lora_alpha"], sft.ALL_LINEAR)
        assert (x.batch_size, x.grad_accum, x.optim) == (l04["batch_size"], l04["grad_accum"], l04["optim"])
    assert r["hf-llama31"].key == r["unsloth-llama31"].key == "llama-3.1-8b-instruct"
    assert l04["batch_size"] * l04["grad_accum"] == 16  # the sequences per step lecture 04 states


def test_hf_recipe_runs_on_a_tiny_shape(tmp_path):
    shape = Shape(64, 128, 2, 4, 2, 1024)
    ckpt = gpu_recipes.build_random_checkpoint("llama-3.1-8b-instruct", tmp_path / "m", shape=shape, device="cpu")
    recipe = gpu_recipes.Recipe("hf-tiny", "llama-3.1-8b-instruct", "hf", 4, ("q_proj", "v_proj"), 2)
    result = gpu_recipes.run_recipe(recipe, ckpt, steps=3, seq_len=16, device="cpu")
    assert result.tokens_per_s > 0 and not math.isnan(result.seconds)
    # 2 timed steps (the first warms up) x 2 rows x 16 tokens, counted from the attention masks
    assert result.tokens == 2 * 2 * 16
    assert result.trainable == lora_parameters(shape, r=4, target_modules=("q_proj", "v_proj")) == 1792
    assert result.device == "cpu"


def test_verdict_compares_only_measured_runs():
    hf = gpu_recipes.Result("hf-llama31", 12.0, 1000.0, 1.0, 10, "cuda:0")
    un = gpu_recipes.Result("unsloth-llama31", 6.0, 2000.0, 1.0, 10, "cuda:0")
    lines = gpu_recipes.verdict({"hf-llama31": hf, "unsloth-llama31": un})
    assert "2.00x tokens/s (goal >= 1.5: yes)" in lines[-1] and "0.50x peak memory (goal <= 0.7: yes)" in lines[-1]
    assert len(gpu_recipes.verdict({"hf-llama31": hf})) == 1  # no ratio without both runs


TINY = (64, 128, 2, 4, 2, 1024)
GOOD = gpu_recipes.Recipe("hf-tiny", "llama-3.1-8b-instruct", "hf", 4, ("q_proj", "v_proj"), 2, shape=TINY)
CRASHES = gpu_recipes.Recipe("hf-broken", "llama-3.1-8b-instruct", "hf", 4, ("no_such_proj",), 2, shape=TINY)
CPU_ARGS = ["--device", "cpu", "--steps", "2", "--seq-len", "8"]


def test_main_exit_status_follows_the_verdict(tmp_path, capsys, monkeypatch):
    """The real main, its recipe in a child process: 0 when the run meets its goals; 1 when the same
    run is over budget (a "NO" verdict)."""
    assert gpu_recipes.main([*CPU_ARGS, "--workdir", str(tmp_path)], recipe_list=[GOOD]) == 0
    out = capsys.readouterr().out
    assert "hf-tiny" in out and "GiB: yes" in out and "FAILED" not in out
    monkeypatch.setattr(gpu_recipes, "BUDGET_GIB", 0.0)  # any measured peak is over this budget
    assert gpu_recipes.main([*CPU_ARGS, "--workdir", str(tmp_path)], recipe_list=[GOOD]) == 1
    out = capsys.readouterr().out
    assert "GiB: NO" in out and "1 verdict(s) missed a goal" in out


def test_main_exits_nonzero_after_a_crashed_recipe(tmp_path, capsys):
    """A recipe whose child process raises (peft: no target module matches) makes the run fail."""
    assert gpu_recipes.main([*CPU_ARGS, "--workdir", str(tmp_path)], recipe_list=[CRASHES]) == 1
    out = capsys.readouterr().out
    assert "hf-broken: failed (exit 1)" in out and "FAILED: 1 recipe(s)" in out


def test_missed_ratio_goals_say_no():
    hf = gpu_recipes.Result("hf-llama31", 12.0, 1000.0, 1.0, 10, "cuda:0")
    slow = gpu_recipes.Result("unsloth-llama31", 11.0, 1100.0, 1.0, 10, "cuda:0")
    last = gpu_recipes.verdict({"hf-llama31": hf, "unsloth-llama31": slow})[-1]
    assert "goal >= 1.5: NO" in last and "goal <= 0.7: NO" in last


@pytest.fixture
def cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    return "cuda"


@pytest.mark.gpu
def test_gpu_hf_recipe_fits_and_counts_tokens(cuda, tmp_path):
    """On a real GPU: a small-shape HF recipe in the device's precision, its peak measured by CUDA's
    allocator (more than the 4-bit weights, less than the card), every token counted."""
    shape = Shape(1024, 2816, 4, 16, 8, 32000)
    ckpt = gpu_recipes.build_random_checkpoint("llama-2-7b-chat", tmp_path / "m", shape=shape, device=cuda)
    recipe = gpu_recipes.Recipe("hf-small", "llama-2-7b-chat", "hf", 16, ("q_proj", "v_proj"), 4)
    result = gpu_recipes.run_recipe(recipe, ckpt, steps=4, seq_len=128, device=cuda)
    total_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    weights_gib = shape.linear_params * 0.5 / 2**30
    assert weights_gib < result.peak_reserved_gib < total_gib
    assert result.tokens == 3 * 4 * 128
    assert result.device.startswith("cuda")


@pytest.mark.gpu
def test_gpu_benchmark_main_passes(cuda, tmp_path):
    """`make bench` on the GPU runner: every recipe runs and meets its goals (exit status 0)."""
    assert gpu_recipes.main(["--workdir", str(tmp_path)]) == 0
