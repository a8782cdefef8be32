"""Full-profile rehearsal on CPU, without downloads: every lecture's `full` settings go through the real
code paths that do not need a GPU's arithmetic.

- Models: each real shape becomes a transformers config, instantiated on the meta device (no memory),
  and its real parameter count is compared with helpers' `Shape.n_params`, `count_parameters` and,
  for each lecture's LoRA settings, `lora_parameters` against peft's own count.
- Trainer configs: the lectures' own `SFTConfig(...)`/`DPOConfig(...)` expressions, read from their
  cells, evaluated with `SETTINGS["full"]` under a T4 that torch itself reports (and an A100).
- Data: `load_course_dataset(name, "full")` through `datasets.load_dataset` on local repositories laid
  out like the Hub ones (tests/data/hub_datasets.json, written from the dataset cards); the splits the
  course does not use hold unreadable files, so reading them fails the test.
"""

import ast
import dataclasses
import json
from pathlib import Path

import pytest
import torch
import trl.trainer.dpo_config  # noqa: F401 - imported before any GPU is simulated: importing TRL's
import trl.trainer.sft_config  # noqa: F401   configs under a simulated CUDA reaches torch._C's CUDA bindings
from simulated_gpus import LECTURES, _cells, lecture_namespace, simulate_gpu

import helpers
from helpers import course_data
from helpers.course_data import DATASETS, DatasetSchemaError
from helpers.models import MODELS

ROOT = Path(__file__).resolve().parents[1]
CARDS = json.loads((ROOT / "tests" / "data" / "hub_datasets.json").read_text(encoding="utf-8"))


# --- models on the meta device ---------------------------------------------------------------------

def meta_model(shape, config_cls=None):
    from transformers import LlamaConfig, LlamaForCausalLM

    config_cls = config_cls or LlamaConfig
    config = config_cls(hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
                        num_hidden_layers=shape.num_hidden_layers, num_attention_heads=shape.num_attention_heads,
                        num_key_value_heads=shape.num_key_value_heads, vocab_size=shape.vocab_size,
                        tie_word_embeddings=shape.tie_word_embeddings)
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config) if config_cls is not LlamaConfig else LlamaForCausalLM(config)


@pytest.mark.parametrize("key", sorted(MODELS))
def test_real_shapes_on_the_meta_device(key):
    shape = MODELS[key].shape
    model = meta_model(shape)
    assert next(model.parameters()).device.type == "meta"
    real = sum(p.numel() for p in model.parameters())
    assert real == model.num_parameters() == shape.n_params == helpers.count_parameters(model).total
    linear = sum(m.weight.numel() for n, m in model.model.layers.named_modules() if isinstance(m, torch.nn.Linear))
    assert linear == shape.linear_params  # what bitsandbytes quantizes (the estimate's nf4 part)


def test_qwen_bias_is_the_documented_difference():
    """Qwen2 adds q/k/v biases that the Llama-style Shape leaves out (the models.py comment says ~0.1 %)."""
    from transformers import Qwen2Config

    shape = MODELS["qwen2.5-7b-instruct"].shape
    real = meta_model(shape, Qwen2Config).num_parameters()
    kv = shape.hidden_size // shape.num_attention_heads * shape.num_key_value_heads
    assert real - shape.n_params == shape.num_hidden_layers * (shape.hidden_size + 2 * kv)
    assert (real - shape.n_params) / real < 0.001


def _lora_settings():
    """(lecture, model key, r, target modules) of every lecture's full LoRA adapters."""
    out = []
    for lecture in ("03", "04", "05"):
        ns = lecture_namespace(lecture)
        cfg = ns["CFG"]
        if lecture == "05":
            r, targets = ns["LORA"]["r"], ns["sft"].ALL_LINEAR
        else:
            r, targets = cfg["lora_r"], ns["sft"].ATTENTION if lecture == "03" else ns["sft"].ALL_LINEAR
        out.append((lecture, ns["MODEL_KEY"], r, tuple(targets)))
    return out


