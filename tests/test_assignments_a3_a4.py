"""Assignments a3 (LoRA arithmetic) and a4 (DPO and IPO): graded for real, and checked against PEFT and TRL.

The round trip grades three submissions per assignment with the real pipeline (nbgrader through
`course.grading.grade_class`, on a scratch course holding only a3 and a4): the solution (full marks),
the blank release (zero) and a submission assembled only from what the course hands out — `helpers` and
lecture 05's cells. That last one may earn exactly the points the course legitimately gives away:

- a3: 5 of 20 — `lora_param_count` (3: `helpers.lora_parameters` computes it) and the fp32/fp16/int8 part
  of `weight_memory_gib` (2: `helpers.estimate.weights_gib`; its nf4 counts the scaling constants, which
  the assignment says to ignore). The LoRA layer, the rank pattern and the training memory are not given.
- a4: 6 of 16 autograded — the known answers and the shift/mask behaviour of `sequence_logps` (4) and the
  values of `dpo_loss` (2), written in lecture 05. The lecture's functions do not validate shapes or
  beta (2 points), and IPO and the slopes (8) are nowhere in the course.

The outside oracles run the solutions' answer cells in-process: PEFT's `rank_pattern` for the counts,
a real `DPOTrainer` (sigmoid and IPO losses, read from `evaluate()`) for a4.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import nbformat
import pytest
import torch
from scratch_course import scratch_course

from course.grading import grade_class
from course.grading_course import REPO_ROOT
from course.grading_normalize import answered_release

pytestmark = pytest.mark.slow

A3, A4 = "a3_lora_arithmetic", "a4_dpo"
GIVEN_AWAY = {A3: 5, A4: 6}
MAX = {A3: 20, A4: 20}
MANUAL = {A3: 0, A4: 4}  # a4's written answer is graded by hand


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _cell(nb, grade_id: str):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _lecture_functions(names: tuple[str, ...]) -> str:
    """The source of the named functions, as written in lecture 05's cells."""
    nb = _read(REPO_ROOT / "lectures" / "05_dpo.ipynb")
    found = {}
    for cell in nb.cells:
        if cell.cell_type != "code" or "def " not in cell.source:
            continue
        tree = ast.parse(cell.source)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name in names:
                found[node.name] = ast.get_source_segment(cell.source, node)
    assert set(found) == set(names), f"lecture 05 no longer defines {set(names) - set(found)}"
    return "\n\n\n".join(found[n] for n in names)


def course_built_submission(aid: str, released):
    """The released notebook with every answer the course itself provides filled in from it."""
    nb = nbformat.from_dict(released)
    if aid == A3:
        _cell(nb, "lora_param_count").source = textwrap.dedent('''\
            from helpers.estimate import lora_parameters
            from helpers.models import Shape

            PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


            def _shape(hidden, intermediate, n_layers, kv):
                return Shape(hidden, intermediate, n_layers, hidden, hidden if kv is None else kv, 0)


            def projection_shapes(hidden, intermediate, kv=None):
                return _shape(hidden, intermediate, 1, kv).projections()


            def lora_param_count(hidden, intermediate, n_layers, target_modules, r, kv=None):
                return lora_parameters(_shape(hidden, intermediate, n_layers, kv), r, target_modules)
            ''')
        memory = _cell(nb, "memory")
        memory.source = memory.source.replace(
            "def weight_memory_gib(", "from helpers.estimate import weights_gib\n\n\ndef weight_memory_gib(", 1)
        stub = "# YOUR CODE HERE\n    raise NotImplementedError()"
        assert memory.source.count(stub) == 2, memory.source
        memory.source = memory.source.replace(stub, "return weights_gib(n_params, dtype)", 1)
    else:
        _cell(nb, "sequence_logps").source = ("import torch\nimport torch.nn.functional as F\n\n\n"
                                              + _lecture_functions(("sequence_logprobs",))
                                              + "\n\n\nsequence_logps = sequence_logprobs\n")
        _cell(nb, "dpo_loss").source = _lecture_functions(("dpo_loss",)) + "\n"
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """{(student, assignment): GradeRow} for a scratch course with only a3 and a4."""
    root = tmp_path_factory.mktemp("course_a3_a4")
    scratch_course(root, (A3, A4))
    for aid in (A3, A4):
        released = _read(root / "assignments" / aid / f"{aid}.ipynb")
        subs = {"solution": answered_release(released, _read(root / "solutions" / aid / f"{aid}.ipynb")), "blank": released,
                "course_built": course_built_submission(aid, released)}
        for student, nb in subs.items():
            folder = root / "submitted" / student / aid
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, folder / f"{aid}.ipynb")
    return {(r.student, r.assignment): r for r in grade_class(root, timeout=60)}


@pytest.mark.parametrize("aid", [A3, A4])
def test_solution_earns_every_autograded_point(graded, aid):
    row = graded[("solution", aid)]
    assert (row.status, row.max_score, row.score) == ("graded", MAX[aid], MAX[aid] - MANUAL[aid]), row
    assert row.problems == [], row.problems


@pytest.mark.parametrize("aid", [A3, A4])
def test_blank_release_earns_zero(graded, aid):
    row = graded[("blank", aid)]
    assert (row.status, row.score) == ("graded", 0), row
    assert any("NotImplementedError" in p.reason for p in row.problems)


