"""Preference-data plumbing for lecture 05: filter and format pairs, split them, score a model on them.

The DPO loss and the sequence log-probability it is built on are written in lecture 05's cells (and
asked for in assignment a4); this module only does what surrounds them: the book's pair filter, the
chat-template formatting TRL expects, a held-out split that keeps every prompt on one side, and a
batched, truncated pass that asks a model which completion of each pair it finds more likely.

>>> rows = [{"input": q, "chosen": q + "!", "rejected": "no"} for q in ["x", "x", "y", "z", "z", "z"]]
>>> train, test = split_by_prompt(rows, test_prompts=1, seed=0)
>>> sorted({r["input"] for r in test}), len(train) + len(test)
(['y'], 6)
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

KEEP_RULE = "status != 'tie' and chosen_score >= 8 and not in_gsm8k_train"


def keep_pair(row: dict) -> bool:
    """The book's filter for argilla/distilabel-intel-orca-dpo-pairs: confident, non-tied, not GSM8K.

    >>> keep_pair({"status": "unchanged", "chosen_score": 9.0, "in_gsm8k_train": False})
    True
    >>> keep_pair({"status": "tie", "chosen_score": 10.0, "in_gsm8k_train": False})
    False
    """
    return row["status"] != "tie" and row["chosen_score"] >= 8 and not row["in_gsm8k_train"]


def format_orca_pair(row: dict, tokenizer) -> dict:
    """Turn an orca row (system, input, chosen, rejected) into prompt/chosen/rejected strings.

    Everything comes from the tokenizer's chat template: the prompt is the system + user turns with
    the generation prompt; a completion is what the template adds after the prompt for the assistant
    turn, cut right after the EOS token (TRL appends EOS to a completion that does not end with it,
    so keeping the template's trailing newline would train on a doubled EOS).

    For TinyLlama's template:

    >>> format_orca_pair({"system": "", "input": "What is 2 plus 7?", "chosen": "9.",
    ...                   "rejected": "Not my problem."}, tok)  # doctest: +SKIP
    {'prompt': '<|system|>\\n</s>\\n<|user|>\\nWhat is 2 plus 7?</s>\\n<|assistant|>\\n',
     'chosen': '9.</s>', 'rejected': 'Not my problem.</s>'}
    """
    messages = [{"role": "system", "content": row["system"]}, {"role": "user", "content": row["input"]}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    out = {"prompt": prompt}
    for key in ("chosen", "rejected"):
        full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": row[key]}], tokenize=False)
        if not full.startswith(prompt):
            raise ValueError("The chat template renders the prompt differently inside the full conversation.")
        completion = full[len(prompt):]
        eos = tokenizer.eos_token
        if eos and eos in completion:
            completion = completion[: completion.rindex(eos) + len(eos)]
        out[key] = completion
    return out


def split_by_prompt(rows, test_prompts: int, seed: int = 0, key: str = "input"):
    """(train, test): `test_prompts` prompts held out with all their rows, and no held-out label trained.

    Preference datasets repeat a prompt with several (chosen, rejected) pairs; a row-level split would
    put the same question, often with the same chosen answer, on both sides. And an answer can recur
    under another prompt (a "wrong fact" rejected here is the right answer there). So training also
    loses every row that would teach a held-out answer's label: a row whose *chosen* answer appears
    anywhere in the held-out pairs, or whose *rejected* answer is a held-out chosen one. (A training
    row may still reject what a held-out row rejects, e.g. the same refusal.)
    `rows` is a list of dicts or a `datasets.Dataset` (then two Datasets come back). Deterministic.

    >>> rows = [{"input": q, "chosen": q + "!", "rejected": r} for q, r in zip("aabbbcd", ["x", "b!", "y", "y", "z", "a!", "y"])]
    >>> train, test = split_by_prompt(rows, test_prompts=1, seed=0)
    >>> [r["input"] for r in test], [(r["input"], r["rejected"]) for r in train]
    (['d'], [('a', 'x'), ('a', 'b!'), ('b', 'y'), ('b', 'y'), ('b', 'z'), ('c', 'a!')])
    >>> train, test = split_by_prompt(rows, test_prompts=1, seed=3)   # holds out "b": ("a", "b!") goes too
    >>> [r["input"] for r in test], [(r["input"], r["rejected"]) for r in train]
    (['b', 'b', 'b'], [('a', 'x'), ('c', 'a!'), ('d', 'y')])
    >>> split_by_prompt(rows, test_prompts=4)
    Traceback (most recent call last):
    ValueError: cannot hold out 4 of 4 prompts: training needs at least one
    """
    prompts = sorted({r[key] for r in rows})
    if not 0 < test_prompts < len(prompts):
        raise ValueError(f"cannot hold out {test_prompts} of {len(prompts)} prompts: training needs at least one")
    held = set(random.Random(seed).sample(prompts, test_prompts))
    test_idx = [i for i, r in enumerate(rows) if r[key] in held]
    held_chosen = {rows[i]["chosen"] for i in test_idx}
    held_any = held_chosen | {rows[i]["rejected"] for i in test_idx}
    train_idx = [i for i, r in enumerate(rows)
                 if r[key] not in held and r["chosen"] not in held_any and r["rejected"] not in held_chosen]
    if hasattr(rows, "select"):  # a datasets.Dataset
        return rows.select(train_idx), rows.select(test_idx)
    return [rows[i] for i in train_idx], [rows[i] for i in test_idx]


def completion_batch(tokenizer, prompts: list[str], completions: list[str], max_length: int | None = None):
    """Tokenize prompt + completion pairs as TRL's DPOTrainer does; pad on the right.

    The completion starts where the ids of the prompt alone and of prompt + completion diverge. With
    `max_length`, each sequence keeps its first `max_length` tokens (TRL's "keep_start" truncation).
    Returns (input_ids, attention_mask, completion_mask), each (B, T) LongTensors.
    """
    import torch

    rows = []
    for prompt, completion in zip(prompts, completions, strict=True):
        p = tokenizer(text=prompt)["input_ids"]
        full = tokenizer(text=prompt + completion)["input_ids"]
        n = 0
        while n < min(len(p), len(full)) and p[n] == full[n]:
            n += 1
        if max_length is not None:
            full = full[:max_length]
        rows.append((full, min(n, len(full))))
    T = max(len(full) for full, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    attn = torch.zeros((len(rows), T), dtype=torch.long)
    comp = torch.zeros((len(rows), T), dtype=torch.long)
    for i, (full, n) in enumerate(rows):
        ids[i, : len(full)] = torch.tensor(full)
        attn[i, : len(full)] = 1
        comp[i, n: len(full)] = 1
    return ids, attn, comp


def completion_logprobs(model, tokenizer, prompts: list[str], completions: list[str], batch_size: int = 4,
                        max_length: int | None = None):
    """log pi(completion | prompt) under `model` for each pair, as a (N,) float32 CPU tensor.

    Small batches of truncated sequences: the fp32 scores over the vocabulary are what costs memory
    (batch x length x vocabulary x 4 bytes), so both are bounded.
    """
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(prompts), batch_size):
            ids, attn, comp = completion_batch(tokenizer, prompts[i: i + batch_size],
                                               completions[i: i + batch_size], max_length)
            ids, attn, comp = ids.to(device), attn.to(device), comp.to(device)
            logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
            nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")  # (B, T-1)
            out.append(-(nll * comp[:, 1:]).sum(dim=1).cpu())
    return torch.cat(out)


@dataclass(frozen=True)
class PreferenceScore:
    """Per held-out pair, log pi(chosen) - log pi(rejected) in nats, and what follows from it."""

    margins: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.margins)

    @property
    def accuracy(self) -> float:
        """Fraction of pairs whose chosen completion is the more likely one."""
        return sum(m > 0 for m in self.margins) / self.n

    @property
    def mean_margin(self) -> float:
        return sum(self.margins) / self.n

    def __str__(self) -> str:
        return f"accuracy {self.accuracy:.1%} on {self.n} pairs, mean margin {self.mean_margin:+.2f} nats"


def paired_gain(before: PreferenceScore, after: PreferenceScore) -> tuple[float, float]:
    """Mean per-pair margin gain (after - before) and its standard error, over the same pairs.

    >>> paired_gain(PreferenceScore((0.0, 1.0, 2.0)), PreferenceScore((1.0, 3.0, 3.0)))
    (1.3333333333333333, 0.3333333333333333)
    """
    if before.n != after.n or before.n < 2:
        raise ValueError("a paired gain needs the same (at least two) pairs before and after")
    diffs = [a - b for a, b in zip(after.margins, before.margins)]
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)
    return mean, math.sqrt(var / len(diffs))


def preference_accuracy(model, tokenizer, pairs, batch_size: int = 4, max_length: int | None = None) -> PreferenceScore:
    """Does `model` give the chosen completion a higher log-probability than the rejected one?

    `pairs`: rows (dicts, or a datasets.Dataset) with "prompt", "chosen", "rejected" strings, e.g.
    from `format_orca_pair`. Scored in eval mode (no dropout); the model's mode is restored.

    >>> preference_accuracy(model, tok, held_out, max_length=512)        # doctest: +SKIP
    PreferenceScore(margins=(3.1, -0.4, ...))
    """
    was_training = model.training
    model.eval()
    prompts = [r["prompt"] for r in pairs]
    chosen = completion_logprobs(model, tokenizer, prompts, [r["chosen"] for r in pairs], batch_size, max_length)
    rejected = completion_logprobs(model, tokenizer, prompts, [r["rejected"] for r in pairs], batch_size, max_length)
    if was_training:
        model.train()
    return PreferenceScore(tuple((chosen - rejected).tolist()))
