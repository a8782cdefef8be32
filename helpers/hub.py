"""Load the five families' tokenizers for a profile, skipping a gated one politely when there is no token.

Tokenizers are small (a few MB), so the tokenizer lessons load the real ones in `full` even on a
CPU-only Colab. Mistral's repository is gated: without an accepted licence and an HF token,
`from_pretrained` fails. `load_tokenizers` prints why such a family is skipped and goes on.

>>> toks = load_tokenizers(["llama-2-7b-chat", "qwen2.5-7b-instruct"], "tiny")   # doctest: +SKIP
>>> list(toks)                                                                     # doctest: +SKIP
['llama-2-7b-chat', 'qwen2.5-7b-instruct']
"""

from __future__ import annotations

import os

from .constants import TOKEN_ENV_VARS
from .device import resolve_profile
from .models import get_spec, resolve_model


def hf_token() -> str | None:
    """The Hugging Face token this process would use ($HF_TOKEN, or one saved by `hf auth login`), else None."""
    for var in TOKEN_ENV_VARS:
        if os.environ.get(var):
            return os.environ[var]
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # noqa: BLE001 - no huggingface_hub or no readable token store: no token
        return None


def skip_reason(key: str, profile: str, token: str | None = None) -> str | None:
    """Why family `key` cannot be loaded in `profile` before even trying (gated, no token), else None.

    >>> skip_reason("mistral-7b-instruct", "full", token="")  # doctest: +ELLIPSIS
    'Skipping Mistral 7B Instruct v0.1 (mistralai/Mistral-7B-Instruct-v0.1): gated on the Hub and no HF token...'
    >>> skip_reason("mistral-7b-instruct", "tiny") is None    # stand-ins are local
    True
    """
    spec = get_spec(key)
    if resolve_profile(profile, announce=False) == "tiny" or not spec.gated:
        return None
    token = hf_token() if token is None else token
    if token:
        return None
    return (f"Skipping {spec.title} ({spec.hub_id}): gated on the Hub and no HF token found. "
            f"Accept its licence on https://huggingface.co/{spec.hub_id} and set HF_TOKEN "
            f"(Colab: the Secrets panel) to include it.")


def load_tokenizer(key: str, profile: str):
    """`AutoTokenizer` for family `key` in `profile`, or None (with a printed reason) for a gated family
    that cannot be reached. Errors of non-gated families are raised: they are real problems."""
    from transformers import AutoTokenizer

    reason = skip_reason(key, profile)
    if reason:
        print(reason)
        return None
    try:
        return AutoTokenizer.from_pretrained(resolve_model(key, profile))
    except OSError as err:
        if not get_spec(key).gated:
            raise
        print(f"Skipping {get_spec(key).title}: the Hub refused access ({str(err).splitlines()[0]}).")
        return None


def load_tokenizers(keys, profile: str) -> dict:
    """{key: tokenizer} for every family in `keys` that could be loaded, in order."""
    loaded = {key: load_tokenizer(key, profile) for key in keys}
    return {key: tok for key, tok in loaded.items() if tok is not None}
