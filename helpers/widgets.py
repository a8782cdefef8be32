"""Two notebook widgets: a token visualizer and a chat-template explorer.

Each widget is a thin layer over a compute function that returns plain data or an HTML string
(`token_pieces`, `tokens_html`, `render_chat`, `chat_html`), so the logic is testable without a
browser. In a live frontend (JupyterLab, Colab) the widgets are interactive; headless (papermill,
CI, nbconvert) they display the same content as static HTML.

>>> from transformers import AutoTokenizer                              # doctest: +SKIP
>>> tok = AutoTokenizer.from_pretrained(resolve_model("qwen2.5-7b-instruct", "tiny"))  # doctest: +SKIP
>>> [p.text for p in token_pieces(tok, "Hi there")]                    # doctest: +SKIP
['Hi', '␣there']
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass

# Colours cycle so that neighbouring tokens always differ (pastels keep the text readable).
PALETTE = ("#fde2e4", "#cde7f0", "#d8f3dc", "#fff1c1", "#e2d9f3", "#ffd8be", "#d0f4f7", "#f1e3d3")
HEADLESS_PARENTS = ("papermill", "nbclient", "nbconvert", "pytest", "course.run", "nbgrader")


@dataclass(frozen=True)
class TokenPiece:
    """One token: its id, the tokenizer's own string for it, and the text it covers (made visible)."""

    id: int
    token: str
    text: str
    special: bool


def _visible(text: str) -> str:
    """Spaces and newlines made visible: ' a\\n' -> '␣a↵'."""
    return text.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")


def token_pieces(tokenizer, text: str, add_special_tokens: bool = True) -> list[TokenPiece]:
    """Tokenize `text` and say which part of it each token covers.

    A token's text is the slice of `text` it covers (spaces shown as ␣, newlines as ↵). Tokens that
    cover no text of their own (an added BOS, or the 2nd…nth byte token of one character split into
    bytes) show the tokenizer's token string instead, e.g. '<s>' or '<0xAF>'.
    """
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    special_ids = set(tokenizer.all_special_ids)
    pieces, seen = [], set()
    for i, tok, (start, end) in zip(ids, tokens, offsets):
        shared = (start, end) in seen
        seen.add((start, end))
        covered = text[start:end] if end > start and not shared else tok
        pieces.append(TokenPiece(id=i, token=tok, text=_visible(covered), special=i in special_ids))
    return pieces


def tokens_html(tokenizer, text: str, add_special_tokens: bool = True) -> str:
    """HTML: each token as a coloured box with its id underneath, and the token count.

    Special tokens get a bold border. The result is a plain string, ready for `IPython.display.HTML`.
    """
    pieces = token_pieces(tokenizer, text, add_special_tokens)
    boxes = []
    for k, p in enumerate(pieces):
        border = "2px solid #333" if p.special else "1px solid #bbb"
        boxes.append(
            f'<span title="token {html.escape(repr(p.token))}" style="display:inline-block;margin:1px;'
            f"padding:1px 3px;background:{PALETTE[k % len(PALETTE)]};border:{border};border-radius:3px;"
            f'font-family:monospace;text-align:center">{html.escape(p.text)}'
            f'<br><small style="color:#555">{p.id}</small></span>'
        )
    n_chars, n_bytes = len(text), len(text.encode("utf-8"))
    summary = f"{len(pieces)} tokens · {n_chars} characters · {n_bytes} UTF-8 bytes"
    return f'<div style="line-height:2.2"><div><b>{summary}</b></div>{"".join(boxes)}</div>'


@dataclass(frozen=True)
class RenderedChat:
    """A conversation rendered by a chat template: the string and its token ids."""

    text: str
    ids: list[int]


def render_chat(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> RenderedChat:
    """`apply_chat_template` both ways: the string, and the ids the model would see.

    >>> render_chat(tok, [{"role": "user", "content": "Hi"}]).text     # doctest: +SKIP
    '<s>[INST] Hi [/INST]'
    """
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    ids = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=False, add_generation_prompt=add_generation_prompt
    )
    return RenderedChat(text=text, ids=list(ids))


