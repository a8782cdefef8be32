"""resolve_model and the tiny stand-ins: ids, caching, determinism, offline loading."""

import hashlib
import socket
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

import helpers
from helpers.models import MODELS
from helpers.tiny import build_tiny_model


def test_full_returns_the_hub_ids():
    assert {k: helpers.resolve_model(k, "full") for k in MODELS} == {
        "llama-2-7b-chat": "NousResearch/Llama-2-7b-chat-hf",
        "llama-3.1-8b-instruct": "unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit",
        "tinyllama-1.1b-chat": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
        "tinyllama-1.1b": "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T",
        "mistral-7b-instruct": "mistralai/Mistral-7B-Instruct-v0.1",
        "qwen2.5-7b-instruct": "Qwen/Qwen2.5-7B-Instruct",
    }


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown model key 'gpt-5'.*qwen2.5-7b-instruct"):
        helpers.resolve_model("gpt-5", "tiny")
    with pytest.raises(ValueError, match="Unknown profile 'small'.*auto, tiny, full"):
        helpers.resolve_model("llama-2-7b-chat", "small")


def _digest(d: Path) -> dict:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(d.iterdir()) if f.is_file()}


def test_stand_in_is_deterministic_and_cached(tmp_path, monkeypatch):
    import helpers.tiny as tiny

    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "a"))
    a = build_tiny_model(MODELS["qwen2.5-7b-instruct"])
    with monkeypatch.context() as m:  # second call: cached, so building is impossible and not attempted
        def must_not_build(*args, **kwargs):
            raise AssertionError("the cached stand-in was rebuilt")

        m.setattr(tiny, "build_tokenizer", must_not_build)
        m.setattr(tiny, "build_model", must_not_build)
        assert build_tiny_model(MODELS["qwen2.5-7b-instruct"]) == a
        with pytest.raises(AssertionError, match="rebuilt"):  # the patch is live: force=True does try
            build_tiny_model(MODELS["qwen2.5-7b-instruct"], force=True)
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "b"))
    b = build_tiny_model(MODELS["qwen2.5-7b-instruct"])
    assert a != b and _digest(a) == _digest(b)
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= set(_digest(a))


def test_cache_key_covers_the_builders_code(tmp_path, monkeypatch):
    """Editing helpers/tiny.py (say, build_model) must give a new cache directory, not reuse a stale stand-in."""
    import helpers.tiny as tiny

    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))  # the same root whatever __file__ says
    spec = MODELS["llama-2-7b-chat"]
    before = tiny.tiny_model_dir(spec)
    edited = tmp_path / "tiny.py"
    edited.write_text(Path(tiny.__file__).read_text().replace("torch.manual_seed(SEED)", "torch.manual_seed(SEED + 1)"))
    assert edited.read_text() != Path(tiny.__file__).read_text()
    with monkeypatch.context() as m:
        m.setattr(tiny, "__file__", str(edited))
        after = tiny.tiny_model_dir(spec)
    assert after.parent == before.parent and after != before
    assert tiny.tiny_model_dir(spec) == before  # and the digest is stable for unchanged code


@pytest.mark.parametrize("key", sorted(MODELS))
def test_stand_in_loads_offline_without_a_socket(key, monkeypatch):
    path = helpers.resolve_model(key, "tiny")  # builds if needed, before sockets are forbidden
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*a, **k):
        raise AssertionError("the tiny profile opened a socket")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    spec = MODELS[key]
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 2
    assert model.config.vocab_size == len(tok)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (spec.bos_token, spec.eos_token, spec.pad_token)
    assert tok.chat_template == spec.chat_template()
    out = model.generate(**tok("The capital of France is", return_tensors="pt"), max_new_tokens=3, do_sample=False)
    assert out.shape[1] > 3


# --- Hub access: tokens, gated repositories, chat templates ----------------------------------------

def test_hf_token_env_vars_in_order_then_the_token_store(monkeypatch, tmp_path):
    import huggingface_hub.constants as hub_constants

    from helpers.hub import hf_token

    store = tmp_path / "token"
    monkeypatch.setattr(hub_constants, "HF_TOKEN_PATH", str(store))  # where `hf auth login` saves it
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    assert hf_token() is None
    store.write_text("hf_from_store\n")
    assert hf_token() == "hf_from_store"
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "hf_legacy")
    assert hf_token() == "hf_legacy"
    monkeypatch.setenv("HF_TOKEN", "hf_new")
    assert hf_token() == "hf_new"  # HF_TOKEN wins over the legacy name and the store
    monkeypatch.setenv("HF_TOKEN", "")
    assert hf_token() == "hf_legacy"  # an empty variable is no token


