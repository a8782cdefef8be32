"""Counting parameters honestly: 4-bit weights as the parameters they hold, LoRA counted once.

bitsandbytes stores an nf4 weight of `n` parameters as a uint8 tensor of `n / 2` elements (two
4-bit values per byte), so `p.numel()` under-counts it by 2. peft corrects this (element size × 2
for `Params4bit`); so do we. A common counter in course notes multiplies *every* parameter by 2
once a model is 4-bit — LoRA adapters too — which overstates both the total and the trainable
count. See `seed_counter_explained` in lecture 03.

>>> import torch
>>> count_parameters(torch.nn.Linear(4, 2))
ParamCount(trainable=10, total=10)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParamCount:
    trainable: int
    total: int

    @property
    def trainable_pct(self) -> float:
        """Trainable share of all parameters, in percent."""
        return 100.0 * self.trainable / self.total if self.total else 0.0


def _numel(p) -> int:
    """Parameters held by tensor `p`: packed 4-bit tensors hold 2 per byte (8 / 4 bits)."""
    n = p.numel()
    if p.__class__.__name__ == "Params4bit":
        n *= 2 * p.element_size() if hasattr(p, "element_size") else 2
    return n


def count_parameters(model) -> ParamCount:
    """Trainable and total parameters of `model`, 4-bit weights unpacked, each tensor counted once."""
    trainable = total = 0
    for p in model.parameters():
        n = _numel(p)
        total += n
        if p.requires_grad:
            trainable += n
    return ParamCount(trainable=trainable, total=total)


def format_parameters(count: ParamCount) -> str:
    """One line in peft's wording.

    >>> format_parameters(ParamCount(trainable=5, total=1000))
    'trainable params: 5 || all params: 1,000 || trainable%: 0.5000'
    """
    return f"trainable params: {count.trainable:,} || all params: {count.total:,} || trainable%: {count.trainable_pct:.4f}"


def print_trainable_parameters(model) -> ParamCount:
    """Print `format_parameters(count_parameters(model))` and return the count."""
    count = count_parameters(model)
    print(format_parameters(count))
    return count
