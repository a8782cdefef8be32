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


def ensure_chat_template(tokenizer, key: str):
    """Give `tokenizer` the course's shipped chat template of family `key` when it has none (some Hub
    tokenizers, e.g. older community copies of Llama 2, ship without one), with a printed note; a
    tokenizer that has a template is left as it is. Returns the tokenizer.

    >>> from types import SimpleNamespace
    >>> tok = ensure_chat_template(SimpleNamespace(chat_template=None), "llama-2-7b-chat")  # doctest: +ELLIPSIS
    Note: the tokenizer of NousResearch/Llama-2-7b-chat-hf has no chat template; using the course's copy ...
    >>> tok.chat_template.startswith("{% if messages[0]['role'] == 'system' %}")
    True
    """
    if getattr(tokenizer, "chat_template", None):
        return tokenizer
    spec = get_spec(key)
    tokenizer.chat_template = spec.chat_template()
    print(f"Note: the tokenizer of {spec.hub_id} has no chat template; using the course's copy of "
          f"{spec.title}'s template (helpers/templates/{spec.template}).")
    return tokenizer


def refused_message(key: str, err: Exception, token: str | None) -> str:
    """Why the Hub refused family `key`, and what to do: no token, or a token without the licence accepted."""
    spec = get_spec(key)
    url = f"https://huggingface.co/{spec.hub_id}"
    if token:
        return (f"Skipping {spec.title} ({spec.hub_id}): the Hub refused your token. It is gated and this "
                f"account has not been granted access: open {url}, accept the licence while logged in as the "
                f"token's owner, wait for approval, then rerun. ({str(err).splitlines()[0]})")
    return (f"Skipping {spec.title} ({spec.hub_id}): gated on the Hub and no HF token found. Accept its licence "
            f"on {url} and set HF_TOKEN (Colab: the Secrets panel). ({str(err).splitlines()[0]})")


def load_tokenizer(key: str, profile: str):
    """`AutoTokenizer` for family `key` in `profile`, or None (with a printed reason) for a gated family
    that cannot be reached. Errors of non-gated families are raised: they are real problems.
    A tokenizer without a chat template gets the course's copy (`ensure_chat_template`)."""
    from transformers import AutoTokenizer

    reason = skip_reason(key, profile)
    if reason:
        print(reason)
        return None
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(key, profile))
    except OSError as err:
        if not get_spec(key).gated:
            raise
        print(refused_message(key, err, hf_token()))
        return None
    return ensure_chat_template(tokenizer, key)


def load_tokenizers(keys, profile: str) -> dict:
    """{key: tokenizer} for every family in `keys` that could be loaded, in order."""
    loaded = {key: load_tokenizer(key, profile) for key in keys}
    return {key: tok for key, tok in loaded.items() if tok is not None}


def tokenizer_profile(requested: str, probe_key: str = "tinyllama-1.1b-chat") -> str:
    """The profile for the *tokenizer* lessons: 'full' (the real Hub tokenizers) unless `requested` is
    'tiny' or, for 'auto', the Hub cannot be reached (then 'tiny', and it says so).

    Tokenizers need no GPU, so unlike the training lectures `auto` does not look for CUDA here: a
    CPU-only runtime that reaches the Hub gets the real tokenizers. The probe asks the Hub for a few KB
    of metadata of the ungated model `probe_key`.

    >>> tokenizer_profile("tiny")
    'tiny'
    """
    if requested == "tiny":
        return "tiny"
    import huggingface_hub

    try:
        huggingface_hub.model_info(get_spec(probe_key).hub_id, timeout=10)
        return "full"
    except Exception as err:  # noqa: BLE001 - no network, offline mode, a proxy: all mean "use the stand-ins"
        if requested == "full":
            raise
        print(f"The Hugging Face Hub is not reachable ({type(err).__name__}): using the offline stand-ins.")
        return "tiny"
