"""helpers.sft: the QLoRA recipe pieces, checked against known answers and against the libraries."""

from __future__ import annotations

import doctest

import pytest
import torch
from transformers import AutoTokenizer

import helpers
from helpers import sft

ROW = {"question": "How do I load a model with Lamini?", "answer": "Call `llm.load_model()`."}


@pytest.fixture(scope="module", params=["llama-2-7b-chat", "llama-3.1-8b-instruct"])
def tokenizer(request):
    return AutoTokenizer.from_pretrained(helpers.resolve_model(request.param, "tiny"))


def test_doctests():
    assert doctest.testmod(sft, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


def test_format_lamini_tokenizes_to_the_chat_template(tokenizer):
    """The text, encoded as plain text, gives exactly the chat template's ids: one BOS, not two."""
    text = sft.format_lamini(ROW, tokenizer)["text"]
    ids = tokenizer(text).input_ids
    expected = tokenizer.apply_chat_template(sft.lamini_messages(ROW)["messages"], tokenize=True, return_dict=False)
    assert ids == expected
    assert ids.count(tokenizer.bos_token_id) == 1


def test_response_markers_known_answers():
    llama2 = AutoTokenizer.from_pretrained(helpers.resolve_model("llama-2-7b-chat", "tiny"))
    llama3 = AutoTokenizer.from_pretrained(helpers.resolve_model("llama-3.1-8b-instruct", "tiny"))
    assert sft.response_markers(llama2) == ("<s>[INST] ", "[/INST] ")
    assert sft.response_markers(llama3) == ("<|start_header_id|>user<|end_header_id|>\n\n",
                                            "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_prompt_completion_shape():
    pc = sft.lamini_prompt_completion(ROW)
    assert [m["role"] for m in pc["prompt"]] == ["user"] and [m["role"] for m in pc["completion"]] == ["assistant"]


def test_bnb_config_and_precision():
    c = sft.bnb_config("cpu")
    assert c.load_in_4bit and c.bnb_4bit_quant_type == "nf4" and c.bnb_4bit_use_double_quant
    assert c.bnb_4bit_compute_dtype == torch.float32
    assert sft.precision_flags(torch.bfloat16) == {"bf16": True, "fp16": False}


def test_load_4bit_lora_counts_match_peft_and_generate():
    from peft import get_peft_model

    model, tok = sft.load_4bit("llama-2-7b-chat", "tiny")
    assert tok.pad_token == tok.eos_token  # Llama 2 has no pad token
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    model = get_peft_model(model, sft.lora_config(r=4, alpha=8, dropout=0.0, target_modules=sft.ALL_LINEAR))
    count = helpers.count_parameters(model)
    assert (count.trainable, count.total) == model.get_nb_trainable_parameters()
    from helpers.models import Shape

    shape = Shape(**{k: getattr(model.config, k) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                           "num_attention_heads", "num_key_value_heads", "vocab_size")})
    assert count.trainable == helpers.lora_parameters(shape, r=4, target_modules=sft.ALL_LINEAR)
    side = tok.padding_side
    out = sft.generate(model, tok, ["Can Lamini save a prompt?", "Hi"], max_new_tokens=3)
    assert len(out) == 2 and all(isinstance(s, str) for s in out)
    assert tok.padding_side == side  # restored


def test_run_stats_and_table():
    class Peak:
        peak_reserved_gib = 2.0

    history = [{"loss": 2.0, "num_tokens": 100.0}, {"loss": 1.0, "num_tokens": 300.0}]
    stats = sft.run_stats("HF", history, {"train_runtime": 1.5}, Peak(), 7)
    assert (stats.tokens, stats.tokens_per_s, stats.trainable) == (300, 200.0, 7)
    table = sft.comparison_table({"HF": stats, "Unsloth": "not run: no GPU"})
    assert "not run: no GPU" in table.splitlines()[1] and "200" in table.splitlines()[1]
    with pytest.raises(ValueError, match="num_tokens"):
        sft.run_stats("HF", [{"loss": 1.0}], {"train_runtime": 1.0}, Peak(), 1)
