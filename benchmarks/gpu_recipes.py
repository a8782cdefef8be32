"""GPU memory fit and speed of the QLoRA recipes of lectures 03 and 04 (full settings), on the real shapes.

    python -m benchmarks gpu_recipes          # or: python -m benchmarks.gpu_recipes

The benchmark machine may not reach the Hub, and memory and speed do not depend on weight values,
so each model is built locally with random weights from its real architecture (helpers.MODELS[key]
.shape: Llama 2 7B, Llama 3.1 8B), saved once, then loaded and quantized to nf4 the way the
notebooks load the real checkpoints. Every recipe runs in its own subprocess (clean CUDA peak stats;
unsloth patches transformers on import, so the HF runs never see it). Three runs:

  hf-llama2     lecture 03: Llama 2 7B, LoRA r=64 on q/k/v/o, 4 sequences per step, transformers + peft + TRL
  hf-llama31    lecture 04's HF half: Llama 3.1 8B, r=16 on all 7 projections, 2 sequences per pass x 8
                accumulated (16 per step), adamw_8bit
  unsloth-llama31  lecture 04's Unsloth half: the same settings through Unsloth
(tests/test_gpu_recipes.py reads the lectures' `full` settings and checks these against them.)

Printed per run: peak reserved memory (GiB) and tokens/s (steps after the first, which warms up;
tokens are the non-padding tokens transformers counted from the batches' attention masks, the same
counter for both engines), then Unsloth/HF ratios of the two Llama 3.1 runs against the goals: every
run <= 15 GiB, Unsloth >= 1.5x HF tokens/s at <= 0.7x its peak memory. Precision comes from
helpers.compute_dtype (fp16 on a T4, bf16 from compute capability 8.0).

Exit status: 0 when every recipe ran and met its goals; 1 when a recipe crashed or was not run, or a
verdict says NO (so `make bench` fails on the GPU runner). Without CUDA it prints that nothing was
measured and returns 0 (`--device cpu` runs the same path on CPU, for tests).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BUDGET_GIB = 15.0
SPEEDUP_GOAL, MEMORY_RATIO_GOAL = 1.5, 0.7
SEQ_LEN = 256  # lamini_docs rows are short: 256 tokens covers a question and its answer
STEPS = 10


@dataclass(frozen=True)
class Recipe:
    name: str
    key: str  # helpers.MODELS key: the shape to build
    engine: str  # "hf" or "unsloth"
    lora_r: int
    targets: tuple[str, ...]
    batch_size: int  # sequences per forward/backward pass (per_device_train_batch_size)
    lora_alpha: int = 16
    shape: tuple | None = None  # helpers.models.Shape fields; None: the real shape of `key`
    grad_accum: int = 1  # passes per optimizer step: the peak depends on batch_size, not on this
    optim: str = "paged_adamw_32bit"  # on CPU always adamw_torch (bitsandbytes' optimizers need CUDA)


def recipes():
    from helpers.sft import ALL_LINEAR, ATTENTION

    return [
        # lecture 03 full: 4 sequences per step; lecture 04 full: 2 per pass x 8 accumulated = 16 per step
        Recipe("hf-llama2", "llama-2-7b-chat", "hf", 64, ATTENTION, 4),
        Recipe("hf-llama31", "llama-3.1-8b-instruct", "hf", 16, ALL_LINEAR, 2, grad_accum=8, optim="adamw_8bit"),
        Recipe("unsloth-llama31", "llama-3.1-8b-instruct", "unsloth", 16, ALL_LINEAR, 2, grad_accum=8,
               optim="adamw_8bit"),
    ]


@dataclass
class Result:
    recipe: str
    peak_reserved_gib: float
    tokens_per_s: float
    seconds: float
    trainable: int
    device: str
    tokens: int = 0  # non-padding tokens in the timed steps


def build_random_checkpoint(key: str, directory: Path, *, shape=None, device: str = "cuda") -> Path:
    """Save a random-weight Llama of `key`'s real shape (or `shape`) in bf16, with the tiny stand-in's
    tokenizer (its ids are < 1024, inside any real vocabulary). Returns `directory`."""
    import shutil

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from helpers import MODELS, resolve_model
    from helpers.models import Shape

    if (directory / "config.json").exists():
        return directory
    s = Shape(*shape) if isinstance(shape, (tuple, list)) else (shape or MODELS[key].shape)
    tok_dir = resolve_model(key, "tiny")
    tok = AutoTokenizer.from_pretrained(tok_dir)
    config = LlamaConfig(hidden_size=s.hidden_size, intermediate_size=s.intermediate_size,
                         num_hidden_layers=s.num_hidden_layers, num_attention_heads=s.num_attention_heads,
                         num_key_value_heads=s.num_key_value_heads, vocab_size=s.vocab_size,
                         tie_word_embeddings=s.tie_word_embeddings, max_position_embeddings=4096,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    with torch.device(device):  # initialise where it is fast; 16 GB of bf16 for the 8B shape
        model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(directory)
    for f in Path(tok_dir).iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(f, directory / f.name)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return directory


def _step_timer():
    """A TrainerCallback timing the steps after the first (which includes warm-up and allocation)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        start = end = None
        timed_steps = 0
        tokens_at_start = tokens_at_end = 0

        def on_step_end(self, args, state, control, **kw):
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
            now = time.perf_counter()
            if self.start is None:
                self.start, self.tokens_at_start = now, state.num_input_tokens_seen
            else:
                self.end, self.timed_steps = now, self.timed_steps + 1
                self.tokens_at_end = state.num_input_tokens_seen

    return StepTimer()


