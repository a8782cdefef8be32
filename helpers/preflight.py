"""Stop the `full` profile early, with the reason, when this runtime cannot run the lesson.

In every profile the report names torch and its CUDA build, and warns when a GPU is attached that
torch cannot use (`auto` then falls back to `tiny`). Checks in `full`, in order: torch can use a CUDA GPU (and, when it cannot, whether a GPU is attached anyway:
a CPU-only torch build, or a driver too old for torch's CUDA); bf16 is not requested on a card without
it (a T4 has fp16 only); a gated model has a Hub token; the estimated memory of *every* step fits the
free VRAM — training, and with `merge=True` the 16-bit reload + merge of the adapter.
In the `tiny` profile nothing else is checked (CPU, offline, small).

>>> preflight("llama-2-7b-chat", "tiny").ok
True
>>> fake_t4 = CudaInfo("Tesla T4", total_gib=15.0, free_gib=14.7, capability=(7, 5), bf16=False)
>>> preflight("llama-2-7b-chat", "full", method="full", cuda=fake_t4)
Traceback (most recent call last):
...
helpers.preflight.PreflightError: llama-2-7b-chat, training (full fine-tuning, batch 4 × 512 tokens) needs about 114.5 GiB but Tesla T4 has 14.7 GiB free. Use method='qlora', a smaller batch_size/seq_len, or a bigger GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .device import CudaInfo, TorchBuild, cuda_info, resolve_profile, torch_build
from .estimate import MemoryEstimate, estimate_merge_memory, estimate_training_memory
from .hub import hf_token
from .models import get_spec

_NO_CUDA = object()
METHODS = {"full": "full fine-tuning", "lora": "LoRA (16-bit base)", "qlora": "QLoRA"}


class PreflightError(RuntimeError):
    """This runtime cannot run the requested full-profile lesson; the message says why and what to do.
    `steps` holds the memory verdict of each step checked so far (empty when it stopped earlier)."""

    def __init__(self, message: str, steps=()):
        super().__init__(message)
        self.steps = list(steps)


@dataclass(frozen=True)
class Step:
    """One step of a lesson that needs GPU memory, and whether it fits."""

    name: str  # "training" or "16-bit reload + merge"
    model: str
    recipe: str  # e.g. "QLoRA r=64 on q/k/v/o, batch 4 × 512 tokens"
    estimate: MemoryEstimate
    free_gib: float

    @property
    def fits(self) -> bool:
        return self.estimate.total_gib <= self.free_gib

    def __str__(self) -> str:
        verdict = "OK" if self.fits else "does NOT fit"
        return f"  {self.name}: {self.recipe}: estimated {self.estimate.total_gib:.1f} GiB — {verdict}"


@dataclass
class PreflightReport:
    profile: str
    model: str
    ok: bool = True
    estimate: MemoryEstimate | None = None  # the training step's
    gpu: CudaInfo | None = None
    build: TorchBuild | None = None
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.profile == "tiny":
            lines = [f"preflight: tiny profile, {self.model} stand-in on CPU: nothing to check."]
            if self.build is not None:
                lines.append(f"  {self.build}")
                if self.build.problem:
                    lines.append(f"  WARNING: {self.build.problem}")
            return "\n".join(lines)
        cap = ".".join(map(str, self.gpu.capability))
        lines = [f"preflight: {self.model} on {self.gpu.name} (compute capability {cap}, "
                 f"{'bf16' if self.gpu.bf16 else 'fp16 only, no bf16'}; {self.gpu.free_gib:.1f} of "
                 f"{self.gpu.total_gib:.1f} GiB free) — OK"]
        if self.build is not None:
            lines.append(f"  {self.build}")
        return "\n".join(lines + [str(s) for s in self.steps] + self.notes)


def _recipe(method: str, lora_r: int, target_modules, batch_size: int, seq_len: int) -> str:
    what = METHODS[method]
    if method != "full":
        what += f" r={lora_r} on {'/'.join(m.split('_')[0] for m in target_modules)}"
    return f"{what}, batch {batch_size} × {seq_len} tokens"


def preflight(key: str, profile: str = "auto", *, method: str = "qlora", batch_size: int = 4, seq_len: int = 512,
              lora_r: int = 64, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"), bf16: bool = False,
              gradient_checkpointing: bool = True, merge: bool = False, cuda: CudaInfo | None | object = None,
              token: str | None | object = None, device_nodes=None, tools=None) -> PreflightReport:
    """Check that `key` can be fine-tuned with `method` at this batch size and length here, and with
    `merge=True` that its base model reloaded in 16-bit can take the adapter and be merged.

    `cuda` and `token` default to what this machine's torch and Hub login report (a `CudaInfo` or
    `_NO_CUDA` explains a case without a GPU); `device_nodes`/`tools` are where an attached GPU shows
    itself to the operating system (default: /dev/nvidia0, nvidia-smi; see `helpers.device.gpu_attached`).
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}. Use one of: {', '.join(METHODS)}.")
    spec = get_spec(key)
    profile = resolve_profile(profile, announce=False)
    build = torch_build(device_nodes, tools)
    if profile == "tiny":  # nothing to check; but say so when a GPU is attached that torch cannot use
        return PreflightReport(profile="tiny", model=key, build=build)
    gpu = cuda_info() if cuda is None else (None if cuda is _NO_CUDA else cuda)
    if gpu is None:
        if build.problem:
            raise PreflightError(f"{build.problem} ({build}.) The full profile trains {spec.hub_id} on CUDA; "
                                 "until then, PROFILE = 'tiny' runs the same lesson on CPU.")
        raise PreflightError(
            f"The full profile trains {spec.hub_id} and needs a CUDA GPU, but none was found ({build}). "
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
    train = estimate_training_memory(key, method, lora_r=lora_r, target_modules=target_modules,
                                     batch_size=batch_size, seq_len=seq_len,
                                     gradient_checkpointing=gradient_checkpointing)
    steps = [Step("training", key, _recipe(method, lora_r, target_modules, batch_size, seq_len), train, gpu.free_gib)]
    if merge:
        m = estimate_merge_memory(key, lora_r=lora_r, target_modules=target_modules, batch_size=batch_size,
                                  seq_len=seq_len)
        steps.append(Step("16-bit reload + merge", key, f"16-bit base + rank-{lora_r} adapter, forward on "
                          f"batch {batch_size} × {seq_len} tokens, merge_and_unload()", m, gpu.free_gib))
    for step in steps:
        if not step.fits:
            hint = ("Use method='qlora', a smaller batch_size/seq_len, or a bigger GPU." if step.name == "training"
                    else "Merge on a bigger GPU or on CPU (device_map='cpu'), or keep the adapter separate.")
            what = f"{step.name} ({METHODS[method]}, batch {batch_size} × {seq_len} tokens)" \
                if step.name == "training" else step.name
            raise PreflightError(f"{key}, {what} needs about {step.estimate.total_gib:.1f} GiB but {gpu.name} has "
                                 f"{gpu.free_gib:.1f} GiB free. {hint}", steps)
    return PreflightReport(profile="full", model=key, estimate=train, gpu=gpu, build=build, steps=steps)
