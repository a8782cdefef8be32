"""Direct Preference Optimization written out for teaching: sequence log-probs, the loss, an accuracy.

DPO scores a completion y for a prompt x by how much more likely the policy makes it than a frozen
reference does, r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x)), and minimises
-log sigmoid(r(x, y_chosen) - r(x, y_rejected)). The numbers here are the ones TRL's `DPOTrainer`
(loss_type "sigmoid") computes; tests/test_dpo.py checks that on random tensors and on a real batch.

Worked example: a policy equal to its reference has zero margin, so the loss is log 2 for every beta.

>>> import torch
>>> logps = torch.tensor([-12.0, -30.0])
>>> loss, chosen, rejected = dpo_loss(logps, logps, logps, logps, beta=0.1)
>>> round(loss.item(), 4), chosen.tolist(), rejected.tolist()
(0.6931, [0.0, 0.0], [0.0, 0.0])
"""

from __future__ import annotations

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

    >>> from transformers import AutoTokenizer
    >>> from helpers import resolve_model
    >>> tok = AutoTokenizer.from_pretrained(resolve_model("tinyllama-1.1b-chat", "tiny"))  # doctest: +SKIP
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


def sequence_logprobs(logits, labels, mask):
    """Sum of the log-probabilities of the completion tokens of each sequence.

    logits (B, T, V): the model's output for input ids `labels` (B, T); mask (B, T): 1 on completion
    tokens, 0 on prompt and padding. Token t is predicted by the logits at t - 1, so the first token
    is never scored. Returns (B,).

    >>> import torch
    >>> logits = torch.zeros(1, 3, 4)            # uniform over a vocabulary of 4
    >>> labels = torch.tensor([[0, 1, 2]])
    >>> mask = torch.tensor([[0, 1, 1]])        # the prompt is token 0; two completion tokens
    >>> round(sequence_logprobs(logits, labels, mask).item(), 4)   # 2 * log(1/4)
    -2.7726
    """
    import torch

    logits = logits[:, :-1, :]  # (B, T-1, V): position t-1 predicts token t
    targets = labels[:, 1:]  # (B, T-1)
    m = mask[:, 1:].to(logits.dtype)
    logps = torch.log_softmax(logits.float(), dim=-1)  # float32: sums of many small logs
    token_logps = torch.gather(logps, 2, targets.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    return (token_logps * m).sum(dim=1)


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta: float):
    """The DPO (sigmoid) loss of a batch, and the implicit rewards that TRL logs.

    All inputs are (B,) sums of completion log-probs. Returns (loss, chosen_rewards, rejected_rewards):
    loss is the batch mean of -log sigmoid(chosen_reward - rejected_reward); rewards are
    beta * (policy - reference) log-ratios, detached (they are for logging).

    >>> import torch
    >>> ref = torch.tensor([-10.0])
    >>> loss, c, r = dpo_loss(torch.tensor([-8.0]), torch.tensor([-12.0]), ref, ref, beta=0.5)
    >>> c.item(), r.item(), round(loss.item(), 4)   # margin 0.5*2 - 0.5*(-2) = 2: loss log(1 + e^-2)
    (1.0, -1.0, 0.1269)
    """
    import torch.nn.functional as F

    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    losses = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))
    return losses.mean(), beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


def completion_batch(tokenizer, prompts: list[str], completions: list[str]):
    """Tokenize prompt + completion pairs as TRL's DPOTrainer does; pad on the right.

    The completion starts where the ids of the prompt alone and of prompt + completion diverge.
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
        rows.append((full, n))
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


def completion_logprobs(model, tokenizer, prompts: list[str], completions: list[str], batch_size: int = 16):
    """log pi(completion | prompt) under `model` for each pair, as a (N,) float32 CPU tensor."""
    import torch

    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(prompts), batch_size):
            ids, attn, comp = completion_batch(tokenizer, prompts[i: i + batch_size], completions[i: i + batch_size])
            logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits
            out.append(sequence_logprobs(logits, ids.to(device), comp.to(device)).float().cpu())
    return torch.cat(out)


@dataclass(frozen=True)
class PreferenceScore:
    """How often a model prefers the chosen answer, and by how much (nats of log-probability)."""

    accuracy: float  # fraction of pairs with log pi(chosen) > log pi(rejected)
    mean_margin: float  # mean of log pi(chosen) - log pi(rejected)
    n: int

    def __str__(self) -> str:
        return f"accuracy {self.accuracy:.1%} on {self.n} pairs, mean margin {self.mean_margin:+.2f} nats"


def preference_accuracy(model, tokenizer, pairs, batch_size: int = 16) -> PreferenceScore:
    """Does `model` give the chosen completion a higher log-probability than the rejected one?

    `pairs`: rows (dicts, or a datasets.Dataset) with "prompt", "chosen", "rejected" strings, e.g.
    from `format_orca_pair`. Scored in eval mode (no dropout); the model's mode is restored.

    >>> preference_accuracy(model, tok, held_out)        # doctest: +SKIP
    PreferenceScore(accuracy=0.8, mean_margin=3.1, n=40)
    """
    was_training = model.training
    model.eval()
    prompts = [r["prompt"] for r in pairs]
    chosen = completion_logprobs(model, tokenizer, prompts, [r["chosen"] for r in pairs], batch_size)
    rejected = completion_logprobs(model, tokenizer, prompts, [r["rejected"] for r in pairs], batch_size)
    if was_training:
        model.train()
    margins = chosen - rejected
    return PreferenceScore(float((margins > 0).float().mean()), float(margins.mean()), len(prompts))