@pytest.mark.parametrize("lecture,key,r,targets", _lora_settings())
def test_lora_count_of_every_full_recipe_equals_peft(lecture, key, r, targets):
    from peft import LoraConfig, get_peft_model

    shape = MODELS[key].shape
    model = get_peft_model(meta_model(shape), LoraConfig(r=r, lora_alpha=16, target_modules=list(targets),
                                                         task_type="CAUSAL_LM"))
    trainable, total = model.get_nb_trainable_parameters()
    assert helpers.lora_parameters(shape, r, targets) == trainable
    assert (helpers.count_parameters(model).trainable, helpers.count_parameters(model).total) == (trainable, total)
    assert helpers.estimate_training_memory(key, "qlora", lora_r=r, target_modules=targets).trainable_params == trainable


# --- the lectures' own trainer configs --------------------------------------------------------------

CONFIG_CLASSES = ("SFTConfig", "DPOConfig")


def _name(call: ast.Call) -> str | None:
    return call.func.id if isinstance(call.func, ast.Name) else None


def config_calls(lecture: str):
    """(definitions, calls): the lecture's helper functions that build configs and its `common = dict(...)`
    assignments, and every call that builds a config (directly or through those functions)."""
    defs, calls, builders = [], [], set()
    trees = []
    for cell in _cells(LECTURES[lecture]):
        if cell["cell_type"] != "code":
            continue
        try:
            trees.append(ast.parse("".join(cell["source"])))
        except SyntaxError:
            continue
    for tree in trees:
        for node in tree.body:
            params = {a.arg for a in node.args.args} if isinstance(node, ast.FunctionDef) else set()
            if isinstance(node, ast.FunctionDef) and any(  # builds a config itself, or the class it is given
                    isinstance(n, ast.Call) and (_name(n) in CONFIG_CLASSES or _name(n) in params)
                    for n in ast.walk(node)):
                defs.append(node)
                builders.add(node.name)
            elif (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and _name(node.value) == "dict"
                  and all(isinstance(t, ast.Name) for t in node.targets)):
                defs.append(node)
    inside = {id(n) for d in defs if isinstance(d, ast.FunctionDef) for n in ast.walk(d)}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _name(node) in CONFIG_CLASSES + tuple(builders) and id(node) not in inside:
                calls.append(node)
    used = {n.id for c in calls + [d for d in defs if isinstance(d, ast.FunctionDef)] for n in ast.walk(c)
            if isinstance(n, ast.Name)}
    defs = [d for d in defs if isinstance(d, ast.FunctionDef) or d.targets[0].id in used]
    return defs, calls


def build_configs(lecture: str, tmp_path) -> list:
    from trl import DPOConfig, SFTConfig

    ns = lecture_namespace(lecture)
    import trl

    ns.update(trl=trl, SFTConfig=SFTConfig, DPOConfig=DPOConfig, OUTPUT_DIR=str(tmp_path), OUT=tmp_path, Path=Path)
    defs, calls = config_calls(lecture)
    exec(compile(ast.fix_missing_locations(ast.Module(body=defs, type_ignores=[])), lecture, "exec"), ns)  # noqa: S102
    return [eval(compile(ast.Expression(c), lecture, "eval"), ns) for c in calls]  # noqa: S307


@pytest.mark.parametrize("lecture", ["03", "04", "05"])
@pytest.mark.parametrize("card,half", [("T4", "fp16"), ("A100", "bf16")])
def test_lectures_trainer_configs_with_full_settings(lecture, card, half, tmp_path):
    with simulate_gpu(card):
        configs = build_configs(lecture, tmp_path)
        cfg = lecture_namespace(lecture)["CFG"]
    assert configs, f"lecture {lecture}: no SFTConfig/DPOConfig found"
    for args in configs:
        assert (args.fp16, args.bf16) == (half == "fp16", half == "bf16"), type(args).__name__
        assert args.per_device_train_batch_size == cfg["batch_size"]
        assert args.gradient_accumulation_steps == cfg["grad_accum"]
    kinds = sorted({type(a).__name__ for a in configs})
    assert kinds == (["DPOConfig", "SFTConfig"] if lecture == "05" else ["SFTConfig"])
    if lecture in ("03", "04"):
        assert {a.max_length for a in configs} == {cfg["max_length"]} and {a.optim for a in configs} == {cfg["optim"]}


