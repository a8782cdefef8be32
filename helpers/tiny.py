"""Tiny offline stand-ins for the course's models: a real tokenizer format, a 2-layer Llama.

A stand-in directory holds what a Hub repo holds (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json, chat_template.jinja), so the lesson loads it with the same
`AutoTokenizer/AutoModelForCausalLM.from_pretrained` calls it uses for the real model.

The tokenizer is trained here with `tokenizers` on the shipped corpus, in the real model's style:
- "sentencepiece" (Llama 2, Mistral, TinyLlama): BPE over "▁"-joined words with byte fallback
  (ids 0-2 are <unk> <s> </s>, then the 256 byte tokens <0x00>…<0xFF>, as in the real vocab);
- "byte-level" (Llama 3.1, Qwen2.5): GPT-2 style byte-level BPE, special tokens after the vocab.
Each real special token is one token, and the real chat template is attached.

>>> from helpers.models import MODELS
>>> path = build_tiny_model(MODELS["tinyllama-1.1b-chat"])   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # models.py imports this module; the spec type is for annotations only
    from .models import ModelSpec

VERSION = "v1"  # bump when the recipe changes: cached stand-ins are rebuilt
VOCAB_SIZE = 1024
# intermediate_size: a multiple of 64, as bitsandbytes' CPU inference layout for 4-bit weights needs
# (on AVX512-BF16 CPUs); initializer_range 0.1: with the default 0.02 the frozen lm_head caps the logits
# near 1.3, so no LoRA run could lower the loss far enough to show that it learned.
TINY_CONFIG = dict(hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=1024, rms_norm_eps=1e-5,
                   initializer_range=0.1)
SEED = 0


def cache_root() -> Path:
    """Where stand-ins are cached: $COURSE_CACHE_DIR, else build/tiny-models in a source checkout,
    else ~/.cache/llm-finetuning-course."""
    if os.environ.get("COURSE_CACHE_DIR"):
        return Path(os.environ["COURSE_CACHE_DIR"])
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").exists():
        return repo / "build" / "tiny-models"
    return Path.home() / ".cache" / "llm-finetuning-course"


def corpus_lines() -> list[str]:
    text = resources.files("helpers").joinpath("data", "tokenizer_corpus.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def _special_tokens(spec: ModelSpec) -> list[str]:
    toks = [spec.unk_token, spec.bos_token, spec.eos_token, spec.pad_token, *spec.extra_special_tokens]
    out: list[str] = []
    for t in toks:
        if t and t not in out:
            out.append(t)
    return out


def _train_sentencepiece_style(spec: ModelSpec):
    """Llama-2-style tokenizer: ▁ for spaces, BPE merges, unknown characters fall back to bytes."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    fixed = ["<unk>", "<s>", "</s>"] + byte_tokens
    # Train on words split at "▁" boundaries (the real model uses SentencePiece; the result is the
    # same kind of vocabulary: pieces such as "▁the", merges, byte fallback).
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("▁[^▁]*|[^▁]+"), behavior="isolated")
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=fixed, limit_alphabet=200,
                                  show_progress=False)
    tok.train_from_iterator(corpus_lines(), trainer)
    # Real Llama-2 tokenizers have no pre-tokenizer: the ▁-split was only for training.
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    # Byte tokens are ordinary vocabulary (used by byte fallback), not special "added" tokens.
    state = json.loads(tok.to_str())
    state["added_tokens"] = [t for t in state["added_tokens"] if t["content"] in ("<unk>", "<s>", "</s>")]
    tok = Tokenizer.from_str(json.dumps(state))
    extra = [t for t in _special_tokens(spec) if t not in fixed]
    if extra:
        tok.add_special_tokens(extra)
    return tok


def _train_byte_level(spec: ModelSpec):
    """Llama-3/Qwen-style tokenizer: byte-level BPE, every string encodable, specials appended."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    specials = _special_tokens(spec)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE - len(specials), special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus_lines(), trainer)
    tok.add_special_tokens(specials)
    return tok


def build_tokenizer(spec: ModelSpec):
    """A `transformers` tokenizer imitating `spec`'s: real special tokens and chat template."""
    from transformers import PreTrainedTokenizerFast

    raw = _train_sentencepiece_style(spec) if spec.tokenizer_style == "sentencepiece" else _train_byte_level(spec)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=spec.bos_token, eos_token=spec.eos_token, unk_token=spec.unk_token, pad_token=spec.pad_token,
        model_max_length=TINY_CONFIG["max_position_embeddings"],
        clean_up_tokenization_spaces=False,
    )
    if spec.bos_token:
        tok.add_bos_token = True  # Llama 2/3, Mistral, TinyLlama prepend BOS when encoding plain text; Qwen has none
    tok.chat_template = spec.chat_template()
    return tok


def build_model(spec: ModelSpec, tokenizer):
    """A randomly initialised 2-layer Llama with the tokenizer's vocabulary (seeded)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = len(tokenizer)
    ids = {name: tokenizer.convert_tokens_to_ids(getattr(tokenizer, name)) if getattr(tokenizer, name) else None
           for name in ("bos_token", "eos_token", "pad_token")}
    config = LlamaConfig(vocab_size=vocab, bos_token_id=ids["bos_token"], eos_token_id=ids["eos_token"],
                         pad_token_id=ids["pad_token"], tie_word_embeddings=False, **TINY_CONFIG)
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = ids["pad_token"] if ids["pad_token"] is not None else ids["eos_token"]
    return model


def builder_source() -> str:
    """The code that builds a stand-in: this module's source, as it is on disk now."""
    return Path(__file__).read_text(encoding="utf-8")


def recipe_digest(spec: ModelSpec) -> str:
    """Short hash of everything a stand-in is built from — the builder's code (this module), the corpus,
    the template and the spec: a change to any of them means a new build, not a stale cached one."""
    import hashlib

    h = hashlib.sha256()
    for part in (VERSION, builder_source(), json.dumps(TINY_CONFIG, sort_keys=True), str(VOCAB_SIZE),
                 "\n".join(corpus_lines()), spec.chat_template(), repr(spec)):
        h.update(part.encode())
    return h.hexdigest()[:10]


def tiny_model_dir(spec: ModelSpec) -> Path:
    return cache_root() / f"{spec.key}-{recipe_digest(spec)}"


def build_tiny_model(spec: ModelSpec, *, force: bool = False) -> Path:
    """Build (once) and return the stand-in directory for `spec`. Safe under concurrent callers:
    each builds into a temporary directory and renames it into place."""
    target = tiny_model_dir(spec)
    if (target / "config.json").exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.key}-", dir=target.parent))
    try:
        tokenizer = build_tokenizer(spec)
        tokenizer.save_pretrained(tmp)
        build_model(spec, tokenizer).save_pretrained(tmp)
        (tmp / "STAND_IN.md").write_text(
            f"Tiny offline stand-in for {spec.hub_id} ({spec.title}), built by helpers.tiny {VERSION}.\n"
        )
        if force and target.exists():
            shutil.rmtree(target)
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race: keep theirs
            pass
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
