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