GATED_SERVER = r'''
import http.server, sys
class Gated(http.server.BaseHTTPRequestHandler):
    def _refuse(self):
        body = b'{"error": "Access to model mistralai/Mistral-7B-Instruct-v0.1 is restricted. You must have access to it and be authenticated to access it."}'
        self.send_response(403)
        self.send_header("X-Error-Code", "GatedRepo")
        self.send_header("X-Error-Message", "Access to model mistralai/Mistral-7B-Instruct-v0.1 is restricted.")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        sys.stderr.write(f"{self.command} {self.path} auth={self.headers.get('authorization')}\n")
    do_GET = do_HEAD = do_POST = _refuse
    def log_message(self, *a):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Gated)
print(server.server_address[1], flush=True)
server.serve_forever()
'''


def test_gated_repo_with_a_token_but_no_licence_says_so(tmp_path):
    """A real huggingface_hub + transformers request against a local server that answers as the Hub does
    for a gated repository whose licence the token's owner has not accepted (403, X-Error-Code: GatedRepo)."""
    import os
    import subprocess
    import sys

    server = subprocess.Popen([sys.executable, "-c", GATED_SERVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        port = server.stdout.readline().strip()
        env = dict(os.environ, HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0",
                   HF_TOKEN="hf_not_granted", HF_HOME=str(tmp_path / "hf"), HF_HUB_ETAG_TIMEOUT="5",
                   HF_HUB_DOWNLOAD_TIMEOUT="5")
        code = "import helpers.hub as h; print('RESULT', h.load_tokenizer('mistral-7b-instruct', 'full'))"
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    finally:
        server.terminate()
        log = server.communicate(timeout=10)[1]
    assert "RESULT None" in run.stdout, run.stdout + run.stderr
    assert "the Hub refused your token" in run.stdout and "accept the licence" in run.stdout, run.stdout
    assert "https://huggingface.co/mistralai/Mistral-7B-Instruct-v0.1" in run.stdout
    assert "auth=Bearer hf_not_granted" in log  # the token was really sent


def _without_template(tmp_path, key="llama-2-7b-chat"):
    """The stand-in tokenizer saved as a Hub repo would be, with its chat template removed."""
    import json

    tok = AutoTokenizer.from_pretrained(helpers.resolve_model(key, "tiny"))
    tok.chat_template = None
    tok.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    return AutoTokenizer.from_pretrained(tmp_path)


def test_tokenizer_without_chat_template_gets_the_courses(tmp_path, capsys):
    from helpers.hub import ensure_chat_template

    key = "llama-2-7b-chat"
    tok = _without_template(tmp_path, key)
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    with pytest.raises(ValueError, match="chat_template"):  # what the lesson would hit
        tok.apply_chat_template(chat, tokenize=False)
    assert ensure_chat_template(tok, key) is tok
    assert "has no chat template; using the course's copy" in capsys.readouterr().out
    reference = AutoTokenizer.from_pretrained(helpers.resolve_model(key, "tiny"))
    assert tok.apply_chat_template(chat, tokenize=False) == reference.apply_chat_template(chat, tokenize=False)
    assert tok.apply_chat_template(chat, tokenize=False) == "<s>[INST] Hi [/INST] Hello. </s>"
    # a tokenizer with its own template is left alone, silently
    own = "{{ 'x' }}"
    tok.chat_template = own
    assert ensure_chat_template(tok, key).chat_template == own and capsys.readouterr().out == ""


def test_load_tokenizer_falls_back_to_the_courses_template(tmp_path, monkeypatch, capsys):
    import helpers.hub as hub

    _without_template(tmp_path)
    monkeypatch.setattr(hub, "resolve_model", lambda key, profile: str(tmp_path))  # the Hub copy, here
    tok = hub.load_tokenizer("llama-2-7b-chat", "full")
    assert tok.chat_template == MODELS["llama-2-7b-chat"].chat_template()
    assert "no chat template" in capsys.readouterr().out
