"""Train only on the assistant: labels that are -100 everywhere except the assistant's tokens.

A chat template renders a whole conversation into one string. To find the assistant's part without
`{% generation %}` markers (none of the course's real templates have them), render prefixes:
for the assistant message i, everything up to message i with `add_generation_prompt=True` is the
prompt the model is given; rendering messages up to and including i adds exactly the assistant's
reply and its end-of-turn token(s). Tokens overlapping those character spans keep their ids as
labels; every other position gets -100, which the loss ignores.

Worked example (Llama 2 format, `<s>[INST] Hi [/INST] Hello! </s>`):

>>> ex = assistant_only_labels(llama2_tokenizer, [{"role": "user", "content": "Hi"},
...                                               {"role": "assistant", "content": "Hello!"}])  # doctest: +SKIP
>>> unmasked_segments(llama2_tokenizer, ex["input_ids"], ex["labels"])   # doctest: +SKIP
['Hello! </s>']
"""

from __future__ import annotations

from dataclasses import dataclass

IGNORE_INDEX = -100  # the label value PyTorch's cross-entropy (and transformers' loss) skips


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the (start, end) character span of each assistant reply.

    Raises ValueError when the template is not prefix-preserving (a longer conversation rewrites
    the text of a shorter one), since then the prompt/reply boundary is not well defined.
    """

    def render(msgs, gen=False):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    full = render(messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(messages[:i], gen=True)
        upto = render(messages[: i + 1])
        if not (upto.startswith(prompt) and full.startswith(upto)):
            raise ValueError(f"chat template is not prefix-preserving at message {i}: cannot locate the reply")
        spans.append((len(prompt), len(upto)))
    return full, spans


def assistant_only_labels(tokenizer, messages: list[dict]) -> dict[str, list[int]]:
    """`input_ids` of the rendered conversation, and `labels` = ids on assistant tokens, -100 elsewhere.

    The ids are exactly `apply_chat_template(messages, tokenize=True)`'s (checked). A token counts as
    the assistant's when it overlaps a reply span, as transformers' `return_assistant_tokens_mask` does.
    """
    text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    expected = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    if ids != list(expected):
        raise ValueError("re-tokenizing the rendered text does not reproduce apply_chat_template's ids")
    mask = [any(s < end and e > start for start, end in spans) for s, e in enc["offset_mapping"]]
    labels = [i if keep else IGNORE_INDEX for i, keep in zip(ids, mask)]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def unmasked_runs(labels: list[int]) -> list[tuple[int, int]]:
    """(start, end) token positions of each run of labels that are not -100.

    >>> unmasked_runs([-100, 5, 6, -100, -100, 7])
    [(1, 3), (5, 6)]
    """
    runs, start = [], None
    for k, lab in enumerate([*labels, IGNORE_INDEX]):
        if lab != IGNORE_INDEX and start is None:
            start = k
        elif lab == IGNORE_INDEX and start is not None:
            runs.append((start, k))
            start = None
    return runs


def unmasked_segments(tokenizer, input_ids: list[int], labels: list[int]) -> list[str]:
    """Decode each run of trained tokens separately: the check that the mask covers what we meant."""
    return [tokenizer.decode(input_ids[s:e], skip_special_tokens=False) for s, e in unmasked_runs(labels)]


def masked_preview(tokenizer, input_ids: list[int], labels: list[int], hidden: str = "·") -> str:
    """The conversation with each masked token shown as `hidden`: what the loss is computed on.

    >>> masked_preview(llama2_tokenizer, ex["input_ids"], ex["labels"])   # doctest: +SKIP
    '·········Hello! </s>'
    """
    runs = unmasked_runs(labels)
    out, pos = [], 0
    for s, e in runs:
        out.append(hidden * (s - pos))
        out.append(tokenizer.decode(input_ids[s:e], skip_special_tokens=False))
        pos = e
    out.append(hidden * (len(input_ids) - pos))
    return "".join(out)


# --- comparison with TRL ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrlMask:
    """What TRL's `assistant_only_loss=True` would train on, or why it cannot (`reason`)."""

    input_ids: list[int] | None
    labels: list[int] | None
    reason: str = ""

    @property
    def supported(self) -> bool:
        return self.input_ids is not None


def trl_assistant_labels(tokenizer, messages: list[dict]) -> TrlMask:
    """Labels as TRL 1.14's SFTTrainer builds them with `assistant_only_loss=True`.

    TRL needs `{% generation %}` markers in the template: it keeps the tokenizer's template if it has
    them, else swaps in a training copy it ships for a few known templates
    (`trl.chat_template_utils.get_training_chat_template`), else refuses. Then it asks transformers for
    `return_assistant_tokens_mask=True` and sets labels to -100 where the mask is 0.
    """
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    original = tokenizer.chat_template
    template, reason = None, ""
    if has_generation_markers(original):
        template = original
    else:
        try:
            template = get_training_chat_template(tokenizer) or original
        except ValueError as err:
            reason = str(err).split(" (")[0]  # "The chat template is not training-compatible"
    if template is None:
        return TrlMask(None, None, reason or "template not supported by TRL")
    enc = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
    labels = [i if m else IGNORE_INDEX for i, m in zip(ids, mask)]
    return TrlMask(ids, labels)


@dataclass(frozen=True)
class MaskComparison:
    """Tokens trained by one mask and not the other (decoded), for two label lists over the same ids."""

    only_ours: list[str]
    only_theirs: list[str]

    @property
    def identical(self) -> bool:
        return not self.only_ours and not self.only_theirs


def compare_labels(tokenizer, input_ids: list[int], ours: list[int], theirs: list[int]) -> MaskComparison:
    """Which tokens differ between two assistant masks over the same `input_ids`."""
    if len(ours) != len(input_ids) or len(theirs) != len(input_ids):
        raise ValueError("both label lists must align with input_ids")

    def dec(i):
        return tokenizer.decode([i], skip_special_tokens=False)

    only_ours = [dec(i) for i, a, b in zip(input_ids, ours, theirs) if a != IGNORE_INDEX and b == IGNORE_INDEX]
    only_theirs = [dec(i) for i, a, b in zip(input_ids, ours, theirs) if a == IGNORE_INDEX and b != IGNORE_INDEX]
    return MaskComparison(only_ours, only_theirs)
