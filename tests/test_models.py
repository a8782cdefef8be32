"""resolve_model and the tiny stand-ins: ids, caching, determinism, offline loading."""

import hashlib
import socket
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

import helpers
from helpers.models import MODELS
from helpers.tiny import build_tiny_model


def test_full_returns_the_hub_ids():
    assert {k: helpers.resolve_model(k, "full") for k in MODELS} == {
        "llama-2-7b-chat": "NousResearch/Llama-2-7b-chat-hf",
        "llama-3.1-8b-instruct": "unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit",
        "tinyllama-1.1b-chat": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
        "mistral-7b-instruct": "mistralai/Mistral-7B-Instruct-v0.1",
        "qwen2.5-7b-instruct": "Qwen/Qwen2.5-7B-Instruct",
    }


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown model key 'gpt-5'.*qwen2.5-7b-instruct"):
        helpers.resolve_model("gpt-5", "tiny")
    with pytest.raises(ValueError, match="Unknown profile 'small'.*auto, tiny, full"):
        helpers.resolve_model("llama-2-7b-chat", "small")


def _digest(d: Path) -> dict:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(d.iterdir()) if f.is_file()}


def test_stand_in_is_deterministic_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "a"))
    a = build_tiny_model(MODELS["qwen2.5-7b-instruct"])
    assert build_tiny_model(MODELS["qwen2.5-7b-instruct"]) == a  # second call: cached
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "b"))
    b = build_tiny_model(MODELS["qwen2.5-7b-instruct"])
    assert a != b and _digest(a) == _digest(b)
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= set(_digest(a))


@pytest.mark.parametrize("key", sorted(MODELS))
def test_stand_in_loads_offline_without_a_socket(key, monkeypatch):
    path = helpers.resolve_model(key, "tiny")  # builds if needed, before sockets are forbidden
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*a, **k):
        raise AssertionError("the tiny profile opened a socket")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    spec = MODELS[key]
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 2
    assert model.config.vocab_size == len(tok)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (spec.bos_token, spec.eos_token, spec.pad_token)
    assert tok.chat_template == spec.chat_template()
    out = model.generate(**tok("The capital of France is", return_tensors="pt"), max_new_tokens=3, do_sample=False)
    assert out.shape[1] > 3
