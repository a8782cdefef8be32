"""benchmarks.gpu_recipes: the CPU skip, and the HF recipe's measuring path on a tiny shape (CPU)."""

from __future__ import annotations

import math

import torch

from benchmarks import gpu_recipes
from helpers.estimate import lora_parameters
from helpers.models import Shape


def test_skips_without_cuda(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_recipes.main([]) == 0
    assert capsys.readouterr().out.strip() == "no CUDA GPU: skipped (GPU figures not measured)"


def test_recipes_are_the_seeds_settings():
    r = {x.name: x for x in gpu_recipes.recipes()}
    assert (r["hf-llama2"].lora_r, len(r["hf-llama2"].targets)) == (64, 4)
    assert (r["unsloth-llama31"].lora_r, len(r["unsloth-llama31"].targets), r["unsloth-llama31"].batch_size) == (16, 7, 16)
    assert r["hf-llama31"].targets == r["unsloth-llama31"].targets and r["hf-llama31"].key == r["unsloth-llama31"].key


def test_hf_recipe_runs_on_a_tiny_shape(tmp_path):
    shape = Shape(64, 128, 2, 4, 2, 1024)
    ckpt = gpu_recipes.build_random_checkpoint("llama-3.1-8b-instruct", tmp_path / "m", shape=shape, device="cpu")
    recipe = gpu_recipes.Recipe("hf-tiny", "llama-3.1-8b-instruct", "hf", 4, ("q_proj", "v_proj"), 2)
    result = gpu_recipes.run_recipe(recipe, ckpt, steps=3, seq_len=16, device="cpu")
    assert result.tokens_per_s > 0 and not math.isnan(result.seconds)
    assert result.trainable == lora_parameters(shape, r=4, target_modules=("q_proj", "v_proj")) == 1792
    assert result.device == "cpu"


def test_verdict_compares_only_measured_runs():
    hf = gpu_recipes.Result("hf-llama31", 12.0, 1000.0, 1.0, 10, "cuda:0")
    un = gpu_recipes.Result("unsloth-llama31", 6.0, 2000.0, 1.0, 10, "cuda:0")
    lines = gpu_recipes.verdict({"hf-llama31": hf, "unsloth-llama31": un})
    assert "2.00x tokens/s (goal >= 1.5: yes)" in lines[-1] and "0.50x peak memory (goal <= 0.7: yes)" in lines[-1]
    assert len(gpu_recipes.verdict({"hf-llama31": hf})) == 1  # no ratio without both runs
