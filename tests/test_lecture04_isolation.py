"""Lecture 04's comparison is valid by construction: the HF recipe trains before anything imports
unsloth (which patches transformers and replaces TRL's SFTTrainer/SFTConfig on import), and both
recipes count tokens the same way, from the attention masks of the batches trained on."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

import helpers
from helpers import sft

LECTURE = Path(__file__).resolve().parents[1] / "lectures" / "04_unsloth_llama31.ipynb"
UNSLOTH_MARKERS = ("unsloth_available(", "import unsloth", "from unsloth")


def _code_cells() -> list[str]:
    nb = json.loads(LECTURE.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_hf_recipe_trains_before_any_cell_can_import_unsloth():
    """Run all executes cells in order in one kernel: the cell that trains the HF recipe must come
    before every cell that imports unsloth (directly or through the availability check)."""
    cells = _code_cells()
    train = [i for i, src in enumerate(cells) if "hf_trainer.train()" in src]
    unsloth = [i for i, src in enumerate(cells) if any(m in src for m in UNSLOTH_MARKERS)]
    assert len(train) == 1 and unsloth, (train, unsloth)
    assert train[0] < min(unsloth), f"cell {min(unsloth)} can import unsloth before the HF recipe trains"
    assert not any(m in src for src in cells[: train[0] + 1] for m in UNSLOTH_MARKERS)
    # The lecture itself checks it at run time, with the watch attached to the HF trainer.
    assert "sft.import_watch(" in "".join(cells) and "hf_watch.ever_imported" in "".join(cells)
    assert "**sft.COUNT_TOKENS" in "".join(cells)


def _hf_recipe(extra_callbacks=(), rows: int = 8, batch_size: int = 4, count="non_padding"):
    """Lecture 04's HF recipe on the tiny stand-in, one epoch (every row seen exactly once)."""
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    set_seed(0)
    model, tokenizer = sft.load_4bit("llama-3.1-8b-instruct", "tiny")
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    model = get_peft_model(model, sft.lora_config(r=4, alpha=4, dropout=0.0, target_modules=sft.ALL_LINEAR))
    data = helpers.load_course_dataset("lamini_docs", "tiny")["train"].select(range(rows))
    pairs = data.map(sft.lamini_prompt_completion, remove_columns=data.column_names)
    watch = sft.import_watch("unsloth")
    args = SFTConfig(output_dir="build/test-lecture04", num_train_epochs=1, per_device_train_batch_size=batch_size,
                     learning_rate=1e-3, optim="adamw_torch", max_length=128, logging_steps=1, report_to="none",
                     save_strategy="no", completion_only_loss=True, gradient_checkpointing=True,
                     include_num_input_tokens_seen=count, **sft.precision_flags(helpers.compute_dtype("cpu")))
    trainer = SFTTrainer(model=model, args=args, train_dataset=pairs, processing_class=tokenizer,
                         callbacks=[watch, *extra_callbacks])
    result = trainer.train()
    return trainer, result, watch


@pytest.fixture(scope="module")
def clean_run():
    assert "unsloth" not in sys.modules  # the test process itself never imports it
    return _hf_recipe()


def test_watch_sees_no_unsloth_during_the_real_hf_recipe(clean_run):
    trainer, _, watch = clean_run
    assert [e for e, *_ in watch.seen] == ["train_begin", "step_end", "step_end"]
    assert not watch.ever_imported


def test_watch_catches_unsloth_imported_mid_training(monkeypatch):
    """The wrong order (unsloth imported while the HF recipe runs) is caught: a callback puts a module
    named `unsloth` in sys.modules after the first step, as an earlier `import unsloth` would have."""
    from transformers import TrainerCallback

    class ImportsUnsloth(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            monkeypatch.setitem(sys.modules, "unsloth", types.ModuleType("unsloth"))

    _, _, watch = _hf_recipe([ImportsUnsloth()])
    assert watch.ever_imported and watch.seen[0] == ("train_begin", 0, False)


def test_tokens_are_the_attention_masks_of_the_batches_seen(clean_run):
    """One epoch sees every row once, so the non-padding count must equal the rows' total length;
    counting padding too ("all") would give batch x longest row per step."""
    trainer, result, _ = clean_run
    lengths = [len(r["input_ids"]) for r in trainer.train_dataset]
    stats = sft.run_stats("HF", trainer.state.log_history, result.metrics, types.SimpleNamespace(peak_reserved_gib=0.0), 1)
    assert stats.tokens == sum(lengths)
    assert len(set(lengths)) > 1  # rows differ in length, so padding would change the count
    padded = sum(4 * max(lengths[i:i + 4]) for i in range(0, len(lengths), 4))
    assert stats.tokens < padded


def test_both_recipes_take_precision_from_the_card():
    """Unsloth raises "Model is in float16 precision but you want to use bfloat16" on a T4 when the
    flags say bf16: both halves take the dtype and the flags from helpers.compute_dtype, none is typed in."""
    import re

    code = "\n".join(_code_cells())
    assert "DTYPE = helpers.compute_dtype(DEVICE)" in code
    assert "**sft.precision_flags(DTYPE)" in code  # training_args, shared by both recipes
    assert re.search(r"FastLanguageModel\.from_pretrained\((?:(?!load_in_4bit).){0,300}dtype=DTYPE,", code, re.S)
    assert not re.search(r"\b(bf16|fp16)\s*=\s*(True|False)", code)
    assert not re.search(r"dtype\s*=\s*torch\.(bfloat16|float16)", code)