def run_recipe(recipe: Recipe, checkpoint: Path, *, steps: int = STEPS, seq_len: int = SEQ_LEN,
               device: str = "cuda") -> Result:
    """Train `steps` steps of `recipe` on random full-length sequences; measure memory and speed."""
    if recipe.engine == "unsloth":
        import unsloth  # noqa: F401 - before transformers/trl, which it patches
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    import helpers
    from helpers import sft

    dtype = helpers.compute_dtype(device)  # fp16 on a T4: unsloth refuses bf16 flags on a fp16 model
    if recipe.engine == "unsloth":
        from unsloth import FastLanguageModel  # noqa: I001 - only here, and only on a GPU

        model, tokenizer = FastLanguageModel.from_pretrained(model_name=str(checkpoint), max_seq_length=seq_len,
                                                             dtype=dtype, load_in_4bit=True)
        model = FastLanguageModel.get_peft_model(model, r=recipe.lora_r, lora_alpha=recipe.lora_alpha,
                                                 lora_dropout=0, bias="none", target_modules=list(recipe.targets),
                                                 use_gradient_checkpointing="unsloth", random_state=0)
    else:
        from peft import get_peft_model, prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        model = AutoModelForCausalLM.from_pretrained(checkpoint, quantization_config=sft.bnb_config(device),
                                                     dtype=dtype, device_map={"": device})
        if device == "cpu":
            sft.keep_cpu_4bit_trainable(model)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
        model = get_peft_model(model, sft.lora_config(r=recipe.lora_r, alpha=recipe.lora_alpha, dropout=0.0,
                                                      target_modules=recipe.targets))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    trainable = helpers.count_parameters(model).trainable
    g = torch.Generator().manual_seed(0)
    n_rows = steps * recipe.batch_size * recipe.grad_accum
    ids = torch.randint(3, min(len(tokenizer), model.config.vocab_size) - 1, (n_rows, seq_len), generator=g)
    data = Dataset.from_dict({"input_ids": ids.tolist()})  # pre-tokenized: every row exactly seq_len
    args = SFTConfig(output_dir=tempfile.mkdtemp(), max_steps=steps, per_device_train_batch_size=recipe.batch_size,
                     gradient_accumulation_steps=recipe.grad_accum,
                     learning_rate=2e-4, optim="adamw_torch" if device == "cpu" else recipe.optim,
                     max_length=seq_len, logging_steps=1, report_to="none", save_strategy="no",
                     gradient_checkpointing=recipe.engine == "hf", dataloader_pin_memory=False,
                     **sft.COUNT_TOKENS, **sft.precision_flags(dtype))
    timer = _step_timer()
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer, callbacks=[timer])
    with helpers.track_peak_memory(device) as peak:
        trainer.train()
    seconds = (timer.end - timer.start) if timer.timed_steps else float("nan")
    tokens = timer.tokens_at_end - timer.tokens_at_start  # attention-mask sums of the timed steps
    return Result(recipe.name, round(peak.peak_reserved_gib, 2), round(tokens / seconds, 1), round(seconds, 2),
                  trainable, peak.device, int(tokens))


