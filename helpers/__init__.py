"""Helpers every course notebook imports: profiles, models, data, memory, parameters, plots, widgets.

>>> import helpers
>>> helpers.resolve_model("llama-2-7b-chat", "full")
'NousResearch/Llama-2-7b-chat-hf'
"""

from .colab import in_colab
from .course_data import DATASETS, load_course_dataset
from .device import compute_dtype, cuda_info, device_for, has_cuda, resolve_profile
from .estimate import MemoryEstimate, estimate_training_memory, lora_parameters, weights_gib
from .memory import MemoryReport, PeakMemory, free_memory, memory_report, track_peak_memory
from .models import MODELS, get_spec, resolve_model
from .params import ParamCount, count_parameters, format_parameters, print_trainable_parameters
from .plots import loss_fell, loss_history, metric_history, plot_dpo_metrics, plot_loss
from .preflight import PreflightError, PreflightReport, preflight

__all__ = [
    "MODELS", "DATASETS", "in_colab", "load_course_dataset",
    "compute_dtype", "cuda_info", "device_for", "has_cuda", "resolve_profile", "get_spec", "resolve_model",
    "MemoryEstimate", "estimate_training_memory", "lora_parameters", "weights_gib",
    "MemoryReport", "PeakMemory", "free_memory", "memory_report", "track_peak_memory",
    "ParamCount", "count_parameters", "format_parameters", "print_trainable_parameters",
    "loss_fell", "loss_history", "metric_history", "plot_dpo_metrics", "plot_loss",
    "PreflightError", "PreflightReport", "preflight",
]
