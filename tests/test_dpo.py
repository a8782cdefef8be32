"""helpers.dpo: known answers, TRL 1.14's DPOTrainer as the outside reference, and "training moved it"."""

from __future__ import annotations

import math
import types

import pytest
import torch

from helpers import dpo, load_course_dataset, resolve_model

KEY = "tinyllama-1.1b-chat"


# --- known answers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("beta", [0.01, 0.1, 1.0, 10.0])
def test_zero_margin_loss_is_log_2_for_every_beta(beta):
    policy = torch.tensor([-5.0, -40.0, -7.5])
    loss, chosen, rejected = dpo.dpo_loss(policy, policy - 3, policy, policy - 3, beta)
    assert loss.item() == pytest.approx(math.log(2))
    assert chosen.abs().max().item() == 0 and rejected.abs().max().item() == 0


def test_dpo_loss_by_hand():
    # chosen log-ratio +2, rejected -2, beta 0.5: margin 2, loss log(1 + e^-2)
    loss, chosen, rejected = dpo.dpo_loss(torch.tensor([-8.0]), torch.tensor([-12.0]),
                                          torch.tensor([-10.0]), torch.tensor([-10.0]), beta=0.5)
    assert (chosen.item(), rejected.item()) == (1.0, -1.0)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-2)))
    # A larger beta sharpens the same log-ratios: lower loss when the policy already prefers chosen.
    sharper, _, _ = dpo.dpo_loss(torch.tensor([-8.0]), torch.tensor([-12.0]),
                                 torch.tensor([-10.0]), torch.tensor([-10.0]), beta=2.0)
    assert sharper < loss


def test_sequence_logprobs_scores_only_completion_tokens():
    logits = torch.zeros(2, 4, 5)  # uniform over 5 tokens
    labels = torch.tensor([[1, 2, 3, 4], [1, 2, 0, 0]])
    mask = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 0]])  # 2 completion tokens, then 1 (and padding)
    out = dpo.sequence_logprobs(logits, labels, mask)
    assert out.shape == (2,)
    assert out.tolist() == pytest.approx([2 * math.log(1 / 5), math.log(1 / 5)])
    # A confident, correct prediction of token 3 at position 1 raises only row 0.
    logits[0, 1, 3] = 20.0
    assert dpo.sequence_logprobs(logits, labels, mask)[0] > out[0]


def test_keep_pair_and_format_orca_pair_match_the_books_strings(tokenizer):
    row = {"system": "You are helpful.", "input": "What is 2 plus 7?", "chosen": "2 plus 7 is 9.",
           "rejected": "Not my problem.", "status": "unchanged", "chosen_score": 9.0, "in_gsm8k_train": False}
    assert dpo.keep_pair(row)
    assert not dpo.keep_pair({**row, "chosen_score": 7.0})
    assert not dpo.keep_pair({**row, "in_gsm8k_train": True})
    pair = dpo.format_orca_pair(row, tokenizer)
    # Hands-On LLMs' hand-built TinyLlama strings (its completions end "</s>\n").
    book_prompt = "<|system|>\nYou are helpful.</s>\n<|user|>\nWhat is 2 plus 7?</s>\n<|assistant|>\n"
    assert pair == {"prompt": book_prompt, "chosen": "2 plus 7 is 9.</s>", "rejected": "Not my problem.</s>"}
    assert pair["prompt"] + pair["chosen"] + "\n" == book_prompt + "2 plus 7 is 9.</s>\n"


# --- TRL as the outside reference ------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(KEY, "tiny"))


@pytest.fixture(scope="module")
def pairs(tokenizer):
    ds = load_course_dataset("orca_dpo_pairs", "tiny")["train"].filter(dpo.keep_pair)
    ds = ds.map(lambda r: dpo.format_orca_pair(r, tokenizer), remove_columns=ds.column_names)
    return ds.train_test_split(test_size=0.2, seed=0)


def _trainer(tokenizer, train, tmp_path, *, peft: bool, steps: int = 1, lr: float = 1e-3, ref_model=None):
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model(KEY, "tiny"))
    args = DPOConfig(output_dir=str(tmp_path), beta=0.1, max_length=512, max_steps=steps, learning_rate=lr,
                     per_device_train_batch_size=8, logging_steps=1, report_to="none", save_strategy="no",
                     bf16=False, fp16=False, disable_tqdm=True, seed=0)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM") if peft else None
    return DPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=train, processing_class=tokenizer,
                      peft_config=lora)


