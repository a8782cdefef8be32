"""Lecture 05's DPO against TRL's own DPOTrainer, used only through its public entry points.

Every comparison builds a real `DPOTrainer` on the tiny stand-in (so TRL's __init__ — which from trl
1.15 on rewires the model's forward — always runs), and reads TRL's numbers from `evaluate()`. The
reference formulas below are written here independently of the lecture (cross-entropy instead of
log-softmax + gather), so they test the behaviour the notebook asserts without importing it.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from helpers import dpo, load_course_dataset, resolve_model

KEY = "tinyllama-1.1b-chat"
HELD_OUT_PROMPTS = 16


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(KEY, "tiny"))


@pytest.fixture(scope="module")
def kept():
    return load_course_dataset("orca_dpo_pairs", "tiny")["train"].filter(dpo.keep_pair)


@pytest.fixture(scope="module")
def pairs(tokenizer, kept):
    train, test = dpo.split_by_prompt(kept, test_prompts=HELD_OUT_PROMPTS, seed=0)
    fmt = dict(function=lambda r: dpo.format_orca_pair(r, tokenizer), remove_columns=kept.column_names)
    return {"train": train.map(**fmt), "test": test.map(**fmt)}


def skip_if_trl_dpo_needs_triton() -> None:
    """trl 1.15's DPOTrainer computes log-probs with a Triton kernel and has no fallback: without triton
    (CPU-only torch) the kernel is None and training fails at the first batch. Skip visibly there;
    trl 1.14 (a plain-torch kernel) and 1.16 (a CPU fallback) run."""
    import trl
    from trl.trainer import utils

    if getattr(utils, "_ChunkedLogProbFunction", object) is None:
        pytest.skip(f"trl {trl.__version__}'s DPOTrainer needs triton, which this CPU-only torch lacks")


def build_trainer(tokenizer, train, out, *, eval_dataset=None, steps=1, lr=1e-3, loss_type="sigmoid",
                  max_length=512, eval_batch=8, beta=0.1):
    """A DPOTrainer built the ordinary way (LoRA, implicit reference). Skips visibly where this TRL's
    DPOTrainer cannot run on CPU."""
    import trl
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    skip_if_trl_dpo_needs_triton()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model(KEY, "tiny"))
    args = DPOConfig(output_dir=str(out), beta=beta, loss_type=[loss_type], max_length=max_length, max_steps=steps,
                     learning_rate=lr, per_device_train_batch_size=8, per_device_eval_batch_size=eval_batch,
                     logging_steps=1, report_to="none", save_strategy="no", bf16=False, fp16=False,
                     disable_tqdm=True, seed=0)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    try:
        return DPOTrainer(model=model, args=args, train_dataset=train, eval_dataset=eval_dataset,
                          processing_class=tokenizer, peft_config=lora)
    except (ImportError, RuntimeError) as err:
        if "triton" in str(err).lower():
            pytest.skip(f"trl {trl.__version__}: DPOTrainer cannot run on this CPU-only machine ({err})")
        raise


def reference_logps(model, batch):
    """Sum of completion-token log-probs per row: -cross_entropy of each next token, masked."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), batch["input_ids"][:, 1:], reduction="none")
    return -(nll * batch["completion_mask"][:, 1:]).sum(dim=1)


# --- plumbing ----------------------------------------------------------------------------------------

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


def test_split_by_prompt_holds_out_whole_prompts(kept):
    train, test = dpo.split_by_prompt(kept, test_prompts=HELD_OUT_PROMPTS, seed=0)
    assert len({r for r in test["input"]}) == HELD_OUT_PROMPTS
    assert not set(train["input"]) & set(test["input"])
    held_chosen = set(test["chosen"])
    assert not (held_chosen | set(test["rejected"])) & set(train["chosen"])  # no held-out answer trained as good
    assert not held_chosen & set(train["rejected"])  # nor a held-out right answer trained as bad
    assert set(test["rejected"]) & set(train["rejected"])  # the shared refusals stay: they may generalise
    assert len(train) > 0.5 * (len(kept) - len(test))  # leaks dropped, most of the data kept
    # What a row-level split (the old one) does on this data: most held-out prompts were trained on.
    rows = kept.train_test_split(test_size=len(test), seed=0)
    assert len(set(rows["train"]["input"]) & set(rows["test"]["input"])) > HELD_OUT_PROMPTS // 2
    again, _ = dpo.split_by_prompt(kept, test_prompts=HELD_OUT_PROMPTS, seed=0)
    assert again["input"] == train["input"]


