"""The grading round trip and hostile submissions, on a scratch copy of the course.

One class is graded once (module fixture) and every test reads its rows: the solutions, the blank
releases, tampered test cells, and broken copies of assignment 1 (loop, syntax error, exception,
sys.exit, kernel death, a loop that ignores the interrupt, huge output, a deleted graded cell, a file that is not a notebook).
The broken code always replaces the *last* answer cell of assignment 1 (`encode_decode`), so a fair
grader takes exactly that part's points (6) and keeps the rest.

Outside oracles for the solutions (PEFT's lora.Linear, TRL's DPO loss, the tokenizer's chat template)
run the solution notebooks' answer cells in-process.
"""

from __future__ import annotations

import copy
import csv
import shutil
from pathlib import Path

import nbformat
import pytest

from course.grading import assignment_ids, grade_class, release, write_grades_csv
from course.grading_course import REPO_ROOT, _tree_differences

pytestmark = pytest.mark.slow

A1 = "a1_bpe_tokenizer"
BROKEN_CELL = "encode_decode"  # answer cell that the hostile submissions replace
BROKEN_POINTS = 6  # points of test_encode_decode, the only test that depends on it
CELL_TIMEOUT = 5  # seconds: the infinite loop costs this much

HOSTILE = {
    "loop": "while True:\n    pass",
    "syntax": "def encode(text, merges:\n    return []",
    "exception": "raise ValueError('boom')",
    "sys_exit": "import sys\nsys.exit(3)",
    "os_exit": "import os\nos._exit(1)",
    "self_kill": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
    "ignores_interrupt": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
}


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _cell_index(nb, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _submit(root: Path, student: str, aid: str, nb=None, text: str | None = None) -> None:
    folder = root / "submitted" / student / aid
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{aid}.ipynb").write_text(text if text is not None else nbformat.writes(nb), encoding="utf-8")


def _solution(root: Path, aid: str):
    return _read(root / "solutions" / aid / f"{aid}.ipynb")


def _released(root: Path, aid: str):
    return _read(root / "assignments" / aid / f"{aid}.ipynb")


def _make_submissions(root: Path) -> None:
    for aid in assignment_ids(root):
        _submit(root, "solution", aid, _solution(root, aid))
        _submit(root, "blank", aid, _released(root, aid))
    sol, blank = _solution(root, A1), _released(root, A1)
    for student, source in HOSTILE.items():
        nb = copy.deepcopy(sol)
        nb.cells[_cell_index(nb, BROKEN_CELL)].source = source
        _submit(root, student, A1, nb)
    nb = copy.deepcopy(sol)  # a correct answer that also floods stdout
    nb.cells[_cell_index(nb, BROKEN_CELL)].source += "\nfor _ in range(100_000):\n    print('spam ' * 20)"
    _submit(root, "huge_output", A1, nb)
    nb = copy.deepcopy(blank)  # tests edited to pass: must be restored, so still 0
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.source = "pass"
    _submit(root, "tampered_blank", A1, nb)
    nb = copy.deepcopy(sol)  # test edited to fail: restored, so still full marks
    nb.cells[_cell_index(nb, "test_merge")].source = "assert False"
    _submit(root, "tampered_solution", A1, nb)
    nb = copy.deepcopy(sol)  # a graded test cell deleted: restored and run
    del nb.cells[_cell_index(nb, "test_merge")]
    _submit(root, "deleted_test", A1, nb)
    nb = copy.deepcopy(sol)  # an answer cell deleted: restored as the stub, its tests fail
    del nb.cells[_cell_index(nb, BROKEN_CELL)]
    _submit(root, "deleted_answer", A1, nb)
    _submit(root, "not_a_notebook", A1, text="this is not a notebook {")


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """(root, rows by (student, assignment)) of a scratch course graded once."""
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(REPO_ROOT / "solutions", root / "solutions",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    release(root)
    _make_submissions(root)
    rows = grade_class(root, timeout=CELL_TIMEOUT)
    write_grades_csv(rows, root / "build" / "grades.csv")
    return root, {(r.student, r.assignment): r for r in rows}


def _max(rows, aid):
    return rows[("solution", aid)].max_score


# --- the round trip -------------------------------------------------------------------------------

def test_fresh_release_equals_committed_assignments(course):
    root, _ = course
    assert _tree_differences(root / "assignments", REPO_ROOT / "assignments") == []


def test_solution_earns_every_autograded_point(course):
    _, rows = course
    for aid in assignment_ids(REPO_ROOT):
        row = rows[("solution", aid)]
        manual = 4 if aid == "a4_dpo" else 0  # the written DPO answer is graded by hand
        assert (row.status, row.score, row.max_score - manual) == ("graded", row.max_score - manual, row.score), row
        assert row.problems == [], row.problems


def test_points_add_up(course):
    _, rows = course
    assert {aid: _max(rows, aid) for aid in assignment_ids(REPO_ROOT)} == {
        "a1_bpe_tokenizer": 20, "a2_chat_templates": 20, "a3_lora_arithmetic": 20, "a4_dpo": 20}
    assert rows[("solution", "a4_dpo")].needs_manual_grade


def test_blank_release_earns_zero(course):
    _, rows = course
    for aid in assignment_ids(REPO_ROOT):
        row = rows[("blank", aid)]
        assert (row.status, row.score) == ("graded", 0), row
        assert any("NotImplementedError" in p.reason for p in row.problems)


def test_tampered_test_cells_are_restored(course):
    _, rows = course
    blank, sol = rows[("tampered_blank", A1)], rows[("tampered_solution", A1)]
    assert blank.score == 0 and sol.score == _max(rows, A1)
    assert any(p.cell == "test_merge" and "graded as the original" in p.reason for p in sol.problems)


def test_feedback_hides_hidden_tests(course):
    root, _ = course
    html = (root / "build" / "feedback" / "solution" / A1 / f"{A1}.html").read_text(encoding="utf-8")
    assert "hidden tests are not shown in feedback" in html
    assert "_reference_train" not in html  # a helper that only exists in a hidden test
    autograded = (root / "build" / "autograded" / "solution" / A1 / f"{A1}.ipynb").read_text(encoding="utf-8")
    assert "_reference_train" in autograded  # ...which the autograder did run


# --- broken submissions ---------------------------------------------------------------------------

@pytest.mark.parametrize("student,reason", [
    ("loop", "KeyboardInterrupt"), ("syntax", "SyntaxError"), ("exception", "ValueError: boom"),
    ("sys_exit", "SystemExit"), ("os_exit", "kernel died"), ("self_kill", "kernel died"),
    ("ignores_interrupt", "time limit"),
])
def test_broken_cell_costs_only_its_part(course, student, reason):
    _, rows = course
    row = rows[(student, A1)]
    assert row.status == "graded"
    assert row.score == _max(rows, A1) - BROKEN_POINTS, row
    broken = [p for p in row.problems if p.cell == BROKEN_CELL]
    assert broken and reason in broken[0].reason, row.problems


def test_enormous_output_is_truncated_and_graded(course):
    root, rows = course
    assert rows[("huge_output", A1)].score == _max(rows, A1)
    autograded = root / "build" / "autograded" / "huge_output" / A1 / f"{A1}.ipynb"
    assert autograded.stat().st_size < 1_000_000


def test_deleted_graded_cells_are_restored(course):
    _, rows = course
    test_gone, answer_gone = rows[("deleted_test", A1)], rows[("deleted_answer", A1)]
    assert test_gone.score == _max(rows, A1)  # the restored test ran, and passed
    assert any(p.cell == "test_merge" and "restored" in p.reason for p in test_gone.problems)
    assert answer_gone.score == _max(rows, A1) - BROKEN_POINTS
    assert any(p.cell == BROKEN_CELL and "restored" in p.reason for p in answer_gone.problems)


def test_not_a_notebook_scores_zero_without_stopping_the_batch(course):
    root, rows = course
    row = rows[("not_a_notebook", A1)]
    assert (row.status, row.score, row.max_score) == ("not-a-notebook", 0, _max(rows, A1))
    assert "not a notebook" in row.problems[0].reason
    with open(root / "build" / "grades.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert {r["student"] for r in table} >= {"not_a_notebook", "solution", "loop", "self_kill"}
    assert [(r["student"], r["assignment"]) for r in table] == sorted((r["student"], r["assignment"]) for r in table)
    assert {"student", "assignment", "score", "max_score", "status", "reason"} <= set(table[0])


def test_regrading_is_idempotent(course):
    root, rows = course
    again = grade_class(root, timeout=CELL_TIMEOUT, students=["solution", "exception"], assignments=[A1])
    for row in again:
        before = rows[(row.student, row.assignment)]
        assert (row.score, row.status, [str(p) for p in row.problems]) == \
            (before.score, before.status, [str(p) for p in before.problems])
    first = (root / "build" / "grades.csv").read_bytes()
    write_grades_csv(list(rows.values()), root / "build" / "grades.csv")
    assert (root / "build" / "grades.csv").read_bytes() == first


# --- the solutions against outside references ------------------------------------------------------

def _solution_namespace(aid: str) -> dict:
    """Run the answer cells (and the read-only helpers) of a solution notebook; return its globals."""
    nb = _read(REPO_ROOT / "solutions" / aid / f"{aid}.ipynb")
    ns: dict = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and (meta.get("solution") or (meta.get("locked") and not meta.get("grade"))):
            exec(compile(cell.source, f"{aid}:{meta['grade_id']}", "exec"), ns)
    return ns


def test_bpe_solution_matches_the_course_reference():
    from helpers import bpe

    ns = _solution_namespace(A1)
    text = "low lower lowest newer newest wider widest 👋 héllo " * 4
    merges, vocab = bpe.train(text, 300)
    ours = ns["train"](text, 300)
    # the lecture's trainer stops once no pair repeats; the assignment's (like minbpe) goes on to vocab_size
    assert len(merges) > 20 and list(ours.items())[: len(merges)] == list(merges.items())
    assert ns["encode"](text, merges) == bpe.encode(text, merges)
    assert ns["decode"](bpe.encode(text, merges), merges) == bpe.decode(bpe.encode(text, merges), vocab) == text


def test_chat_template_solution_renders_like_the_tokenizer():
    from transformers import AutoTokenizer

    from helpers import resolve_model

    ns = _solution_namespace("a2_chat_templates")
    tok = AutoTokenizer.from_pretrained(resolve_model("tinyllama-1.1b-chat", "tiny"))
    chats = [[{"role": "user", "content": "Hi"}],
             [{"role": "system", "content": "S"}, {"role": "user", "content": "q"},
              {"role": "assistant", "content": "a"}, {"role": "user", "content": "é🤖"}]]
    for chat in chats:
        for gen in (False, True):
            assert ns["render"](ns["TEMPLATE"], chat, gen) == tok.apply_chat_template(
                chat, tokenize=False, add_generation_prompt=gen)


def test_lora_solution_matches_peft():
    import torch
    from peft import LoraConfig
    from peft.tuners.lora import Linear as PeftLoraLinear

    ns = _solution_namespace("a3_lora_arithmetic")
    torch.manual_seed(0)
    base = torch.nn.Linear(12, 7)
    ours = ns["LoRALinear"](base, r=4, alpha=16)
    with torch.no_grad():
        ours.lora_B.weight.normal_()
    theirs = PeftLoraLinear(torch.nn.Linear(12, 7), "default", LoraConfig(r=4, lora_alpha=16), r=4, lora_alpha=16)
    theirs.base_layer.load_state_dict(base.state_dict())
    theirs.lora_A["default"].weight.data.copy_(ours.lora_A.weight)
    theirs.lora_B["default"].weight.data.copy_(ours.lora_B.weight)
    x = torch.randn(3, 12)
    assert torch.allclose(ours(x), theirs(x), atol=1e-6)
    theirs.merge()
    assert torch.allclose(ours.merge().weight, theirs.base_layer.weight, atol=1e-6)
    trainable = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    assert trainable == 4 * (12 + 7)  # r (d_in + d_out), as lora_param_count counts


def _trl_dpo_loss(policy, reference, ids, mask, beta):
    """TRL 1.14's own `DPOTrainer._compute_loss` (sigmoid loss), run on a stand-in for the trainer.

    Building a real DPOTrainer (dataset, accelerator, optimizer) takes longer than the whole check;
    the method only reads the attributes below. Returns (loss, the metrics it logged).
    """
    from collections import defaultdict
    from types import SimpleNamespace

    import torch
    from trl import DPOTrainer

    accelerator = SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=lambda t: t, gather=lambda t: t,
                                  unwrap_model=lambda m: m)
    trainer = SimpleNamespace(
        use_liger_kernel=False, model=policy, ref_model=reference, accelerator=accelerator, aux_loss_enabled=False,
        ld_alpha=None, precompute_ref_logps=False, args=SimpleNamespace(gradient_checkpointing_kwargs=None),
        f_divergence_type="reverse_kl", loss_types=["sigmoid"], loss_weights=[1.0], beta=beta,
        label_smoothing=0.0, use_weighting=False, is_fsdp_enabled=False, _total_train_tokens=0, _tp_size=1,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)})
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "completion_mask": mask}
    with torch.no_grad():
        loss = DPOTrainer._compute_loss(trainer, policy, inputs, return_outputs=False)
    return loss, trainer._metrics["eval"]


