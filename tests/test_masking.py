"""Assistant-only labels: known answers, a decode check, and TRL's assistant-only loss as an outside oracle."""

from __future__ import annotations

import doctest

import pytest
from transformers import AutoTokenizer

from helpers import MODELS, masking, resolve_model

KEYS = list(MODELS)
CHAT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Japan? 🗾"},
    {"role": "assistant", "content": "Tokyo, naïvely 😀"},
]
END_OF_TURN = {  # what each format appends after a reply (part of what the model must learn to emit)
    "llama-2-7b-chat": " </s>", "mistral-7b-instruct": "</s>", "tinyllama-1.1b-chat": "</s>\n", "tinyllama-1.1b": "</s>\n",
    "llama-3.1-8b-instruct": "<|eot_id|>", "qwen2.5-7b-instruct": "<|im_end|>\n",
}


@pytest.fixture(scope="module")
def toks():
    return {k: AutoTokenizer.from_pretrained(resolve_model(k, "tiny")) for k in KEYS}


def test_known_answer_llama2(toks):
    tok = toks["llama-2-7b-chat"]
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    text, spans = masking.assistant_spans(tok, msgs)
    assert text == "<s>[INST] Hi [/INST] Hello! </s>"
    assert [text[s:e] for s, e in spans] == [" Hello! </s>"]
    ex = masking.assistant_only_labels(tok, msgs)
    prompt_len = len(tok.apply_chat_template(msgs[:1], tokenize=True, return_dict=False))
    assert ex["labels"][:prompt_len] == [-100] * prompt_len
    assert ex["labels"][prompt_len:] == ex["input_ids"][prompt_len:]
    assert ex["input_ids"][-1] == tok.eos_token_id


@pytest.mark.parametrize("key", KEYS)
def test_unmasked_tokens_are_exactly_the_replies(toks, key):
    tok = toks[key]
    ex = masking.assistant_only_labels(tok, CHAT)
    assert ex["input_ids"] == tok.apply_chat_template(CHAT, tokenize=True, return_dict=False)
    text, spans = masking.assistant_spans(tok, CHAT)
    replies = [m["content"] for m in CHAT if m["role"] == "assistant"]
    eot = END_OF_TURN[key]
    # character level: the spans are each reply plus the format's end-of-turn text
    assert [text[s:e].lstrip(" ") for s, e in spans] == [r + eot for r in replies]
    # token level: every trained token lies inside a span, and the trained tokens cover the spans
    offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    # (byte-fallback tokens of one character share its offsets: count each span once)
    trained_spans = dict.fromkeys(tuple(o) for o, lab in zip(offsets, ex["labels"]) if lab != -100)
    trained = "".join(text[s:e] for s, e in trained_spans)
    assert trained.replace(" ", "") == "".join(text[s:e] for s, e in spans).replace(" ", "")
    # decoding each trained run gives the reply followed by the end-of-turn token(s)
    segments = masking.unmasked_segments(tok, ex["input_ids"], ex["labels"])
    assert len(segments) == len(replies)
    for seg, reply in zip(segments, replies):
        assert seg.strip().startswith(reply)
        assert seg.strip().endswith(eot.strip())
        assert tok.eos_token in seg or eot.strip() in seg


def test_no_assistant_means_nothing_trained(toks):
    ex = masking.assistant_only_labels(toks["qwen2.5-7b-instruct"], CHAT[:2])
    assert set(ex["labels"]) == {-100}
    assert masking.unmasked_segments(toks["qwen2.5-7b-instruct"], ex["input_ids"], ex["labels"]) == []


def test_not_prefix_preserving_template_is_refused(toks):
    tok = toks["qwen2.5-7b-instruct"]
    original = tok.chat_template
    # a template that writes the number of messages first: prefixes of the conversation change it
    tok.chat_template = "{{ messages|length }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    try:
        with pytest.raises(ValueError, match="prefix-preserving"):
            masking.assistant_spans(tok, CHAT[1:3])
    finally:
        tok.chat_template = original


def test_matches_trl_assistant_only_loss_where_trl_supports_the_template(toks):
    """TRL 1.14 ships a `{% generation %}` training template for Qwen2.5: its mask must agree with ours,
    except that TRL also trains the newline that ends the assistant header."""
    tok = toks["qwen2.5-7b-instruct"]
    ours = masking.assistant_only_labels(tok, CHAT)
    theirs = masking.trl_assistant_labels(tok, CHAT)
    assert theirs.supported, theirs.reason
    assert theirs.input_ids == ours["input_ids"]
    diff = masking.compare_labels(tok, ours["input_ids"], ours["labels"], theirs.labels)
    assert diff.only_ours == []
    assert diff.only_theirs == ["\n", "\n"]  # one per reply: "<|im_start|>assistant" + "\n"


