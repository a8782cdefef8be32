"""Memory arithmetic against known answers."""

import pytest
import torch

from helpers.estimate import estimate_training_memory, nf4_bytes_per_param, weights_gib
from helpers.models import MODELS


def test_7b_weights_by_dtype():
    n = 7_000_000_000
    assert weights_gib(n, "fp32") == pytest.approx(26.08, abs=0.01)
    assert weights_gib(n, "fp16") == pytest.approx(13.04, abs=0.01)
    assert weights_gib(n, "int8") == pytest.approx(6.52, abs=0.01)
    assert weights_gib(n, "nf4") == pytest.approx(n * nf4_bytes_per_param() / 2**30)
    with pytest.raises(ValueError, match="Unknown dtype"):
        weights_gib(n, "fp8")


def test_real_shapes_match_published_parameter_counts():
    # published counts: Llama-2-7B 6.74B, Llama-3.1-8B 8.03B, TinyLlama 1.10B, Mistral-7B 7.24B
    got = {k: MODELS[k].shape.n_params / 1e9 for k in MODELS}
    assert got["llama-2-7b-chat"] == pytest.approx(6.74, abs=0.01)
    assert got["llama-3.1-8b-instruct"] == pytest.approx(8.03, abs=0.01)
    assert got["tinyllama-1.1b-chat"] == pytest.approx(1.10, abs=0.01)
    assert got["mistral-7b-instruct"] == pytest.approx(7.24, abs=0.01)
    assert got["qwen2.5-7b-instruct"] == pytest.approx(7.62, abs=0.02)


def test_methods_order_and_components():
    full, lora, qlora = (estimate_training_memory("llama-2-7b-chat", m) for m in ("full", "lora", "qlora"))
    assert full.total_gib > lora.total_gib > qlora.total_gib
    assert full.optimizer_gib == pytest.approx(2 * full.gradients_gib)
    assert qlora.trainable_params == 4 * 32 * 64 * (4096 + 4096)
    assert "total" in qlora.table()
    with pytest.raises(ValueError, match="Unknown method"):
        estimate_training_memory("llama-2-7b-chat", "prefix")


def _stored_bytes(packed, quant_state) -> int:
    """Bytes bitsandbytes stores for one quantized tensor: the packed weights plus every tensor of its
    serialized quantization state (absmax, code book, nested absmax/code book, packed metadata)."""
    state = quant_state.as_dict(packed=True)
    return packed.numel() * packed.element_size() + sum(t.numel() * t.element_size() for t in state.values())


@pytest.mark.parametrize("double_quant", [True, False])
def test_nf4_bytes_against_bitsandbytes_quantize_4bit(double_quant):
    import bitsandbytes.functional as bnbf

    torch.manual_seed(0)
    w = torch.randn(1024, 4096)
    packed, state = bnbf.quantize_4bit(w, blocksize=64, compress_statistics=double_quant, quant_type="nf4")
    assert state.nested is double_quant
    measured = _stored_bytes(packed, state) / w.numel()
    assert measured == pytest.approx(nf4_bytes_per_param(double_quant), rel=1e-3)
    assert (measured < 0.54) is double_quant  # 4.13 vs 4.5 bits per weight: the two cases really differ


def test_qlora_estimate_models_prepare_model_for_kbit_training():
    """Load a real (tiny) Llama in nf4 with 16-bit other weights, as on a T4, run peft's
    prepare_model_for_kbit_training and measure the bytes by dtype against the estimate's split."""
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    import helpers
    from helpers.estimate import base_weight_bytes
    from helpers.models import Shape

    path = helpers.resolve_model("llama-2-7b-chat", "tiny")
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.float16)
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb, dtype=torch.float16)
    c = model.config
    shape = Shape(c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads,
                  c.num_key_value_heads, c.vocab_size)

    def by_dtype(m):
        out = {}
        for p in m.parameters():
            kind = "nf4 packed" if p.__class__.__name__ == "Params4bit" else str(p.dtype).removeprefix("torch.")
            out[kind] = out.get(kind, 0) + p.numel() * p.element_size()
        return out

    before = by_dtype(model)
    assert before == {"nf4 packed": shape.linear_params // 2,
                      "float16": base_weight_bytes(shape, "qlora", "fp16", kbit_prepared=False)["fp16"]}
    after = by_dtype(prepare_model_for_kbit_training(model))
    assert after == {"nf4 packed": shape.linear_params // 2,
                     "float32": base_weight_bytes(shape, "qlora", "fp16", kbit_prepared=True)["fp32"]}


def test_the_fp32_cast_costs_what_the_lecture_says():
    # ~0.5 GiB more for Llama 2 (32k vocabulary), ~2 GiB for Llama 3.1 (128k vocabulary)
    def extra(key):
        return (estimate_training_memory(key, "qlora").weights_gib
                - estimate_training_memory(key, "qlora", kbit_prepared=False).weights_gib)

    assert extra("llama-2-7b-chat") == pytest.approx(0.49, abs=0.01)
    assert extra("llama-3.1-8b-instruct") == pytest.approx(1.96, abs=0.01)