def test_dpo_solution_matches_trl_on_the_tiny_model():
    """The solution's sequence_logps + dpo_loss give TRL's loss, rewards and log-probs on the tiny model."""
    import torch
    from transformers import AutoModelForCausalLM

    from helpers import resolve_model

    ns = _solution_namespace("a4_dpo")
    path = resolve_model("tinyllama-1.1b-chat", "tiny")
    policy = AutoModelForCausalLM.from_pretrained(path).eval()
    reference = AutoModelForCausalLM.from_pretrained(path).eval()
    torch.manual_seed(0)
    with torch.no_grad():  # make the policy differ from the reference
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ids = torch.randint(3, policy.config.vocab_size, (4, 12))  # TRL's layout: [chosen_0, chosen_1, rejected_0, rejected_1]
    mask = torch.zeros_like(ids)
    mask[:, 5:] = 1  # 5 prompt tokens
    mask[1, 10:] = 0  # a shorter completion, padded
    trl_loss, metrics = _trl_dpo_loss(policy, reference, ids, mask, beta=0.1)

    with torch.no_grad():
        logps = ns["sequence_logps"](policy(ids).logits, ids, mask)
        ref_logps = ns["sequence_logps"](reference(ids).logits, ids, mask)
    (c, r), (rc, rr) = logps.chunk(2), ref_logps.chunk(2)
    loss, chosen_rewards, rejected_rewards = ns["dpo_loss"](c, r, rc, rr, beta=0.1)
    assert torch.allclose(loss, trl_loss, atol=1e-5)
    assert abs(chosen_rewards.mean().item() - metrics["rewards/chosen"][0]) < 1e-5
    assert abs(rejected_rewards.mean().item() - metrics["rewards/rejected"][0]) < 1e-5
    assert abs(c.mean().item() - metrics["logps/chosen"][0]) < 1e-3
