"""Token visualizer and template explorer: compute functions, and the static (headless) display."""

from __future__ import annotations

import html

import pytest
from transformers import AutoTokenizer

from helpers import MODELS, resolve_model, widgets


@pytest.fixture(scope="module")
def toks():
    return {k: AutoTokenizer.from_pretrained(resolve_model(k, "tiny")) for k in ("llama-2-7b-chat", "qwen2.5-7b-instruct")}


@pytest.mark.parametrize("key", ["llama-2-7b-chat", "qwen2.5-7b-instruct"])
def test_token_pieces_cover_the_text(toks, key):
    tok, text = toks[key], "Hello world, naïve 😀\nok"
    pieces = widgets.token_pieces(tok, text, add_special_tokens=False)
    assert [p.id for p in pieces] == tok.encode(text, add_special_tokens=False)
    covered = "".join(p.text for p in pieces if not p.token.startswith("<0x"))
    assert covered.replace("␣", " ").replace("↵", "\n").replace("\u0120", "") .startswith("Hello")
    assert "".join(p.text for p in pieces).count("😀") == 1


def test_special_tokens_are_flagged(toks):
    pieces = widgets.token_pieces(toks["llama-2-7b-chat"], "Hi")
    assert pieces[0].token == "<s>" and pieces[0].special
    assert not any(p.special for p in pieces[1:])


def test_tokens_html_lists_every_id_and_count(toks):
    tok, text = toks["qwen2.5-7b-instruct"], "Tokens <b>are</b> fun"
    markup = widgets.tokens_html(tok, text)
    ids = tok.encode(text)
    assert f"{len(ids)} tokens" in markup
    for i in ids:
        assert f">{i}</small>" in markup
    assert markup.count("<b>") == 1 and "</b>" in markup  # only our summary is bold: user text is escaped
    assert html.escape("<") in markup


def test_render_chat_matches_apply_chat_template(toks):
    tok = toks["llama-2-7b-chat"]
    msgs = [{"role": "user", "content": "Hi"}]
    r = widgets.render_chat(tok, msgs, add_generation_prompt=True)
    assert r.text == "<s>[INST] Hi [/INST]"
    assert r.ids == tok.apply_chat_template(msgs, tokenize=True, return_dict=False, add_generation_prompt=True)
    assert "[INST]" in widgets.chat_html(tok, msgs, title="Llama 2")


def test_headless_widgets_display_static_html(toks, monkeypatch):
    shown = []
    monkeypatch.setattr(widgets, "_display", shown.append)
    monkeypatch.setenv("COURSE_HEADLESS", "1")
    assert not widgets.live_frontend()
    widgets.token_visualizer(toks["qwen2.5-7b-instruct"], "abc")
    widgets.template_explorer(toks, [{"role": "user", "content": "Hi"}])
    assert [type(o).__name__ for o in shown] == ["HTML", "HTML"]
    assert shown[0].data == widgets.tokens_html(toks["qwen2.5-7b-instruct"], "abc")
    assert "<h4>llama-2-7b-chat</h4>" in shown[1].data and "&lt;|im_start|&gt;" in shown[1].data
    with pytest.raises(ValueError):
        widgets.explorer_html({}, [])


def test_live_widgets(toks, monkeypatch):
    shown = []
    monkeypatch.setattr(widgets, "_display", shown.append)
    monkeypatch.setattr(widgets, "live_frontend", lambda: True)
    widgets.token_visualizer(toks["llama-2-7b-chat"], "abc")
    box, out = shown[0].children
    box.value = "abcd efg"
    assert out.value == widgets.tokens_html(toks["llama-2-7b-chat"], "abcd efg")
    widgets.template_explorer(toks, [{"role": "user", "content": "Hi"}])
    ui = shown[1]
    (family, gen), editor, out = ui.children[0].children, ui.children[1], ui.children[2]
    family.value = "qwen2.5-7b-instruct"
    assert "im_start" in out.value and "&lt;|im_start|&gt;assistant" not in out.value
    gen.value = True
    assert "&lt;|im_start|&gt;assistant" in out.value
    editor.value = "not json"
    assert "JSONDecodeError" in out.value
    editor.value = '[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]'
    family.value = "llama-2-7b-chat"
    assert "alternate" in out.value  # the template's own error is shown, the widget survives


def test_hub_skips_gated_family_without_token(monkeypatch, capsys):
    from helpers import hub

    assert hub.skip_reason("mistral-7b-instruct", "full", token="").startswith("Skipping Mistral")
    assert hub.skip_reason("mistral-7b-instruct", "full", token="hf_x") is None
    assert hub.skip_reason("llama-2-7b-chat", "full", token="") is None  # not gated
    monkeypatch.setattr(hub, "hf_token", lambda: None)
    assert hub.load_tokenizer("mistral-7b-instruct", "full") is None
    assert "gated on the Hub" in capsys.readouterr().out
    loaded = hub.load_tokenizers(["llama-2-7b-chat", "mistral-7b-instruct"], "tiny")
    assert list(loaded) == ["llama-2-7b-chat", "mistral-7b-instruct"]
    assert MODELS["mistral-7b-instruct"].gated