def verdict(results: dict[str, Result]) -> list[str]:
    """Lines comparing the measured runs with the goals (no figure is printed that was not measured);
    a goal that is missed says "NO"."""
    lines = [f"{r.recipe:<16} peak reserved {r.peak_reserved_gib:6.2f} GiB  {r.tokens_per_s:9.1f} tokens/s  "
             f"(<= {BUDGET_GIB:.0f} GiB: {'yes' if r.peak_reserved_gib <= BUDGET_GIB else 'NO'})"
             for r in results.values()]
    hf, un = results.get("hf-llama31"), results.get("unsloth-llama31")
    if hf and un:
        speed, mem = un.tokens_per_s / hf.tokens_per_s, un.peak_reserved_gib / hf.peak_reserved_gib
        lines.append(f"Unsloth / HF (Llama 3.1 8B, same settings): {speed:.2f}x tokens/s "
                     f"(goal >= {SPEEDUP_GOAL}: {'yes' if speed >= SPEEDUP_GOAL else 'NO'}), "
                     f"{mem:.2f}x peak memory (goal <= {MEMORY_RATIO_GOAL}: {'yes' if mem <= MEMORY_RATIO_GOAL else 'NO'})")
    return lines


def _child(recipe_json: str, checkpoint: str, steps: int, seq_len: int, device: str) -> None:
    fields = json.loads(recipe_json)
    recipe = Recipe(**{**fields, "targets": tuple(fields["targets"]),
                       "shape": tuple(fields["shape"]) if fields.get("shape") else None})
    result = run_recipe(recipe, Path(checkpoint), steps=steps, seq_len=seq_len, device=device)
    print("RESULT " + json.dumps(asdict(result)))


def main(argv=None, recipe_list=None) -> int:
    """Run every recipe (`recipe_list`, default `recipes()`) in its own process; print the figures and
    the verdict; return the exit status (see the module docstring)."""
    import torch

    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_recipes")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--seq-len", type=int, default=SEQ_LEN)
    parser.add_argument("--workdir", default=None, help="where the random checkpoints go (default: a temp dir)")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                        help="cpu: the same path on CPU with small shapes (tests); figures mean nothing there")
    parser.add_argument("--child", nargs=2, metavar=("RECIPE_JSON", "CHECKPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args([] if argv is None and __name__ != "__main__" else argv)
    if args.child:
        _child(args.child[0], args.child[1], args.steps, args.seq_len, args.device)
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU: skipped (GPU figures not measured)")
        return 0
    from helpers import unsloth_support

    work = Path(args.workdir or tempfile.mkdtemp(prefix="gpu-recipes-"))
    where = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU (smoke run)"
    print(f"GPU: {where}, {time.strftime('%Y-%m-%d')}, {args.steps} steps x {args.seq_len} tokens")
    ok, why = unsloth_support.unsloth_available() if args.device == "cuda" else (False, "CPU run")
    results: dict[str, Result] = {}
    failures: list[str] = []
    for recipe in recipe_list or recipes():
        if recipe.engine == "unsloth" and not ok:
            failures.append(f"{recipe.name}: not run: {why}")
            print(failures[-1])
            continue
        ckpt = build_random_checkpoint(recipe.key, work / f"{recipe.key}-{recipe.shape or 'real'}",
                                       shape=recipe.shape, device=args.device)
        proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_recipes", "--steps", str(args.steps),
                               "--seq-len", str(args.seq_len), "--device", args.device,
                               "--child", json.dumps(asdict(recipe)), str(ckpt)],
                              capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            failures.append(f"{recipe.name}: failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
            print(failures[-1])
            continue
        results[recipe.name] = Result(**json.loads(line[len("RESULT "):]))
    lines = verdict(results)
    print("\n".join(lines))
    missed = [ln for ln in lines if ": NO" in ln]
    if failures or missed:
        print(f"FAILED: {len(failures)} recipe(s) crashed or did not run, {len(missed)} verdict(s) missed a goal")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
