"""Every tiny stand-in tokenizer renders conversations exactly as the real model's tokenizer does
(tests/data/chat_renderings.json; where each string comes from: chat_renderings.provenance.md) and
follows each format's rules."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from helpers import MODELS, resolve_model

DATA = Path(__file__).parent / "data"
REFERENCE = json.loads((DATA / "chat_renderings.json").read_text())
CONVERSATIONS = REFERENCE["conversations"]
# The recorded renderings come from the real tokenizers' own templates; the base TinyLlama ships none
# (lecture 05 trains it into TinyLlama-Chat's format), so it is checked against Chat's template instead.
KEYS = [k for k in MODELS if k != "tinyllama-1.1b"]
USER = {"role": "user", "content": "Hi there"}
ASSISTANT = {"role": "assistant", "content": "Hello! How can I help?"}
# TRL 1.14 ships verbatim copies of these originals and recognises a tokenizer's template by exact equality
TRL_COPIES = {"llama-3.1-8b-instruct": "llama3_1.jinja", "qwen2.5-7b-instruct": "qwen2_5.jinja"}


@pytest.fixture(scope="module")
def toks():
    return {k: AutoTokenizer.from_pretrained(resolve_model(k, "tiny")) for k in KEYS}


def render(tok, messages, gen=False):
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)


def test_reference_covers_every_family_in_two_conversation_shapes():
    assert set(CONVERSATIONS) == {"single_turn_with_system", "multi_turn_with_system"}
    for shape in CONVERSATIONS.values():
        assert set(shape["renderings"]) == set(KEYS)
    roles = [m["role"] for m in CONVERSATIONS["multi_turn_with_system"]["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert REFERENCE["hub_ids"] == {k: MODELS[k].hub_id for k in KEYS}


def test_provenance_names_the_source_of_every_family():
    provenance = (DATA / "chat_renderings.provenance.md").read_text()
    for key in KEYS:
        assert MODELS[key].hub_id in provenance and MODELS[key].template in provenance
    for shape in CONVERSATIONS:
        assert f"`{shape}`" in provenance


@pytest.mark.parametrize("shape", sorted(CONVERSATIONS))
@pytest.mark.parametrize("key", KEYS)
def test_rendering_equals_real_tokenizer(toks, key, shape):
    conv = CONVERSATIONS[shape]
    assert render(toks[key], conv["messages"], conv["add_generation_prompt"]) == conv["renderings"][key]


@pytest.mark.parametrize("key", sorted(TRL_COPIES))
def test_template_is_byte_equal_to_trls_copy_of_the_original(key):
    """An outside copy: TRL's bundled original templates (it matches tokenizers' templates by exact string)."""
    trl = resources.files("trl").joinpath("chat_templates", TRL_COPIES[key]).read_text(encoding="utf-8")
    assert MODELS[key].chat_template() == trl


@pytest.mark.parametrize("key", KEYS)
def test_special_tokens_are_single_tokens(toks, key):
    tok, spec = toks[key], MODELS[key]
    specials = [t for t in (spec.bos_token, spec.eos_token, spec.unk_token, spec.pad_token, *spec.extra_special_tokens) if t]
    for s in specials:
        ids = tok.encode(s, add_special_tokens=False)
        assert len(ids) == 1, (s, ids)
        assert tok.convert_ids_to_tokens(ids) == [s]


def test_llama31_always_emits_dated_system_header(toks):
    text = render(toks["llama-3.1-8b-instruct"], [USER])
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                           "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>")


def test_qwen_injects_default_system_message(toks):
    text = render(toks["qwen2.5-7b-instruct"], [USER])
    assert text.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n")


def test_mistral_folds_system_into_first_user_turn(toks):
    msgs = [{"role": "system", "content": "Be brief."}, USER]
    assert render(toks["mistral-7b-instruct"], msgs) == "<s> [INST] Be brief.\n\nHi there [/INST]"


@pytest.mark.parametrize("key,suffix", [
    ("llama-3.1-8b-instruct", "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    ("qwen2.5-7b-instruct", "<|im_start|>assistant\n"),
    ("tinyllama-1.1b-chat", "<|assistant|>\n"),
    ("llama-2-7b-chat", ""),
    ("mistral-7b-instruct", ""),
])
def test_add_generation_prompt(toks, key, suffix):
    plain, gen = render(toks[key], [USER]), render(toks[key], [USER], gen=True)
    assert gen == plain + suffix


def test_multi_turn_renderings(toks):
    msgs = [USER, ASSISTANT, {"role": "user", "content": "Tell me a joke"}]
    assert render(toks["llama-2-7b-chat"], msgs) == (
        "<s>[INST] Hi there [/INST] Hello! How can I help? </s><s>[INST] Tell me a joke [/INST]")
    assert render(toks["mistral-7b-instruct"], msgs) == (
        "<s> [INST] Hi there [/INST] Hello! How can I help?</s> [INST] Tell me a joke [/INST]")
    assert render(toks["tinyllama-1.1b-chat"], msgs) == (
        "<|user|>\nHi there</s>\n<|assistant|>\nHello! How can I help?</s>\n<|user|>\nTell me a joke</s>\n")
    assert render(toks["qwen2.5-7b-instruct"], msgs).endswith(
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
        "<|im_start|>user\nTell me a joke<|im_end|>\n")
    assert render(toks["llama-3.1-8b-instruct"], msgs).endswith(
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nTell me a joke<|eot_id|>")


def test_roles_must_alternate_where_the_format_says_so(toks):
    with pytest.raises(Exception, match="alternate"):
        render(toks["llama-2-7b-chat"], [USER, USER])


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("text", ["plain ascii", "naïve café — ünïcödé", "日本語", "emoji 🤗🚀👍🏽", ""])
def test_encode_decode_round_trip(toks, key, text):
    tok = toks[key]
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text


def test_base_tinyllama_uses_the_chat_models_template():
    assert MODELS["tinyllama-1.1b"].chat_template() == MODELS["tinyllama-1.1b-chat"].chat_template()