def test_trl_refuses_templates_without_generation_markers(toks):
    result = masking.trl_assistant_labels(toks["llama-2-7b-chat"], CHAT[1:])
    assert not result.supported and "not training-compatible" in result.reason


def test_labels_drive_the_loss(toks):
    """-100 positions really are ignored: a model's loss with our labels equals the mean over reply tokens."""
    import torch
    from transformers import AutoModelForCausalLM

    key = "llama-2-7b-chat"
    tok, model = toks[key], AutoModelForCausalLM.from_pretrained(resolve_model(key, "tiny"))
    ex = masking.assistant_only_labels(tok, CHAT[1:3])
    ids, labels = torch.tensor([ex["input_ids"]]), torch.tensor([ex["labels"]])
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels)
    logits, target = out.logits[0, :-1], labels[0, 1:]
    keep = target != -100
    manual = torch.nn.functional.cross_entropy(logits[keep], target[keep])
    assert torch.allclose(out.loss, manual, atol=1e-5)


def test_helpers_and_doctests():
    assert masking.unmasked_runs([-100, 5, 6, -100, -100, 7]) == [(1, 3), (5, 6)]
    assert masking.unmasked_runs([]) == []
    assert doctest.testmod(masking).failed == 0


def test_trl_helper_equals_sft_trainer_labels(toks, tmp_path):
    """The strongest oracle: the labels TRL's SFTTrainer(assistant_only_loss=True) actually builds."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    key = "qwen2.5-7b-instruct"
    tok = AutoTokenizer.from_pretrained(resolve_model(key, "tiny"))
    # TRL recognises Qwen2.5's template by exact equality with the Hub file (trailing newline included).
    args = SFTConfig(output_dir=str(tmp_path), assistant_only_loss=True, report_to="none", save_strategy="no",
                     max_length=512, bf16=False)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(resolve_model(key, "tiny")), args=args,
                         train_dataset=Dataset.from_dict({"messages": [CHAT]}), processing_class=tok)
    row = trainer.train_dataset[0]
    helper = masking.trl_assistant_labels(tok, CHAT)
    assert row["input_ids"] == helper.input_ids
    assert row["labels"] == helper.labels
    ours = masking.assistant_only_labels(tok, CHAT)
    assert masking.compare_labels(tok, row["input_ids"], ours["labels"], row["labels"]).only_ours == []


# --- every family's template: masking and Unsloth-style response markers agree ----------------------

@pytest.mark.parametrize("key", KEYS)
def test_response_markers_delimit_exactly_the_masked_replies(toks, key):
    """`sft.response_markers` (what Unsloth's train_on_responses_only masks with) and `masking` (prefix
    rendering) are two independent ways to find the replies: on every family's template, the text from
    each response marker to the next instruction marker is the masked span (up to spaces)."""
    from helpers.sft import response_markers

    tok = toks[key]
    instruction, response = response_markers(tok)
    text, spans = masking.assistant_spans(tok, CHAT)
    n_users = sum(m["role"] == "user" for m in CHAT)
    assert text.count(response.strip()) == len(spans) == 2
    assert text.count(instruction.strip()) == n_users
    pieces, pos = [], 0
    while (at := text.find(response, pos)) >= 0:
        start = at + len(response)
        nxt = text.find(instruction, start)
        pieces.append(text[start:nxt if nxt >= 0 else len(text)])
        pos = start
    assert [p.strip() for p in pieces] == [text[s:e].strip() for s, e in spans]


@pytest.mark.parametrize("key", KEYS)
def test_trained_tokens_decode_to_each_reply_and_one_end_of_turn(toks, key):
    """Lecture 02's per-row check, on every family: per reply, the trained ids are the reply's tokens
    followed by the format's end-of-turn id (plus, for TinyLlama and Qwen, the newline after it)."""
    tok = toks[key]
    ex = masking.assistant_only_labels(tok, CHAT)
    replies = [m["content"] for m in CHAT if m["role"] == "assistant"]
    eot_id = tok.convert_tokens_to_ids(END_OF_TURN[key].strip())
    runs = masking.unmasked_runs(ex["labels"])
    assert len(runs) == len(replies)
    for (s, e), reply in zip(runs, replies):
        ids = ex["input_ids"][s:e]
        at = ids.index(eot_id)
        assert tok.decode(ids[:at]).strip(" ") == reply  # spaces only: a trained header newline must show
        assert tok.decode(ids[at + 1:]).strip() == ""  # at most the newline that closes the turn
