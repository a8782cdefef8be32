"""Lecture 06 (generation and evaluation): what its cells rely on but cannot assert themselves.

- which model it evaluates: lecture 05's or 03's result from build/ when it fits the profile, else the base
  model (the cells only print the choice; in `make test` the answer depends on which lectures ran before);
- the judge reads the letters "A" and "B" as the tokens a model would really produce after the prompt;
- the lecture hands over none of assignment a5's answers (a5's own test grades a submission built from it).

The selection and judge functions are the lecture's own cells, executed here on real files: adapters
written by peft, configs read by transformers, the tiny stand-ins' real tokenizers.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
LECTURE = ROOT / "lectures" / "06_generation_and_evaluation.ipynb"
A5_ANSWERS = ("apply_temperature", "top_k_filter", "top_p_filter", "min_p_filter", "perplexity")


def _cell(marker: str) -> str:
    """Source of the lecture's code cell containing `marker`."""
    nb = nbformat.read(LECTURE, as_version=4)
    [src] = [c.source for c in nb.cells if c.cell_type == "code" and marker in c.source]
    return src


def _selection_namespace(profile: str, finetuned: dict) -> dict:
    from pathlib import Path as _Path

    from peft import PeftConfig
    from transformers import AutoConfig

    from helpers.tiny import TINY_CONFIG

    ns = {"PROFILE": profile, "FINETUNED": finetuned, "MODEL_KEY": "tinyllama-1.1b-chat", "Path": _Path, "PeftConfig": PeftConfig,
          "AutoConfig": AutoConfig, "TINY_CONFIG": TINY_CONFIG}
    exec(_cell("def finetuned_candidates"), ns)
    return ns


def _stand_in(key: str = "tinyllama-1.1b-chat") -> Path:
    from helpers import resolve_model

    return Path(resolve_model(key, "tiny"))