def chat_html(tokenizer, messages: list[dict], add_generation_prompt: bool = False, title: str = "") -> str:
    """HTML: the rendered template string, then its tokens (as the model sees them, no extra BOS)."""
    rendered = render_chat(tokenizer, messages, add_generation_prompt)
    head = f"<h4>{html.escape(title)}</h4>" if title else ""
    pre = f'<pre style="white-space:pre-wrap;background:#f6f6f6;padding:6px">{html.escape(rendered.text)}</pre>'
    return head + pre + tokens_html(tokenizer, rendered.text, add_special_tokens=False)


def live_frontend() -> bool:
    """True when widgets can be interacted with: Colab, or a Jupyter kernel not driven by a headless runner.

    Headless means: $COURSE_HEADLESS=1, no IPython kernel, or a kernel whose parent process is
    papermill / nbclient / nbconvert / pytest (how CI and `make run` execute notebooks).
    """
    if os.environ.get("COURSE_HEADLESS") == "1":
        return False
    from .colab import in_colab

    if in_colab():
        return True
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return False
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            parent = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return True
    return not any(name in parent for name in HEADLESS_PARENTS)


def _display(obj) -> None:
    from IPython.display import display

    display(obj)


def build_token_visualizer(tokenizer, text: str = "Hello world!"):
    """The live widget: a text box, and the coloured tokens of what is typed in it (updated on edit)."""
    import ipywidgets as w

    box = w.Textarea(value=text, description="Text", layout=w.Layout(width="95%", height="70px"))
    out = w.HTML(tokens_html(tokenizer, text))

    def update(change):
        out.value = tokens_html(tokenizer, change["new"])

    box.observe(update, names="value")
    return w.VBox([box, out])


def token_visualizer(tokenizer, text: str = "Hello world!") -> None:
    """Show the token visualizer for `text`: interactive in a live frontend, static HTML when headless."""
    from IPython.display import HTML

    _display(build_token_visualizer(tokenizer, text) if live_frontend() else HTML(tokens_html(tokenizer, text)))


def explorer_html(tokenizers: dict, messages: list[dict], add_generation_prompt: bool = False) -> str:
    """Static explorer: `messages` rendered by every tokenizer in `tokenizers`, one section each."""
    if not tokenizers:
        raise ValueError("the template explorer needs at least one tokenizer")
    return "".join(chat_html(tok, messages, add_generation_prompt, title=name) for name, tok in tokenizers.items())


def build_template_explorer(tokenizers: dict, messages: list[dict]):
    """The live widget: family dropdown, messages as editable JSON, add_generation_prompt checkbox."""
    if not tokenizers:
        raise ValueError("the template explorer needs at least one tokenizer")
    import ipywidgets as w

    family = w.Dropdown(options=list(tokenizers), description="Family")
    editor = w.Textarea(value=json.dumps(messages, indent=1, ensure_ascii=False), description="Messages",
                        layout=w.Layout(width="95%", height="180px"))
    gen = w.Checkbox(value=False, description="add_generation_prompt")
    out = w.HTML()

    def update(_=None):
        try:
            msgs = json.loads(editor.value)
            out.value = chat_html(tokenizers[family.value], msgs, gen.value)
        except Exception as err:  # bad JSON or a template's raise_exception: show it, keep the widget alive
            out.value = f'<pre style="color:#b00">{html.escape(type(err).__name__ + ": " + str(err))}</pre>'

    for control in (family, editor, gen):
        control.observe(update, names="value")
    update()
    return w.VBox([w.HBox([family, gen]), editor, out])


def template_explorer(tokenizers: dict, messages: list[dict]) -> None:
    """Show the template explorer: interactive in a live frontend; headless, every family's rendering."""
    from IPython.display import HTML

    if live_frontend():
        _display(build_template_explorer(tokenizers, messages))
    else:
        _display(HTML(explorer_html(tokenizers, messages)))