def test_completion_batch_tokenizes_like_trls_collator(tokenizer, pairs, tmp_path):
    longest_prompt = max(len(tokenizer(text=p)["input_ids"]) for p in pairs["train"]["prompt"])
    for max_length in (512, longest_prompt + 2):  # the second cuts completions: TRL keeps the start
        trainer = build_trainer(tokenizer, pairs["train"], tmp_path, max_length=max_length)
        rows = [trainer.train_dataset[i] for i in range(4)]
        collated = trainer.data_collator(rows)
        assert len(trainer.train_dataset) == len(pairs["train"])  # no pair dropped: rows line up
        raw = pairs["train"].select(range(4))
        ids, attn, comp = dpo.completion_batch(tokenizer, list(raw["prompt"]) * 2,
                                               list(raw["chosen"]) + list(raw["rejected"]), max_length=max_length)
        assert ids.shape == collated["input_ids"].shape
        assert torch.equal(ids * attn, collated["input_ids"] * collated["attention_mask"])
        assert torch.equal(attn, collated["attention_mask"])
        assert torch.equal(comp, collated["completion_mask"])
        assert (comp.sum(dim=1) > 0).all()


# --- the loss, the rewards and the log-probs: TRL's evaluate() as the outside reference -------------------

@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_metrics_equal_trl_evaluate_on_a_trained_adapter(tokenizer, pairs, tmp_path, loss_type):
    eval_pairs = pairs["test"].select(range(6))
    trainer = build_trainer(tokenizer, pairs["train"], tmp_path, eval_dataset=eval_pairs, steps=3, lr=5e-3,
                            loss_type=loss_type, eval_batch=len(eval_pairs))
    trainer.train()  # move the adapter: policy != reference
    metrics = trainer.evaluate()  # one eval batch holding every pair
    model = trainer.model.eval()
    (batch,) = list(trainer.get_eval_dataloader())
    batch = {k: v.to(model.device) for k, v in batch.items()}
    with torch.no_grad():
        policy = reference_logps(model, batch)
        with model.disable_adapter():  # TRL's implicit reference: the same weights, adapter off
            ref = reference_logps(model, batch)
    (pc, pr), (rc, rr) = policy.chunk(2), ref.chunk(2)
    beta = trainer.args.beta
    delta = (pc - rc) - (pr - rr)
    if loss_type == "sigmoid":
        loss = F.softplus(-beta * delta).mean()
    else:  # IPO on per-token averages (TRL's normalisation): squared distance of the margin from 1 / (2 beta)
        n_chosen, n_rejected = batch["completion_mask"].sum(dim=1).chunk(2)
        loss = (((pc - rc) / n_chosen - (pr - rr) / n_rejected - 1 / (2 * beta)) ** 2).mean()
    assert delta.abs().max() > 1e-3  # a trained adapter: not the trivial log 2 point
    assert metrics["eval_loss"] == pytest.approx(loss.item(), rel=1e-4)
    assert metrics["eval_rewards/chosen"] == pytest.approx(beta * (pc - rc).mean().item(), abs=1e-5)
    assert metrics["eval_rewards/rejected"] == pytest.approx(beta * (pr - rr).mean().item(), abs=1e-5)
    assert metrics["eval_rewards/accuracies"] == pytest.approx((delta > 0).float().mean().item())
    assert metrics["eval_logps/chosen"] == pytest.approx(pc.mean().item(), rel=1e-4)
    # helpers scores the same pairs the same way (tokenised from the raw strings, in small batches)
    chosen = dpo.completion_logprobs(model, tokenizer, eval_pairs["prompt"], eval_pairs["chosen"], batch_size=4)
    assert chosen.mean().item() == pytest.approx(metrics["eval_logps/chosen"], rel=1e-4)
    score = dpo.preference_accuracy(model, tokenizer, eval_pairs, batch_size=4, max_length=512)
    assert score.mean_margin == pytest.approx(metrics["eval_logps/chosen"] - metrics["eval_logps/rejected"], abs=1e-3)
    assert score.accuracy == pytest.approx(((pc - pr) > 0).float().mean().item())


# --- training on held-out prompts ------------------------------------------------------------------------

def test_dpo_training_learns_the_preference_on_held_out_prompts(tokenizer, pairs, tmp_path):
    held_out = pairs["test"]
    trainer = build_trainer(tokenizer, pairs["train"], tmp_path, eval_dataset=held_out, steps=40, lr=5e-3,
                            eval_batch=4)
    before = dpo.preference_accuracy(trainer.model, tokenizer, held_out, max_length=512)
    trainer.train()
    after = dpo.preference_accuracy(trainer.model, tokenizer, held_out, max_length=512)
    gain, se = dpo.paired_gain(before, after)
    assert gain > 2 * se > 0, (before, after, gain, se)  # the raw log-prob margin moved, beyond noise
    metrics = trainer.evaluate()
    acc, n = metrics["eval_rewards/accuracies"], len(held_out)
    assert acc - 0.5 > 2 * math.sqrt(0.25 / n), metrics  # implicit-reward accuracy clearly above chance
    assert metrics["eval_rewards/margins"] > 0, metrics


def test_doctests():
    import doctest

    assert doctest.testmod(dpo, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0
