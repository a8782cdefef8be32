"""Stop the `full` profile early, with the reason, when this runtime cannot run the lesson.

Checks, in order: a CUDA GPU exists; bf16 is not requested on a card without it (a T4 has fp16
only); a gated model has a Hub token; the estimated training memory fits the free VRAM.
In the `tiny` profile nothing is checked (CPU, offline, small): it returns at once.

>>> preflight("llama-2-7b-chat", "tiny").ok
True
>>> fake_t4 = CudaInfo("Tesla T4", total_gib=15.0, free_gib=14.7, capability=(7, 5), bf16=False)
>>> preflight("llama-2-7b-chat", "full", method="full", cuda=fake_t4)
Traceback (most recent call last):
...
helpers.preflight.PreflightError: llama-2-7b-chat (full fine-tuning, batch 4 × 512 tokens) needs about 114.5 GiB but Tesla T4 has 14.7 GiB free. Use method='qlora', a smaller batch_size/seq_len, or a bigger GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .device import CudaInfo, cuda_info, resolve_profile
from .estimate import MemoryEstimate, estimate_training_memory
from .hub import hf_token
from .models import get_spec

_NO_CUDA = object()


class PreflightError(RuntimeError):
    """This runtime cannot run the requested full-profile lesson; the message says why and what to do."""


@dataclass
class PreflightReport:
    profile: str
    model: str
    ok: bool = True
    estimate: MemoryEstimate | None = None
    gpu: CudaInfo | None = None
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.profile == "tiny":
            return f"preflight: tiny profile, {self.model} stand-in on CPU: nothing to check."
        lines = [f"preflight: {self.model} on {self.gpu.name} ({self.gpu.free_gib:.1f} of "
                 f"{self.gpu.total_gib:.1f} GiB free): estimated {self.estimate.total_gib:.1f} GiB — OK"]
        return "\n".join(lines + self.notes)


def preflight(key: str, profile: str = "auto", *, method: str = "qlora", batch_size: int = 4, seq_len: int = 512,
              lora_r: int = 64, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"), bf16: bool = False,
              gradient_checkpointing: bool = True, cuda: CudaInfo | None | object = None,
              token: str | None | object = None) -> PreflightReport:
    """Check that `key` can be fine-tuned with `method` at this batch size and length here.

    `cuda` and `token` default to this machine's; tests pass fakes.
    """
    spec = get_spec(key)
    profile = resolve_profile(profile, announce=False)
    if profile == "tiny":
        return PreflightReport(profile="tiny", model=key)
    gpu = cuda_info() if cuda is None else (None if cuda is _NO_CUDA else cuda)
    if gpu is None:
        raise PreflightError(
            f"The full profile trains {spec.hub_id} and needs a CUDA GPU, but none was found. "
            "On Colab: Runtime → Change runtime type → T4 GPU. Elsewhere, set PROFILE = 'tiny' to run the "
            "same lesson on CPU with a tiny stand-in model.")
    if bf16 and not gpu.bf16:
        raise PreflightError(
            f"bf16 was requested but {gpu.name} (compute capability {gpu.capability[0]}.{gpu.capability[1]}) "
            "does not support it. Use fp16 (helpers.compute_dtype() picks it) or a bf16-capable GPU (Ampere or newer).")
    tok = hf_token() if token is None else token
    if spec.gated and not tok:
        raise PreflightError(
            f"{spec.hub_id} is gated: accept its licence on its Hub page, then provide a token "
            "(Colab: add HF_TOKEN under Secrets; elsewhere: `export HF_TOKEN=...` or `huggingface-cli login`).")
    est = estimate_training_memory(key, method, lora_r=lora_r, target_modules=target_modules, batch_size=batch_size,
                                   seq_len=seq_len, gradient_checkpointing=gradient_checkpointing)
    if est.total_gib > gpu.free_gib:
        what = {"full": "full fine-tuning", "lora": "LoRA (16-bit base)", "qlora": "QLoRA"}[method]
        raise PreflightError(
            f"{key} ({what}, batch {batch_size} × {seq_len} tokens) needs about {est.total_gib:.1f} GiB but "
            f"{gpu.name} has {gpu.free_gib:.1f} GiB free. Use method='qlora', a smaller batch_size/seq_len, "
            "or a bigger GPU.")
    return PreflightReport(profile="full", model=key, estimate=est, gpu=gpu)
