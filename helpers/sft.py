"""The QLoRA supervised fine-tuning recipe shared by lectures 03, 04 and 05: load in 4-bit, add LoRA,
format the Lamini-style data with the model's own chat template, generate, and summarise a run.

Each function does one step, so a notebook shows the recipe as a sequence of small calls:

    model, tokenizer = load_4bit("llama-2-7b-chat", "tiny")       # nf4 + double quant
    model = prepare_model_for_kbit_training(model)
    config = lora_config(r=64, alpha=16, dropout=0.1)               # q/k/v/o, as in the seed
    train = dataset["train"].map(lamini_messages, remove_columns=["question", "answer"])

Worked example (the formatting functions need no model):

>>> row = {"question": "How do I load a model?", "answer": "Call load()."}
>>> lamini_prompt_completion(row)["completion"]
[{'role': 'assistant', 'content': 'Call load().'}]
"""

from __future__ import annotations

from dataclasses import dataclass

from .hub import ensure_chat_template

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
ALL_LINEAR = ATTENTION + ("gate_proj", "up_proj", "down_proj")


# --- data ------------------------------------------------------------------------------------------

def lamini_messages(example: dict) -> dict:
    """One Lamini row as a conversation (TRL's "messages" format: loss on every token).

    >>> lamini_messages({"question": "Q?", "answer": "A."})["messages"][1]
    {'role': 'assistant', 'content': 'A.'}
    """
    return {"messages": [{"role": "user", "content": example["question"]},
                         {"role": "assistant", "content": example["answer"]}]}


def lamini_prompt_completion(example: dict) -> dict:
    """One Lamini row as TRL's conversational prompt/completion pair: the loss covers the answer only
    (TRL masks the tokens the chat-templated prompt produces)."""
    m = lamini_messages(example)["messages"]
    return {"prompt": m[:1], "completion": m[1:]}


def format_lamini(example: dict, tokenizer) -> dict:
    """One Lamini row rendered as plain text with the tokenizer's chat template: {"text": ...}.

    The leading BOS string is dropped because the tokenizer adds BOS itself when it encodes the text,
    so `tokenizer(text).input_ids` equals the chat template's token ids (no double BOS).
    For Llama 2 the text is ``[INST] <question> [/INST] <answer> </s>``.
    """
    text = tokenizer.apply_chat_template(lamini_messages(example)["messages"], tokenize=False)
    bos = tokenizer.bos_token
    adds_bos = bos is not None and tokenizer("x").input_ids[:1] == [tokenizer.bos_token_id]
    if adds_bos and text.startswith(bos):
        text = text[len(bos):]
    return {"text": text}


def response_markers(tokenizer) -> tuple[str, str]:
    """(instruction_part, response_part): the template text that opens a user turn and an assistant
    turn, found by rendering a two-exchange chat with sentinel contents. Unsloth's
    `train_on_responses_only` masks everything outside the response parts with them.

    For Llama 3.1: ('<|start_header_id|>user<|end_header_id|>\\n\\n',
    '<|start_header_id|>assistant<|end_header_id|>\\n\\n'); for Llama 2: ('<s>[INST] ', '[/INST] ').
    """
    chat = [{"role": "user", "content": "@@U1@@"}, {"role": "assistant", "content": "@@A1@@"},
            {"role": "user", "content": "@@U2@@"}, {"role": "assistant", "content": "@@A2@@"}]
    text = tokenizer.apply_chat_template(chat, tokenize=False)

    def between(a: str, b: str) -> str:
        part = text[text.index(a) + len(a):text.index(b)].lstrip()
        eos = tokenizer.eos_token or ""
        # The previous turn's end-of-turn token (and spacing) belongs to that turn, not the marker.
        return part[len(eos):].lstrip() if eos and part.startswith(eos) else part

    return between("@@A1@@", "@@U2@@"), between("@@U1@@", "@@A1@@")


# --- model -----------------------------------------------------------------------------------------

def bnb_config(device: str | None = None):
    """4-bit NormalFloat with double quantization; the compute dtype comes from the device
    (helpers.compute_dtype: bf16 where supported, fp16 on a T4, fp32 on CPU).

    >>> c = bnb_config("cpu")
    >>> c.bnb_4bit_quant_type, c.bnb_4bit_use_double_quant, c.bnb_4bit_compute_dtype
    ('nf4', True, torch.float32)
    """
    from transformers import BitsAndBytesConfig

    from .device import compute_dtype

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype(device))


def load_4bit_model(path, device: str):
    """The causal LM at `path` (a Hub id or a local directory) with its linear layers in nf4.

    Checkpoints that are already 4-bit (e.g. unsloth's ``…-bnb-4bit``) carry their own quantization
    config and load as they are; the others are quantized while loading.
    """
    from transformers import AutoModelForCausalLM

    from .device import compute_dtype

    dtype = compute_dtype(device)
    prequantized = is_prequantized(path)
    kwargs = {} if prequantized else {"quantization_config": bnb_config(device)}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map={"": device}, **kwargs)
    if prequantized:
        # The file's config fixes the 4-bit layers' compute dtype (bf16 in unsloth's checkpoints); on a
        # T4 that would be emulated bf16. Compute in this device's dtype instead, as bnb_config does.
        from bitsandbytes.nn import Linear4bit

        for module in model.modules():
            if isinstance(module, Linear4bit):
                module.compute_dtype = dtype
        model.config.quantization_config.bnb_4bit_compute_dtype = dtype
    model.config.use_cache = False  # the KV cache is for generation; training recomputes everything
    if str(device) == "cpu":
        keep_cpu_4bit_trainable(model)
    return model


