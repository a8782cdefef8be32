"""Whether the Unsloth half of lecture 04 can run here, and if not, why, in plain words.

Unsloth patches transformers with Triton kernels and refuses to import without a CUDA GPU, so the
notebook asks first and imports it only inside the gated half.

>>> ok, reason = unsloth_available(cuda_available=lambda: False)
>>> ok, reason
(False, 'Unsloth needs a CUDA GPU; none found.')
"""

from __future__ import annotations

import importlib
import importlib.util


def unsloth_available(*, cuda_available=None, find_spec=None, import_module=None) -> tuple[bool, str]:
    """(True, "unsloth <version> on <GPU>") when a CUDA GPU is present and `unsloth` imports;
    otherwise (False, the reason). The keyword arguments replace torch/importlib in tests."""
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available
    find_spec = find_spec or importlib.util.find_spec
    import_module = import_module or importlib.import_module
    if not cuda_available():
        return False, "Unsloth needs a CUDA GPU; none found."
    if find_spec("unsloth") is None:
        return False, "unsloth is not installed (pip install -r requirements-gpu.txt)."
    try:
        module = import_module("unsloth")
    except Exception as exc:  # noqa: BLE001 - any import failure means "cannot run", with its message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return False, f"unsloth failed to import: {type(exc).__name__}: {first}".rstrip(": ")
    return True, f"unsloth {getattr(module, '__version__', '(unknown version)')} imported"
