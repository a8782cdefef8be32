"""helpers.sft: the QLoRA recipe pieces, checked against known answers and against the libraries."""

from __future__ import annotations

import doctest
import math

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

    history = [{"loss": 2.0, "num_input_tokens_seen": 100}, {"loss": 1.0, "num_input_tokens_seen": 300}]
    stats = sft.run_stats("HF", history, {"train_runtime": 1.5}, Peak(), 7)
    assert (stats.tokens, stats.tokens_per_s, stats.trainable) == (300, 200.0, 7)
    table = sft.comparison_table({"HF": stats, "Unsloth": "not run: no GPU"})
    assert "not run: no GPU" in table.splitlines()[1] and "200" in table.splitlines()[1]
    with pytest.raises(ValueError, match="num_input_tokens_seen"):
        sft.run_stats("HF", [{"loss": 1.0, "num_tokens": 5.0}], {"train_runtime": 1.0}, Peak(), 1)


def _tiny_peft(seed: int = 0, std: float = 0.1):
    """The tiny Llama 2 stand-in in 4-bit with LoRA on every projection and non-zero B (so the adapters
    and the frozen 4-bit weights both carry gradient)."""
    from peft import get_peft_model

    torch.manual_seed(seed)
    model, tok = sft.load_4bit("llama-2-7b-chat", "tiny")
    model = get_peft_model(model, sft.lora_config(r=4, alpha=8, dropout=0.0, target_modules=sft.ALL_LINEAR))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=std)
    return model, tok


def _first_layer_grad(model, tok) -> torch.Tensor:
    model.train()
    ids = tok(["How do I load a model with Lamini?"], return_tensors="pt").input_ids
    model.zero_grad()
    model(input_ids=ids, labels=ids).loss.backward()
    return model.base_model.model.model.layers[0].self_attn.q_proj.lora_A.default.weight.grad.clone()


def test_generating_first_leaves_training_exact():
    """Lessons generate (eval, no grad) before they train. On a CPU with AVX512-BF16, bitsandbytes 0.50
    repacks 4-bit weights for inference on the first such call: it crashes on shapes that are not
    multiples of 32 ("N must be divisible by block_n") and afterwards backpropagates through a kernel
    without autograd, silently losing gradient. The first layer's gradient must be the same whether or
    not the model generated first, on every CPU."""
    model, tok = _tiny_peft()
    before = _first_layer_grad(model, tok)
    sft.generate(model, tok, ["Can Lamini save a prompt?", "Hi"], max_new_tokens=3)
    after = _first_layer_grad(model, tok)
    torch.testing.assert_close(after, before)
    from bitsandbytes.nn import Linear4bit

    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    assert len(layers) == 14 and not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False)
                                         for m in layers)


def test_batched_generation_equals_one_by_one():
    """Left padding is right: each answer in a batch of different-length prompts equals the answer
    to that prompt alone, and holds only new tokens (no prompt text, no padding)."""
    model, tok = _tiny_peft(seed=1, std=2.0)  # large adapters: prompt-dependent answers
    prompts = ["Hi", "How do I load a model with Lamini and save it again?", "What is a prompt?"]
    batched = sft.generate(model, tok, prompts, max_new_tokens=8)
    alone = [sft.generate(model, tok, [p], max_new_tokens=8)[0] for p in prompts]
    assert batched == alone
    assert len(set(batched)) > 1 and all(a for a in batched)  # not a degenerate constant output
    for p, a in zip(prompts, batched):
        assert "[INST]" not in a and p not in a
    # The same answers from an independent greedy loop over the unpadded prompt (the outside oracle).
    text = tok.apply_chat_template([{"role": "user", "content": prompts[1]}], tokenize=False,
                                   add_generation_prompt=True)
    ids = tok(text, return_tensors="pt", add_special_tokens=False).input_ids
    model.eval()
    with torch.no_grad():
        for _ in range(8):
            nxt = model(input_ids=ids).logits[0, -1].argmax()
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
            if nxt.item() == tok.eos_token_id:
                break
    n_prompt = tok(text, return_tensors="pt", add_special_tokens=False).input_ids.shape[1]
    assert tok.decode(ids[0, n_prompt:], skip_special_tokens=True).strip() == batched[1]


def test_load_4bit_model_reloads_a_prequantized_checkpoint(tmp_path):
    """Lecture 04 full loads a checkpoint saved in 4-bit (unsloth's ...-bnb-4bit). Save the tiny model in
    4-bit with a bf16 compute dtype (as those checkpoints are), reload it through the already-quantized
    branch: same packed weights, same logits, and the compute dtype of *this* device, not the file's."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    path = helpers.resolve_model("llama-2-7b-chat", "tiny")
    saved = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, device_map={"": "cpu"},
        quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                               bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16))
    sft.keep_cpu_4bit_trainable(saved)
    saved.save_pretrained(tmp_path)
    assert sft.is_prequantized(tmp_path) and not sft.is_prequantized(path)
    model = sft.load_4bit_model(tmp_path, "cpu")
    q = model.model.layers[1].mlp.down_proj
    assert type(q).__name__ == "Linear4bit"
    torch.testing.assert_close(q.weight.data, saved.model.layers[1].mlp.down_proj.weight.data, rtol=0, atol=0)
    from bitsandbytes.nn import Linear4bit

    assert {m.compute_dtype for m in model.modules() if isinstance(m, Linear4bit)} == {torch.float32}
    ids = torch.tensor([[1, 50, 60, 70]])
    for m in saved.modules():
        if isinstance(m, Linear4bit):
            m.compute_dtype = torch.float32
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, saved(ids).logits)


def test_held_out_matches_the_models_own_loss():
    """held_out's answer loss on one row equals the model's cross-entropy with the prompt labels set to
    -100 (transformers' loss, the outside oracle), and its prompt loss the one with the answer masked."""
    model, tok = _tiny_peft(seed=2, std=0.5)
    row = {"question": "How do I load a model with Lamini?", "answer": "Call `llm.load_model()`."}
    pc = sft.lamini_prompt_completion(row)
    prompt = tok.apply_chat_template(pc["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False)
    full = tok.apply_chat_template(pc["prompt"] + pc["completion"], tokenize=True, return_dict=False)
    ids = torch.tensor([full])
    answer_labels, prompt_labels = ids.clone(), ids.clone()
    answer_labels[0, :len(prompt)] = -100
    prompt_labels[0, len(prompt):] = -100
    model.eval()
    with torch.no_grad():
        answer_loss = model(input_ids=ids, labels=answer_labels).loss.item()
        prompt_loss = model(input_ids=ids, labels=prompt_labels).loss.item()
    scores = sft.held_out(model, tok, [row])
    assert scores.answer_tokens == len(full) - len(prompt)
    assert scores.answer_nll == pytest.approx(answer_loss, rel=1e-5)
    assert scores.prompt_nll == pytest.approx(prompt_loss, rel=1e-5)
    assert scores.perplexity == pytest.approx(math.exp(answer_loss), rel=1e-5)
