"""The one home of the constants that several modules (and the course tooling) share.

>>> PROFILES
('auto', 'tiny', 'full')
>>> 3 * GIB // 2**30
3
>>> sorted(OFFLINE_ENV)
['HF_DATASETS_OFFLINE', 'HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE']
"""

PROFILES = ("auto", "tiny", "full")
# Set to "1" in the tiny profile: nothing may reach the Hugging Face Hub.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
GIB = 2**30  # every memory figure in the course is in GiB (2**30 bytes) and labelled so
# Where a Hugging Face token is looked for, in order, before huggingface_hub's own token store.
TOKEN_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# Native bf16 arithmetic starts at compute capability 8.0 (Ampere: A100, L4 is 8.9); a T4 (7.5) has fp16 only.
BF16_MIN_CAPABILITY = (8, 0)
# Where an attached NVIDIA GPU shows itself even when torch cannot use it (device node, driver tool).
NVIDIA_DEVICE_NODES = ("/dev/nvidia0",)
NVIDIA_TOOLS = ("nvidia-smi",)