class _FixedLogits(torch.nn.Module):
    """Stands in for a model: returns the same logits whatever the input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, **kwargs):
        return types.SimpleNamespace(logits=self.logits)


def test_dpo_loss_equals_trl_on_random_logits(tokenizer, pairs, tmp_path):
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(resolve_model(KEY, "tiny"))
    trainer = _trainer(tokenizer, pairs["train"], tmp_path, peft=False, ref_model=ref)
    g = torch.Generator().manual_seed(0)
    B, T, V = 3, 7, 11  # 3 pairs: rows 0-2 chosen, rows 3-5 rejected (TRL's layout)
    policy_logits = torch.randn(2 * B, T, V, generator=g) * 3
    ref_logits = torch.randn(2 * B, T, V, generator=g) * 3
    input_ids = torch.randint(0, V, (2 * B, T), generator=g)
    completion_mask = (torch.arange(T) >= torch.randint(1, T - 1, (2 * B, 1), generator=g)).long()
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "completion_mask": completion_mask}
    trainer.ref_model = _FixedLogits(ref_logits)

    trl_loss = trainer.compute_loss(_FixedLogits(policy_logits), batch)

    policy = dpo.sequence_logprobs(policy_logits, input_ids, completion_mask)
    reference = dpo.sequence_logprobs(ref_logits, input_ids, completion_mask)
    ours, chosen, rejected = dpo.dpo_loss(*policy.chunk(2), *reference.chunk(2), beta=trainer.beta)
    torch.testing.assert_close(ours, trl_loss, rtol=1e-5, atol=1e-6)
    assert ours.item() != pytest.approx(math.log(2))  # a real margin, not the trivial case
    logged = trainer._metrics["train" if trainer.model.training else "eval"]
    assert logged["rewards/chosen"][-1] == pytest.approx(chosen.mean().item(), abs=1e-6)
    assert logged["rewards/margins"][-1] == pytest.approx((chosen - rejected).mean().item(), abs=1e-6)


def test_dpo_loss_equals_trl_on_a_tiny_model_batch(tokenizer, pairs, tmp_path):
    trainer = _trainer(tokenizer, pairs["train"], tmp_path, peft=True, steps=3)
    trainer.train()  # move the adapter so policy != reference
    model = trainer.model.eval()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    with torch.no_grad():
        trl_loss = trainer.compute_loss(model, batch)
        kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        policy_logits = model(**kwargs).logits
        with model.disable_adapter():  # TRL's implicit reference: the same weights, adapter off
            ref_logits = model(**kwargs).logits
    policy = dpo.sequence_logprobs(policy_logits, batch["input_ids"], batch["completion_mask"])
    reference = dpo.sequence_logprobs(ref_logits, batch["input_ids"], batch["completion_mask"])
    ours, chosen, rejected = dpo.dpo_loss(*policy.chunk(2), *reference.chunk(2), beta=trainer.beta)
    torch.testing.assert_close(ours, trl_loss, rtol=1e-5, atol=1e-6)
    assert (chosen - rejected).abs().max() > 0


def test_completion_batch_tokenizes_like_trl(tokenizer, pairs, tmp_path):
    trainer = _trainer(tokenizer, pairs["train"], tmp_path, peft=True)
    rows = [trainer.train_dataset[i] for i in range(4)]
    collated = trainer.data_collator(rows)
    raw = pairs["train"].select(range(4))
    ids, attn, comp = dpo.completion_batch(tokenizer, list(raw["prompt"]) * 2, list(raw["chosen"]) + list(raw["rejected"]))
    T = collated["input_ids"].shape[1]
    assert ids.shape[1] == T
    assert torch.equal(ids * attn, collated["input_ids"] * collated["attention_mask"])
    assert torch.equal(attn, collated["attention_mask"])
    assert torch.equal(comp, collated["completion_mask"])


# --- training changes something ----------------------------------------------------------------------

def test_dpo_training_on_shipped_pairs_raises_held_out_accuracy(tokenizer, pairs, tmp_path):
    trainer = _trainer(tokenizer, pairs["train"], tmp_path, peft=True, steps=40, lr=3e-3)
    before = dpo.preference_accuracy(trainer.model, tokenizer, pairs["test"])
    trainer.train()
    after = dpo.preference_accuracy(trainer.model, tokenizer, pairs["test"])
    assert before.n == after.n == len(pairs["test"])
    assert after.mean_margin > before.mean_margin + 1.0, (before, after)
    assert after.accuracy > before.accuracy, (before, after)


def test_doctests():
    import doctest

    assert doctest.testmod(dpo, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0