def keep_cpu_4bit_trainable(model) -> int:
    """Turn off bitsandbytes' CPU inference repacking in every 4-bit layer of `model`; returns how many.

    On a CPU with AVX512-BF16, bitsandbytes (0.50) rewrites a `Linear4bit` weight in place, the first
    time it runs in eval mode without gradients (generation, a no-grad evaluation), into a bf16
    inference layout. That layout (1) requires out_features % 32 == 0 and in_features % blocksize == 0,
    or it fails with "N must be divisible by block_n"; (2) stays after `model.train()`, and its kernel
    (`gemv_4bit`) has no autograd formula, so the next training step silently drops the gradient that
    flows through the frozen 4-bit weights into the earlier layers' adapters. Lessons generate before
    they train, so the lesson keeps the dequantize-and-matmul path that training uses everywhere:
    the same numbers on every CPU. (CUDA never repacks.)
    """
    n = 0
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


def is_prequantized(path) -> bool:
    """Whether the checkpoint at `path` is stored quantized (its config carries a quantization_config)."""
    from transformers import AutoConfig

    return getattr(AutoConfig.from_pretrained(path), "quantization_config", None) is not None


def load_4bit(key: str, profile: str):
    """(model, tokenizer) for model `key` in `profile`, the model loaded by `load_4bit_model`.

    A tokenizer without a pad token (Llama 2) pads with its EOS token, on the right for training.
    """
    from transformers import AutoTokenizer

    from .device import device_for
    from .models import resolve_model

    path = resolve_model(key, profile)
    tokenizer = ensure_chat_template(AutoTokenizer.from_pretrained(path), key)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return load_4bit_model(path, device_for(profile)), tokenizer


def lora_config(r: int = 64, alpha: int = 16, dropout: float = 0.1, target_modules=ATTENTION):
    """peft LoraConfig for a causal LM: rank `r`, scale alpha/r, on the named projections.

    >>> c = lora_config(r=16, alpha=16, dropout=0.0, target_modules=ALL_LINEAR)
    >>> c.r, sorted(c.target_modules)[:2], c.task_type
    (16, ['down_proj', 'gate_proj'], 'CAUSAL_LM')
    """
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                      bias="none", task_type="CAUSAL_LM")


def precision_flags(dtype) -> dict:
    """TrainingArguments' mixed-precision switches for a compute dtype.

    >>> import torch
    >>> precision_flags(torch.float16), precision_flags(torch.float32)
    ({'bf16': False, 'fp16': True}, {'bf16': False, 'fp16': False})
    """
    import torch

    return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16}


def generate(model, tokenizer, prompts, max_new_tokens: int = 48) -> list[str]:
    """Greedy answers to user `prompts` (strings), each wrapped in the chat template; returns the new
    text only. Pads on the left for the batch, then restores the tokenizer's padding side."""
    import torch

    chats = [[{"role": "user", "content": p}] for p in prompts]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
        # The rendered text already starts with BOS where the template writes one.
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, use_cache=True)
        if was_training:
            model.train()
    finally:
        tokenizer.padding_side = side
    new = out[:, batch["input_ids"].shape[1]:]  # (B, new tokens)
    return [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]


# --- held-out evaluation -----------------------------------------------------------------------------

@dataclass(frozen=True)
class HeldOut:
    """Mean negative log-likelihood (nats per token) on held-out rows, split as TRL's completion-only
    loss splits a row: the prompt's tokens (the user turn and the assistant header) and the answer's
    (the assistant's text and its end-of-turn token)."""

    prompt_nll: float
    answer_nll: float
    answer_tokens: int

    @property
    def perplexity(self) -> float:
        """exp(answer NLL): the answer perplexity, the figure the completion-only loss trains down."""
        import math

        return math.exp(self.answer_nll)


def held_out(model, tokenizer, rows) -> HeldOut:
    """Score `rows` (dicts with "question" and "answer") one at a time, unpadded, under the chat
    template: the token at position t is predicted from the logits at t - 1. The first token (BOS)
    is predicted by nothing and is not scored."""
    import torch

    sums = {"prompt": [0.0, 0], "answer": [0.0, 0]}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for row in rows:
            pc = lamini_prompt_completion(row)
            prompt = tokenizer.apply_chat_template(pc["prompt"], add_generation_prompt=True, tokenize=True,
                                                   return_dict=False)
            full = tokenizer.apply_chat_template(pc["prompt"] + pc["completion"], tokenize=True, return_dict=False)
            if full[:len(prompt)] != prompt:
                raise ValueError("the chat template does not render the prompt as a prefix of the full chat")
            ids = torch.tensor([full], device=model.device)
            logits = model(input_ids=ids).logits[0, :-1].float()  # (T-1, V): predictions of tokens 1..T-1
            nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none")  # (T-1,)
            n_prompt = len(prompt) - 1  # prompt tokens scored: 1..len(prompt)-1
            for part, values in (("prompt", nll[:n_prompt]), ("answer", nll[n_prompt:])):
                sums[part][0] += values.sum().item()
                sums[part][1] += values.numel()
    if was_training:
        model.train()
    return HeldOut(prompt_nll=sums["prompt"][0] / sums["prompt"][1], answer_nll=sums["answer"][0] / sums["answer"][1],
                   answer_tokens=sums["answer"][1])