@pytest.mark.parametrize("aid", [A3, A4])
def test_course_built_submission_earns_only_what_the_course_gives_away(graded, aid):
    row = graded[("course_built", aid)]
    assert row.status == "graded", row
    assert row.score == GIVEN_AWAY[aid], (row.score, [str(p) for p in row.problems])


# --- the solutions against PEFT and TRL ---------------------------------------------------------------

def skip_if_trl_dpo_needs_triton() -> None:
    """trl 1.15's DPOTrainer computes log-probs with a Triton kernel and has no fallback: without triton
    (CPU-only torch) the kernel is None and training fails at the first batch. Skip visibly there;
    trl 1.14 (a plain-torch kernel) and 1.16 (a CPU fallback) run."""
    import trl
    from trl.trainer import utils

    if getattr(utils, "_ChunkedLogProbFunction", object) is None:
        pytest.skip(f"trl {trl.__version__}'s DPOTrainer needs triton, which this CPU-only torch lacks")


def _solution_namespace(aid: str) -> dict:
    """Run the answer cells of a solution notebook in-process; return its globals."""
    ns: dict = {}
    for cell in _read(REPO_ROOT / "solutions" / aid / f"{aid}.ipynb").cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution"):
            exec(compile(cell.source, f"{aid}:{meta['grade_id']}", "exec"), ns)
    return ns


def test_rank_pattern_count_equals_peft():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    ns = _solution_namespace(A3)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=50)  # kv = 64 / 4 * 2 = 32
    targets = ["q_proj", "v_proj", "down_proj"]
    pattern = {"layers.3.self_attn.q_proj": 16, "layers.2.mlp.down_proj": 2, "layers.0.self_attn.v_proj": 1}
    model = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=4, target_modules=targets, rank_pattern=pattern))
    peft_count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    layers = [dict.fromkeys(targets, 4) for _ in range(4)]
    layers[3]["q_proj"], layers[2]["down_proj"], layers[0]["v_proj"] = 16, 2, 1
    assert ns["pattern_param_count"](64, 96, layers, kv=32) == peft_count
    uniform = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=4, target_modules=targets))
    assert ns["lora_param_count"](64, 96, 4, targets, r=4, kv=32) == sum(
        p.numel() for p in uniform.parameters() if p.requires_grad) != peft_count


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_a4_losses_equal_trl_dpotrainer(tmp_path, loss_type):
    """The solution's sequence_logps + dpo_loss / ipo_loss give a real DPOTrainer's evaluate() loss."""
    import trl
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from helpers import dpo, load_course_dataset, resolve_model

    skip_if_trl_dpo_needs_triton()
    ns = _solution_namespace(A4)
    path = resolve_model("tinyllama-1.1b-chat", "tiny")
    tok = AutoTokenizer.from_pretrained(path)
    raw = load_course_dataset("orca_dpo_pairs", "tiny")["train"].filter(dpo.keep_pair).select(range(16))
    pairs = raw.map(lambda r: dpo.format_orca_pair(r, tok), remove_columns=raw.column_names)
    torch.manual_seed(0)
    args = DPOConfig(output_dir=str(tmp_path), beta=0.2, loss_type=[loss_type], max_steps=3, learning_rate=5e-3,
                     per_device_train_batch_size=4, per_device_eval_batch_size=6, report_to="none",
                     save_strategy="no", bf16=False, fp16=False, disable_tqdm=True, seed=0)
    try:
        trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(path), args=args, train_dataset=pairs,
                             eval_dataset=pairs.select(range(6)), processing_class=tok,
                             peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    except (ImportError, RuntimeError) as err:
        if "triton" in str(err).lower():
            pytest.skip(f"trl {trl.__version__}: DPOTrainer cannot run on this CPU-only machine ({err})")
        raise
    trainer.train()
    metrics = trainer.evaluate()
    model = trainer.model.eval()
    (batch,) = list(trainer.get_eval_dataloader())
    with torch.no_grad():
        kw = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        policy = ns["sequence_logps"](model(**kw).logits, batch["input_ids"], batch["completion_mask"])
        with model.disable_adapter():
            ref = ns["sequence_logps"](model(**kw).logits, batch["input_ids"], batch["completion_mask"])
    (pc, pr), (rc, rr) = policy.chunk(2), ref.chunk(2)
    assert ((pc - rc) - (pr - rr)).abs().max() > 1e-3  # the adapter moved: not the trivial start
    assert metrics["eval_logps/chosen"] == pytest.approx(pc.mean().item(), rel=1e-4)
    if loss_type == "sigmoid":
        loss, chosen, rejected = ns["dpo_loss"](pc, pr, rc, rr, beta=0.2)
        assert metrics["eval_rewards/chosen"] == pytest.approx(chosen.mean().item(), abs=1e-5)
        assert metrics["eval_rewards/rejected"] == pytest.approx(rejected.mean().item(), abs=1e-5)
    else:
        lc, lr = batch["completion_mask"].sum(dim=1).chunk(2)
        loss = ns["ipo_loss"](pc, pr, rc, rr, lc, lr, beta=0.2)
    assert metrics["eval_loss"] == pytest.approx(loss.item(), rel=1e-4)
