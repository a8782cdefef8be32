"""The five model families of the course: Hub ids, shapes, tokens and chat templates.

`resolve_model` is the one place a notebook turns a model key into something `from_pretrained`
accepts: the Hub id in the `full` profile, a local tiny stand-in directory in `tiny`.

>>> MODELS["llama-2-7b-chat"].hub_id
'NousResearch/Llama-2-7b-chat-hf'
>>> resolve_model("llama-2-7b-chat", "full")
'NousResearch/Llama-2-7b-chat-hf'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources


@dataclass(frozen=True)
class Shape:
    """Architecture numbers of the real model (from its config.json), used for memory arithmetic."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    tie_word_embeddings: bool = False

    def projections(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear projection in one decoder layer.

        >>> MODELS["llama-3.1-8b-instruct"].shape.projections()["k_proj"]
        (4096, 1024)
        """
        h, i = self.hidden_size, self.intermediate_size
        kv = h // self.num_attention_heads * self.num_key_value_heads  # grouped-query attention
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def linear_params(self) -> int:
        """Parameters in the decoder layers' linear projections (what bitsandbytes quantizes).

        >>> MODELS["llama-2-7b-chat"].shape.linear_params
        6476005376
        """
        return self.num_hidden_layers * sum(a * b for a, b in self.projections().values())

    @property
    def n_params(self) -> int:
        """Parameter count implied by a Llama-style shape (q/k/v/o, gate/up/down, 2 norms, embeddings).

        >>> MODELS["llama-2-7b-chat"].shape.n_params
        6738415616
        """
        h, L, v = self.hidden_size, self.num_hidden_layers, self.vocab_size
        norms = L * 2 * h + h  # two RMSNorm weights per layer, one final
        emb = v * h * (1 if self.tie_word_embeddings else 2)  # input embeddings (+ untied lm_head)
        return self.linear_params + norms + emb


@dataclass(frozen=True)
class ModelSpec:
    """One model family: where the real one lives and what its tiny stand-in must imitate."""

    key: str
    hub_id: str
    title: str
    template: str  # file in helpers/templates/
    tokenizer_style: str  # "sentencepiece" (byte-fallback BPE on ▁-words) or "byte-level" (GPT-2 style BPE)
    bos_token: str | None
    eos_token: str
    unk_token: str | None
    pad_token: str | None
    extra_special_tokens: tuple[str, ...] = ()
    shape: Shape = field(default=None)  # type: ignore[assignment]
    gated: bool = False
    prequantized_4bit: bool = False
    supports_system: bool = True

    def chat_template(self) -> str:
        """The real model's chat template (Jinja), byte for byte as the real tokenizer ships it
        (some end with a newline, some do not: TRL recognises templates by exact string)."""
        return resources.files("helpers").joinpath("templates", self.template).read_text(encoding="utf-8")


MODELS: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in [
        ModelSpec(
            key="llama-2-7b-chat",
            hub_id="NousResearch/Llama-2-7b-chat-hf",
            title="Llama 2 7B Chat",
            template="llama-2-chat.jinja",
            tokenizer_style="sentencepiece",
            bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token=None,
            shape=Shape(4096, 11008, 32, 32, 32, 32000),
        ),
        ModelSpec(
            key="llama-3.1-8b-instruct",
            hub_id="unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit",
            title="Llama 3.1 8B Instruct",
            template="llama-3.1-instruct.jinja",
            tokenizer_style="byte-level",
            bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", unk_token=None,
            pad_token="<|finetune_right_pad_id|>",
            extra_special_tokens=("<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                                  "<|eom_id|>", "<|python_tag|>"),
            shape=Shape(4096, 14336, 32, 32, 8, 128256),
            prequantized_4bit=True,
        ),
        ModelSpec(
            key="tinyllama-1.1b-chat",
            hub_id="TinyLlama/TinyLlama-1.1B-Chat-v1.0",
            title="TinyLlama 1.1B Chat",
            template="tinyllama-chat.jinja",
            tokenizer_style="sentencepiece",
            bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>",
            shape=Shape(2048, 5632, 22, 32, 4, 32000),
        ),
        ModelSpec(  # the base checkpoint Chat was tuned from: lecture 05's SFT -> DPO starts here
            key="tinyllama-1.1b",
            hub_id="TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T",
            title="TinyLlama 1.1B (base)",
            template="tinyllama-chat.jinja",  # the base ships no chat template: we train it into Chat's format
            tokenizer_style="sentencepiece",
            bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token=None,
            shape=Shape(2048, 5632, 22, 32, 4, 32000),
        ),
        ModelSpec(
            key="mistral-7b-instruct",
            hub_id="mistralai/Mistral-7B-Instruct-v0.1",
            title="Mistral 7B Instruct v0.1",
            template="mistral-instruct-v0.1.jinja",
            tokenizer_style="sentencepiece",
            bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token=None,
            shape=Shape(4096, 14336, 32, 32, 8, 32000),
            gated=True,
        ),
        ModelSpec(
            key="qwen2.5-7b-instruct",
            hub_id="Qwen/Qwen2.5-7B-Instruct",
            title="Qwen2.5 7B Instruct",
            template="qwen2.5-instruct.jinja",
            tokenizer_style="byte-level",
            bos_token=None, eos_token="<|im_end|>", unk_token=None, pad_token="<|endoftext|>",
            extra_special_tokens=("<|endoftext|>", "<|im_start|>"),
            # Qwen2 adds q/k/v biases that this Llama-style count leaves out (~0.1 % of the total).
            shape=Shape(3584, 18944, 28, 28, 4, 152064),
        ),
    ]
}


def get_spec(key: str) -> ModelSpec:
    """The `ModelSpec` for `key`, or a ValueError that lists the valid keys."""
    try:
        return MODELS[key]
    except KeyError:
        raise ValueError(f"Unknown model key {key!r}. Choose one of: {', '.join(MODELS)}.") from None


def resolve_model(key: str, profile: str = "auto") -> str:
    """What to pass to `from_pretrained` for model `key` in `profile`.

    `full`: the real model's Hub id. `tiny`: a local directory holding a tiny Llama-architecture
    model and a locally trained tokenizer with the real special tokens and chat template (built
    once, then cached). `auto` resolves to one of them by the presence of CUDA.

    >>> resolve_model("qwen2.5-7b-instruct", "full")
    'Qwen/Qwen2.5-7B-Instruct'
    """
    from .device import resolve_profile

    spec = get_spec(key)
    profile = resolve_profile(profile, announce=False)
    if profile == "full":
        return spec.hub_id
    from .tiny import build_tiny_model

    return str(build_tiny_model(spec))
