"""Memory arithmetic against known answers."""

import pytest

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