# --- the Hub datasets, from a local copy of each repository's layout -------------------------------

def _value(dtype: str, i: int):
    if dtype == "string":
        return f"row {i}"
    if dtype.startswith("sequence<int"):
        return [1, 2, 3]
    if dtype.startswith("list<struct"):
        return [{"content": f"hello {i}", "role": "user"}, {"content": f"answer {i}", "role": "assistant"}]
    if dtype == "list<string>":
        return ["a", "b"]
    if dtype == "list<float64>":
        return [8.0, 6.0]
    if dtype == "float64":
        return 8.0
    if dtype == "bool":
        return False
    raise ValueError(dtype)


def make_hub_repo(root: Path, name: str, *, drop_split: str | None = None, drop_column: str | None = None) -> Path:
    """A directory laid out like the Hub repository of dataset `name` (card header + data/<split>-*.parquet).
    Splits the course does not use get a file that is not Parquet: reading it fails."""
    from datasets import Dataset

    card = CARDS[name]
    repo = root / card["hub_id"].replace("/", "__")
    (repo / "data").mkdir(parents=True)
    header = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split, info in card["splits"].items():
        header += [f"  - split: {split}", f"    path: {info['files']}"]
    (repo / "README.md").write_text("\n".join(header + ["---", f"# stand-in layout of {card['hub_id']}", ""]))
    for split, info in card["splits"].items():
        if split == drop_split:
            continue
        path = repo / info["files"].replace("*", "00000-of-00001.parquet")
        if split not in DATASETS[name].splits:
            path.write_bytes(b"not parquet: a loader that reads the splits the course does not use fails here")
            continue
        rows = [{c: _value(t, i) for c, t in card["features"].items() if c != drop_column} for i in range(3)]
        Dataset.from_list(rows).to_parquet(str(path))
    return repo


@pytest.fixture
def hub_copy(tmp_path, monkeypatch):
    """Point dataset `name`'s Hub id at a local repository copy (load_dataset takes either)."""
    def point(name, **kw):
        repo = make_hub_repo(tmp_path, name, **kw)
        monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], hub_id=str(repo)))
        return repo
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    return point


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_course_datasets_agree_with_the_cards(name):
    spec, card = DATASETS[name], CARDS[name]
    assert spec.hub_id == card["hub_id"]
    assert set(spec.splits) <= set(card["splits"]) and set(spec.columns) <= set(card["features"])
    assert spec.hub_data_files() == {s: card["splits"][s]["files"] for s in spec.splits}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_full_loader_reads_only_the_needed_splits(name, hub_copy):
    hub_copy(name)
    ds = helpers.load_course_dataset(name, "full")
    spec = DATASETS[name]
    assert tuple(ds) == spec.splits
    for split in ds.values():
        assert tuple(split.column_names) == spec.columns and len(split) == 3


def test_split_argument_alone_still_reads_every_split(hub_copy):
    """Why the loader names each split's files: `datasets` prepares every split before selecting one."""
    from datasets import load_dataset

    repo = hub_copy("ultrachat")
    with pytest.raises(Exception):  # noqa: B017 - the unreadable train_gen file: any parse error
        load_dataset(str(repo), split="train_sft")


def test_missing_split_is_an_error(hub_copy):
    hub_copy("ultrachat", drop_split="test_sft")
    with pytest.raises(DatasetSchemaError, match="has no split 'test_sft'.*needs the splits"):
        helpers.load_course_dataset("ultrachat", "full")


def test_missing_column_is_an_error(hub_copy):
    hub_copy("lamini_docs", drop_column="answer")
    with pytest.raises(DatasetSchemaError, match=r"split 'train', lacks the column\(s\) \['answer'\]"):
        helpers.load_course_dataset("lamini_docs", "full")


def test_schema_error_is_a_value_error():
    assert issubclass(course_data.DatasetSchemaError, ValueError)
