"""Back-of-the-envelope GPU memory for fine-tuning, before anything is loaded.

Bytes per parameter: fp32 4, fp16/bf16 2, int8 1, nf4 0.5 (+ one fp32 absmax per 64-weight block,
or with double quantization an 8-bit absmax per block plus one fp32 per 256 blocks).
With QLoRA, peft's `prepare_model_for_kbit_training` (which every course recipe calls) casts every
parameter that is not quantized — norms, embeddings, lm_head — from 16-bit to fp32: `kbit_prepared`.
Training adds, for every *trainable* parameter: its gradient and AdamW's two moments (fp32: 4+4+4
bytes) — plus, for full fine-tuning in mixed precision, the fp32 master weights. Activations are the
rough part: with gradient checkpointing only each layer's input (batch × seq × hidden, 2 bytes)
is kept, plus one layer's full activations and the fp32 logits over the vocabulary.

>>> from helpers.models import MODELS
>>> round(weights_gib(MODELS["llama-2-7b-chat"].shape.n_params, "fp16"), 2)
12.55
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import GIB
from .models import MODELS, Shape

BYTES_PER_PARAM = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0, "nf4": 0.5}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CUDA_OVERHEAD_GIB = 0.5  # CUDA context + allocator slack (order of magnitude, not a measurement)


def nf4_bytes_per_param(double_quant: bool = True, blocksize: int = 64) -> float:
    """Storage of one nf4 weight including its share of the quantization constants.

    >>> round(nf4_bytes_per_param(False), 4), round(nf4_bytes_per_param(True), 4)
    (0.5625, 0.5159)
    """
    if double_quant:  # 8-bit absmax per block + fp32 absmax per 256 blocks
        return 0.5 + 1 / blocksize + 4 / (blocksize * 256)
    return 0.5 + 4 / blocksize


def weights_gib(n_params: int, dtype: str) -> float:
    """Memory for `n_params` weights stored as `dtype` ("fp32", "fp16", "bf16", "int8", "nf4")."""
    if dtype not in BYTES_PER_PARAM:
        raise ValueError(f"Unknown dtype {dtype!r}. Use one of: {', '.join(BYTES_PER_PARAM)}.")
    per = nf4_bytes_per_param() if dtype == "nf4" else BYTES_PER_PARAM[dtype]
    return n_params * per / GIB


def lora_parameters(shape: Shape, r: int, target_modules=("q_proj", "k_proj", "v_proj", "o_proj")) -> int:
    """Trainable LoRA parameters: r × (in + out) per adapted matrix, per layer.

    >>> lora_parameters(MODELS["llama-2-7b-chat"].shape, r=64)
    67108864
    """
    dims = shape.projections()
    unknown = set(target_modules) - set(dims)
    if unknown:
        raise ValueError(f"Unknown target modules {sorted(unknown)}; known: {', '.join(dims)}.")
    return shape.num_hidden_layers * sum(r * sum(dims[m]) for m in target_modules)


@dataclass
class MemoryEstimate:
    method: str
    weights_gib: float
    trainable_params: int
    gradients_gib: float
    optimizer_gib: float
    activations_gib: float
    overhead_gib: float = CUDA_OVERHEAD_GIB

    @property
    def total_gib(self) -> float:
        return self.weights_gib + self.gradients_gib + self.optimizer_gib + self.activations_gib + self.overhead_gib

    def rows(self) -> list[tuple[str, float]]:
        return [("weights", self.weights_gib), ("gradients", self.gradients_gib),
                ("optimizer states", self.optimizer_gib), ("activations (rough)", self.activations_gib),
                ("CUDA overhead", self.overhead_gib), ("total", self.total_gib)]

    def table(self) -> str:
        """Text table, one row per component, in GiB."""
        head = f"{self.method}: {self.trainable_params:,} trainable parameters"
        return "\n".join([head] + [f"  {k:<20} {v:8.2f} GiB" for k, v in self.rows()])

    def __str__(self) -> str:
        return self.table()


def activations_gib(shape: Shape, batch_size: int, seq_len: int, gradient_checkpointing: bool = True) -> float:
    """Rough activation memory (16-bit) of one training step, plus fp32 logits.

    Without checkpointing ~ 34·b·s·h bytes per layer (Korthikanti et al. 2022, attention via a fused
    kernel so the s² term is left out); with it, 2·b·s·h per layer plus one layer recomputed.
    """
    b, s, h, L = batch_size, seq_len, shape.hidden_size, shape.num_hidden_layers
    per_layer_full = 34 * b * s * h
    kept = (2 * b * s * h * L + per_layer_full) if gradient_checkpointing else per_layer_full * L
    logits = 4 * b * s * shape.vocab_size  # fp32 logits (upcast for the loss)
    return (kept + logits) / GIB


def base_weight_bytes(shape: Shape, method: str = "qlora", dtype: str = "fp16", *,
                      kbit_prepared: bool = True) -> dict[str, float]:
    """Bytes of the frozen base model by storage dtype, before adapters.

    `qlora`: the decoder layers' linear weights in nf4 (with double quantization); everything else
    (norms, embeddings, lm_head) in `dtype` as loaded, or in fp32 once `prepare_model_for_kbit_training`
    has run (`kbit_prepared`). `lora`/`full`/`merge`: every weight in `dtype`.

    >>> from helpers.models import MODELS
    >>> s = MODELS["llama-2-7b-chat"].shape
    >>> b = base_weight_bytes(s, "qlora")
    >>> sorted(b), round(b["fp32"] / 2**30, 2)
    (['fp32', 'nf4'], 0.98)
    >>> round((b["fp32"] - base_weight_bytes(s, "qlora", kbit_prepared=False)["fp16"]) / 2**30, 2)  # the fp32 cast
    0.49
    """
    n = shape.n_params
    if method != "qlora":
        return {dtype: n * BYTES_PER_PARAM[dtype]}
    rest = "fp32" if kbit_prepared else dtype
    return {"nf4": shape.linear_params * nf4_bytes_per_param(), rest: (n - shape.linear_params) * BYTES_PER_PARAM[rest]}


def estimate_training_memory(model, method: str = "qlora", *, lora_r: int = 64,
                             target_modules=("q_proj", "k_proj", "v_proj", "o_proj"), batch_size: int = 4,
                             seq_len: int = 512, gradient_checkpointing: bool = True,
                             dtype: str = "fp16", kbit_prepared: bool = True) -> MemoryEstimate:
    """Estimate GPU memory to fine-tune `model` (a key of helpers.MODELS or a Shape) with `method`:
    "full" (mixed precision AdamW), "lora" (16-bit frozen base) or "qlora" (nf4 frozen base, its other
    weights cast to fp32 by `prepare_model_for_kbit_training` unless `kbit_prepared=False`).

    >>> e = estimate_training_memory("llama-2-7b-chat", "full")
    >>> e.total_gib > 100
    True
    >>> estimate_training_memory("llama-2-7b-chat", "qlora").total_gib < 15
    True
    """
    shape = MODELS[model].shape if isinstance(model, str) else model
    n = shape.n_params
    if method == "full":
        trainable = n
        weights = weights_gib(n, dtype) + weights_gib(n, "fp32")  # 16-bit copy + fp32 master weights
    elif method in ("lora", "qlora"):
        trainable = lora_parameters(shape, lora_r, target_modules)
        base = sum(base_weight_bytes(shape, method, dtype, kbit_prepared=kbit_prepared).values()) / GIB
        weights = base + weights_gib(trainable, "fp32")
    else:
        raise ValueError(f"Unknown method {method!r}. Use 'full', 'lora' or 'qlora'.")
    return MemoryEstimate(
        method=method,
        weights_gib=weights,
        trainable_params=trainable,
        gradients_gib=weights_gib(trainable, "fp32"),
        optimizer_gib=2 * weights_gib(trainable, "fp32"),
        activations_gib=activations_gib(shape, batch_size, seq_len, gradient_checkpointing),
    )


def estimate_merge_memory(model, *, lora_r: int = 64, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
                          batch_size: int = 4, seq_len: int = 512, dtype: str = "fp16") -> MemoryEstimate:
    """GPU memory to reload the base model in 16-bit with its trained adapter, run a forward pass and
    merge (`AutoPeftModelForCausalLM.from_pretrained(..., dtype=...)` then `merge_and_unload()`).

    Weights: every base weight in `dtype` plus the adapter in fp32 (peft keeps adapters of a 16-bit model
    in fp32); no gradients or optimizer; activations of one inference layer plus the fp32 logits.

    >>> round(estimate_merge_memory("llama-2-7b-chat").weights_gib, 2)  # ~12.6 GiB: tight on a 15 GiB T4
    12.8
    """
    shape = MODELS[model].shape if isinstance(model, str) else model
    adapter = lora_parameters(shape, lora_r, target_modules)
    b, s, h = batch_size, seq_len, shape.hidden_size
    return MemoryEstimate(
        method="merge",
        weights_gib=weights_gib(shape.n_params, dtype) + weights_gib(adapter, "fp32"),
        trainable_params=0, gradients_gib=0.0, optimizer_gib=0.0,
        activations_gib=(34 * b * s * h + 4 * b * s * shape.vocab_size) / GIB,
    )