# --- runs ------------------------------------------------------------------------------------------

# TrainingArguments' own token counter (transformers >= 4.5x, read in Trainer._track_num_input_tokens):
# "non_padding" sums the attention mask of every batch the training loop consumes, whatever trainer
# class (TRL's, Unsloth's) runs the loop. Both recipes of lecture 04 count tokens this way.
COUNT_TOKENS = {"include_num_input_tokens_seen": "non_padding"}


def import_watch(module: str = "unsloth"):
    """A TrainerCallback that records, at train begin and after every step, whether `module` is in
    `sys.modules`: `.seen` is a list of (event, step, imported). Lecture 04 attaches one to the HF
    recipe to show that Unsloth (which patches transformers and replaces TRL's trainer on import) was
    never loaded while it trained."""
    import sys

    from transformers import TrainerCallback

    class ImportWatch(TrainerCallback):
        def __init__(self):
            self.module, self.seen = module, []

        def _record(self, event, state):
            self.seen.append((event, state.global_step, self.module in sys.modules))

        def on_train_begin(self, args, state, control, **kwargs):
            self._record("train_begin", state)

        def on_step_end(self, args, state, control, **kwargs):
            self._record("step_end", state)

        @property
        def ever_imported(self) -> bool:
            return any(imported for *_, imported in self.seen)

    return ImportWatch()


@dataclass(frozen=True)
class RunStats:
    """What one training run cost: the figures of lecture 04's comparison table."""

    recipe: str
    seconds: float
    tokens: int  # non-padding tokens in the batches trained on (attention masks; COUNT_TOKENS)
    peak_reserved_gib: float  # CUDA: allocator peak; CPU: peak process RSS
    trainable: int

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def row(self) -> dict:
        return {"tokens/s": f"{self.tokens_per_s:,.0f}", "seconds": f"{self.seconds:.1f}",
                "peak reserved (GiB)": f"{self.peak_reserved_gib:.2f}", "trainable params": f"{self.trainable:,}"}


def run_stats(recipe: str, log_history, train_metrics: dict, peak, trainable: int) -> RunStats:
    """Collect a RunStats from a finished Trainer run with COUNT_TOKENS set: `trainer.state.log_history`,
    `trainer.train().metrics`, the `helpers.track_peak_memory` result and the trainable parameter count.
    Tokens are transformers' `num_input_tokens_seen` (non-padding tokens of every batch), the same key
    for any trainer class, not a TRL-only log key.

    >>> class P: peak_reserved_gib = 1.5
    >>> log = [{"loss": 1.0, "num_input_tokens_seen": 300}, {"loss": 0.9, "num_input_tokens_seen": 500}]
    >>> run_stats("hf", log, {"train_runtime": 2.0}, P(), 10).tokens_per_s
    250.0
    """
    tokens = [h["num_input_tokens_seen"] for h in log_history if "num_input_tokens_seen" in h]
    if not tokens:
        raise ValueError("The trainer logged no `num_input_tokens_seen`; train with "
                         "include_num_input_tokens_seen='non_padding' (sft.COUNT_TOKENS).")
    return RunStats(recipe=recipe, seconds=float(train_metrics["train_runtime"]), tokens=int(max(tokens)),
                    peak_reserved_gib=float(peak.peak_reserved_gib), trainable=int(trainable))


def comparison_table(columns: dict) -> str:
    """Text table: one row per RunStats figure, one column per recipe. A column is a RunStats or a
    string (e.g. "not run: <reason>"), shown in every row of that column.

    >>> s = RunStats("HF", 2.0, 400, 1.25, 10)
    >>> print(comparison_table({"HF": s, "Unsloth": "not run: no GPU"}))
    metric               HF    Unsloth
    tokens/s             200   not run: no GPU
    seconds              2.0   not run: no GPU
    peak reserved (GiB)  1.25  not run: no GPU
    trainable params     10    not run: no GPU
    """
    metrics = list(RunStats("", 0.0, 0, 0.0, 0).row())
    cells = {name: (c.row() if isinstance(c, RunStats) else dict.fromkeys(metrics, str(c)))
             for name, c in columns.items()}
    widths = [max(len("metric"), *map(len, metrics))] + [
        max(len(name), *(len(v) for v in col.values())) for name, col in cells.items()]
    rows = [["metric", *cells]] + [[m, *(col[m] for col in cells.values())] for m in metrics]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)