def _fake_lecture05(out: Path) -> Path:
    """What lecture 05 leaves in build/05_dpo: a merged SFT model and a (non-zero) LoRA adapter on it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    merged = out / "sft-merged"
    shutil.copytree(_stand_in(), merged)
    model = AutoModelForCausalLM.from_pretrained(merged)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(out / "dpo-adapter")
    return out


def _fake_lecture03(out: Path, base: str) -> Path:
    """What lecture 03 leaves in build/03_qlora_llama2: an adapter whose config names its base model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(_stand_in("llama-2-7b-chat"))
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(out)
    config = json.loads((out / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base
    (out / "adapter_config.json").write_text(json.dumps(config))
    return out


def _choice(ns) -> list[str]:
    return [label for label, _, base, _ in ns["finetuned_candidates"]() if ns["fits_profile"](base)]


def test_prefers_lecture05_then_lecture03_then_nothing(tmp_path):
    l05 = _fake_lecture05(tmp_path / "05_dpo")
    l03 = _fake_lecture03(tmp_path / "03_qlora", str(_stand_in("llama-2-7b-chat")))
    both = _selection_namespace("tiny", {"05": str(l05), "03": str(l03)})
    assert _choice(both) == ["lecture 05: SFT merged + DPO adapter", "lecture 03: QLoRA adapter"]
    only03 = _selection_namespace("tiny", {"05": str(tmp_path / "missing"), "03": str(l03)})
    assert _choice(only03) == ["lecture 03: QLoRA adapter"]
    assert _choice(_selection_namespace("tiny", {})) == []  # the Try suggestion: FINETUNED = {}


def test_results_from_the_other_profile_are_not_used(tmp_path):
    # tiny, offline: an adapter trained on the real Llama 2 names a Hub id, which cannot be loaded here
    real = _fake_lecture03(tmp_path / "03_real", "NousResearch/Llama-2-7b-chat-hf")
    assert _choice(_selection_namespace("tiny", {"03": str(real)})) == []
    # full: a stand-in's result (a 2-layer, 64-wide model) must not pass for the real one
    l05 = _fake_lecture05(tmp_path / "05_dpo")
    assert _choice(_selection_namespace("full", {"05": str(l05)})) == []
    # tiny: a merged model of the real size is not a stand-in
    big = tmp_path / "05_big"
    _fake_lecture05(big)
    config = json.loads((big / "sft-merged" / "config.json").read_text())
    (big / "sft-merged" / "config.json").write_text(json.dumps({**config, "hidden_size": 2048}))
    assert _choice(_selection_namespace("tiny", {"05": str(big)})) == []


@pytest.mark.slow
def test_lecture_runs_on_lecture05s_model_in_16_bits(tmp_path):
    """The whole lecture next to a build/05_dpo/, with the compute dtype a GPU would give (bf16), as in `full`
    after lecture 05: it evaluates the merged DPO model, says so, and its 16-bit tolerances hold.

    CI has no GPU, so the dtype is set in a cell inserted after the setup cell; the models are the
    stand-ins, in real bf16 (CPU kernels)."""
    from course import run as runner

    folder = tmp_path / "lectures"
    folder.mkdir()
    nb = nbformat.read(LECTURE, as_version=4)
    setup = next(i for i, c in enumerate(nb.cells) if "DTYPE = helpers.compute_dtype(DEVICE)" in c.source)
    nb.cells.insert(setup + 1, nbformat.v4.new_code_cell("DTYPE = torch.bfloat16"))
    nbformat.write(nb, folder / LECTURE.name)
    _fake_lecture05(folder / "build" / "05_dpo")
    [row] = runner.run_notebooks([folder / LECTURE.name], "tiny", progress=False, out_dir=tmp_path / "out",
                                 root=tmp_path)
    assert row.status == "ok", row.failure_message()
    executed = nbformat.read(tmp_path / "out" / "lectures" / LECTURE.name, as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "evaluating: lecture 05: SFT merged + DPO adapter (tiny stand-in)" in text
    assert "dpo-adapter" in text and "not fine-tuned" not in text
    bytes_per_value = re.search(r"cache after (\d+) tokens: ([\d,]+) bytes", text)
    tokens, held = int(bytes_per_value[1]), int(bytes_per_value[2].replace(",", ""))
    assert held == 2 * 2 * 2 * 16 * tokens * 2  # K and V, 2 layers, 2 kv heads, head dim 16, 2 bytes: bf16 ran


@pytest.mark.parametrize("key", ["tinyllama-1.1b-chat", "llama-2-7b-chat", "llama-3.1-8b-instruct",
                                 "qwen2.5-7b-instruct"])
def test_judge_reads_the_letters_the_model_would_write(key):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(_stand_in(key))
    ns = {"tokenizer": tokenizer}
    exec(_cell("def first_new_token"), ns)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "A or B?"}], tokenize=False,
                                           add_generation_prompt=True)
    letters = {letter: ns["first_new_token"](prompt, letter) for letter in "AB"}
    assert letters["A"] != letters["B"]
    for letter, token in letters.items():
        assert tokenizer.decode([token]).strip() == letter, (key, letter, tokenizer.convert_ids_to_tokens(token))
        # the same token the tokenizer produces when the whole answer is encoded
        assert token in tokenizer(prompt + letter, add_special_tokens=False)["input_ids"][-2:]


def test_lecture_does_not_hand_over_a5():
    """The lecture uses transformers' processors; it defines none of a5's answers and no sorted-cumsum filter."""
    nb = nbformat.read(LECTURE, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    defined = set(re.findall(r"^\s*def (\w+)", code, re.MULTILINE))
    assert not defined & set(A5_ANSWERS), defined & set(A5_ANSWERS)
    assert "cumsum" not in code and "masked_fill" not in code
    for processor in ("TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper",
                      "RepetitionPenaltyLogitsProcessor"):
        assert f"{processor}(" in code
