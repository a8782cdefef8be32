"""count_parameters against outside references: the model's own count and peft's."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

import helpers
from helpers.estimate import lora_parameters
from helpers.models import Shape


@pytest.fixture(scope="module")
def tiny_dir():
    return helpers.resolve_model("llama-2-7b-chat", "tiny")


def nf4():
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.float32)


def lora(r=8):
    return LoraConfig(r=r, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")


def test_full_precision_equals_model_num_parameters(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    count = helpers.count_parameters(model)
    assert count.total == model.num_parameters() == sum(p.numel() for p in model.parameters())
    assert count.trainable == count.total


def test_4bit_counts_the_parameters_it_holds(tiny_dir):
    full = helpers.count_parameters(AutoModelForCausalLM.from_pretrained(tiny_dir))
    q = AutoModelForCausalLM.from_pretrained(tiny_dir, quantization_config=nf4())
    raw = sum(p.numel() for p in q.parameters())
    assert raw < full.total  # numel() alone under-counts packed 4-bit weights
    assert helpers.count_parameters(q).total == full.total


@pytest.mark.parametrize("quantized", [False, True])
def test_lora_equals_peft(tiny_dir, quantized):
    kwargs = {"quantization_config": nf4()} if quantized else {}
    base = AutoModelForCausalLM.from_pretrained(tiny_dir, **kwargs)
    model = get_peft_model(base, lora())
    trainable, total = model.get_nb_trainable_parameters()
    count = helpers.count_parameters(model)
    assert (count.trainable, count.total) == (trainable, total)
    assert 0 < count.trainable_pct < 100


def test_lora_arithmetic_matches_peft(tiny_dir):
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    c = base.config
    shape = Shape(c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads,
                  c.num_key_value_heads, c.vocab_size)
    assert shape.n_params == helpers.count_parameters(base).total
    model = get_peft_model(base, lora(r=8))
    assert lora_parameters(shape, 8) == model.get_nb_trainable_parameters()[0]


def test_print_only_formats(capsys):
    count = helpers.print_trainable_parameters(torch.nn.Linear(10, 10))
    assert count == helpers.ParamCount(110, 110)
    assert capsys.readouterr().out.strip() == "trainable params: 110 || all params: 110 || trainable%: 100.0000"
