"""The grading round trip, broken and re-graded submissions, shards, drift, on a scratch copy of the course.

One class is graded once (module fixture, sandbox on, 2 jobs) and most tests read its rows: the
answered releases (the solution's answers in the student notebook) and blank releases of every
assignment, tampered test cells, and broken copies of the first assignment (loop, syntax error,
exception, sys.exit, kernel death, a loop that ignores the interrupt, huge output, a deleted graded
cell, a file that is not a notebook). Nothing here knows the assignments' content: maximum scores
come from the solution notebooks' points, and the broken code replaces the *last* answer cell of the
first assignment, so a fair grader takes exactly what the stub in that cell takes (`stub_last`).

The hostile class (cheats, attacks on the course) is tests/test_hostile_class.py.
Outside oracles for the solutions (tokenizers' BPE, Gemma's template as TRL ships it, PEFT's lora.Linear;
the DPO/IPO losses against a real DPOTrainer are in tests/test_assignments_a3_a4.py)
run the solution notebooks' answer cells in-process.
"""

from __future__ import annotations

import copy
import csv
import datetime
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from scratch_course import solution_namespace

from course.grading import assignment_ids, grade_class, main, merge_shards, release, write_grades_csv
from course.grading_autograde import GradeRow, read_grades_csv, shard_of
from course.grading_course import REPO_ROOT, _tree_differences, course_config
from course.grading_integrity import drift, record_state
from course.grading_normalize import answered_release, hidden_test_lines
from course.grading_preprocessors import BROKEN_CELL_ENAME, RESULT_PREFIX, take_result
from course.sandbox import BACKENDS, NoSandbox, Sandbox, backend, require_backend, works

pytestmark = pytest.mark.slow

CELL_TIMEOUT = 5  # seconds: the infinite loop costs this much
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"

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


def _gid(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def _cell_index(nb, grade_id: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if _gid(c) == grade_id)


def _submit(root: Path, student: str, aid: str, nb=None, text: str | None = None) -> None:
    folder = root / "submitted" / student / aid
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{aid}.ipynb").write_text(text if text is not None else nbformat.writes(nb), encoding="utf-8")


def _solution(root: Path, aid: str):
    return _read(root / "solutions" / aid / f"{aid}.ipynb")


def _released(root: Path, aid: str):
    return _read(root / "assignments" / aid / f"{aid}.ipynb")


def _answered(root: Path, aid: str):
    return answered_release(_released(root, aid), _solution(root, aid))


def _points(aid: str) -> tuple[float, float]:
    """(autograded, manual) points of an assignment, read from its solution notebook."""
    auto = manual = 0.0
    for cell in _solution(REPO_ROOT, aid).cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            if meta.get("solution"):
                manual += float(meta["points"])
            else:
                auto += float(meta["points"])
    return auto, manual


A1 = assignment_ids(REPO_ROOT)[0]  # the first assignment, whatever it is
BROKEN_CELL = [_gid(c) for c in _solution(REPO_ROOT, A1).cells
               if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"][-1]
FIRST_TEST = next(_gid(c) for c in _solution(REPO_ROOT, A1).cells
                  if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution"))
DUE = datetime.datetime(2030, 1, 1, 12, 0)


def _make_submissions(root: Path) -> None:
    for aid in assignment_ids(root):
        _submit(root, "solution", aid, _answered(root, aid))
        _submit(root, "blank", aid, _released(root, aid))
    sol, blank = _answered(root, A1), _released(root, A1)
    for student, source in {**HOSTILE, "stub_last": STUB}.items():
        nb = copy.deepcopy(sol)
        nb.cells[_cell_index(nb, BROKEN_CELL)].source = source
        _submit(root, student, A1, nb)
    nb = copy.deepcopy(sol)  # a correct answer that also floods stdout
    nb.cells[_cell_index(nb, BROKEN_CELL)].source += "\nfor _ in range(100_000):\n    print('spam ' * 20)"
    _submit(root, "huge_output", A1, nb)
    nb = copy.deepcopy(blank)  # tests edited to pass: must be restored, so still 0
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade") and not cell.metadata["nbgrader"].get("solution"):
            cell.source = "pass"
    _submit(root, "tampered_blank", A1, nb)
    nb = copy.deepcopy(sol)  # test edited to fail: restored, so still full marks
    nb.cells[_cell_index(nb, FIRST_TEST)].source = "assert False"
    _submit(root, "tampered_solution", A1, nb)
    nb = copy.deepcopy(sol)  # a graded test cell deleted: restored and run
    del nb.cells[_cell_index(nb, FIRST_TEST)]
    _submit(root, "deleted_test", A1, nb)
    nb = copy.deepcopy(sol)  # an answer cell deleted: restored as the stub, its tests fail
    del nb.cells[_cell_index(nb, BROKEN_CELL)]
    _submit(root, "deleted_answer", A1, nb)
    _submit(root, "not_a_notebook", A1, text="this is not a notebook {")
    for student in ("regrade", "manual", "late", "on_time"):
        _submit(root, student, A1, sol)
    for student, when in (("late", DUE + datetime.timedelta(hours=1)), ("on_time", DUE - datetime.timedelta(hours=1))):
        (root / "submitted" / student / A1 / "timestamp.txt").write_text(f"{when:%Y-%m-%d %H:%M:%S.%f} UTC")


def _gradebook(root: Path):
    from nbgrader.api import Gradebook

    cfg = course_config(root)
    return Gradebook(cfg.CourseDirectory.db_url, cfg.CourseDirectory.course_id)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """(root, rows by (student, assignment)) of a scratch course graded once."""
    if backend() is None:
        pytest.skip("no sandbox backend on this machine (util-linux unshare with namespaces, or Docker/Podman)")
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(REPO_ROOT / "solutions", root / "solutions",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    release(root)
    with _gradebook(root) as gb:
        gb.update_or_create_assignment(A1, duedate=DUE)
    _make_submissions(root)
    rows = grade_class(root, timeout=CELL_TIMEOUT, jobs=2)
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
        auto, manual = _points(aid)
        assert (row.status, row.score, row.max_score) == ("graded", auto, auto + manual), row
        assert row.problems == [] and row.flags == [], row
        assert row.needs_manual_grade == (manual > 0)


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
    assert any(p.cell == FIRST_TEST and "graded as the original" in p.reason for p in sol.problems)


def test_feedback_hides_hidden_tests(course):
    import html

    root, _ = course
    hidden = hidden_test_lines(c.source for c in _solution(root, A1).cells)
    assert hidden, "the first assignment has hidden tests"
    page = html.unescape((root / "build" / "feedback" / "solution" / A1 / f"{A1}.html").read_text(encoding="utf-8"))
    assert "hidden tests are not shown in feedback" in page
    assert not [line for line in hidden if line in page]
    autograded = "\n".join(c.source for c in _read(root / "build" / "autograded" / "solution" / A1 / f"{A1}.ipynb").cells)
    assert all(line in autograded for line in hidden)  # ...which the autograder did run


# --- broken submissions ---------------------------------------------------------------------------

@pytest.mark.parametrize("student,reason", [
    ("loop", "KeyboardInterrupt"), ("syntax", "SyntaxError"), ("exception", "ValueError: boom"),
    ("sys_exit", "SystemExit"), ("os_exit", "kernel died"), ("self_kill", "kernel died"),
    ("ignores_interrupt", "time limit"),
])
def test_broken_cell_costs_only_its_part(course, student, reason):
    _, rows = course
    row, reference = rows[(student, A1)], rows[("stub_last", A1)]
    assert 0 < reference.score < _max(rows, A1), reference
    assert row.status == "graded"
    assert row.score == reference.score, row
    broken = [p for p in row.problems if p.cell == BROKEN_CELL]
    assert broken and reason in broken[0].reason, row.problems


def test_enormous_output_is_cut_at_200_lines_and_graded(course):
    root, rows = course
    assert rows[("huge_output", A1)].score == _max(rows, A1)
    autograded = root / "build" / "autograded" / "huge_output" / A1 / f"{A1}.ipynb"
    assert autograded.stat().st_size < 1_000_000
    cell = _read(autograded).cells[_cell_index(_read(autograded), BROKEN_CELL)]
    text = "".join(o["text"] for o in cell.outputs if o["output_type"] == "stream")
    assert text.count("\n") <= 200 and text.rstrip().endswith("... Output truncated ...")


def test_deleted_graded_cells_are_restored(course):
    _, rows = course
    test_gone, answer_gone = rows[("deleted_test", A1)], rows[("deleted_answer", A1)]
    assert test_gone.score == _max(rows, A1)  # the restored test ran, and passed
    assert any(p.cell == FIRST_TEST and "restored" in p.reason for p in test_gone.problems)
    assert answer_gone.score == rows[("stub_last", A1)].score
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
    assert {"student", "assignment", "score", "max_score", "status", "reason", "backend"} <= set(table[0])


def test_late_submission_scores_zero_from_its_timestamp(course):
    _, rows = course
    assert rows[("on_time", A1)].score == _max(rows, A1)
    late = rows[("late", A1)]
    assert late.score == 0 and any("after the due date" in n for n in late.notes), late  # penalty "zero"


# --- re-grading ----------------------------------------------------------------------------------

def test_regrading_is_idempotent_and_updates_only_its_rows(course):
    root, rows = course
    before = {(r["student"], r["assignment"]): r for r in read_grades_csv(root / "build" / "grades.csv")}
    again = grade_class(root, timeout=CELL_TIMEOUT, students=["solution", "exception"], assignments=[A1])
    for row in again:
        first = rows[(row.student, row.assignment)]
        assert (row.score, row.status, [str(p) for p in row.problems]) == \
            (first.score, first.status, [str(p) for p in first.problems])
    after = {(r["student"], r["assignment"]): r for r in read_grades_csv(root / "build" / "grades.csv")}
    assert after == before  # every other row kept, the re-graded ones identical
    first = (root / "build" / "grades.csv").read_bytes()
    write_grades_csv(read_grades_csv(root / "build" / "grades.csv"), root / "build" / "grades.csv")
    assert (root / "build" / "grades.csv").read_bytes() == first


def test_a_failing_regrade_records_the_failure_not_the_old_score(course):
    root, rows = course
    assert rows[("regrade", A1)].score == _max(rows, A1)
    (row,) = grade_class(root, timeout=CELL_TIMEOUT, students=["regrade"], assignments=[A1], deadline=1)
    assert (row.status, row.score) == ("failed", 0) and "deadline" in row.problems[0].reason
    table = {(r["student"], r["assignment"]): r for r in read_grades_csv(root / "build" / "grades.csv")}
    assert (table[("regrade", A1)]["status"], table[("regrade", A1)]["score"]) == ("failed", "0")
    with _gradebook(root) as gb:
        assert gb.find_submission(A1, "regrade").score == 0


def test_manual_scores_survive_a_regrade(course):
    root, rows = course
    with _gradebook(root) as gb:
        grade = gb.find_grade(FIRST_TEST, A1, A1, "manual")
        points = grade.max_score
        grade.manual_score = 0.5  # the instructor overrode the test's automatic score
        gb.db.commit()
    (row,) = grade_class(root, timeout=CELL_TIMEOUT, students=["manual"], assignments=[A1])
    assert row.score == _max(rows, A1) - points + 0.5 and row.needs_manual_grade, row
    with _gradebook(root) as gb:
        assert gb.find_grade(FIRST_TEST, A1, A1, "manual").manual_score == 0.5


def test_shards_partition_the_class_and_merge_back(course, tmp_path):
    root, rows = course
    students = ["solution", "blank", "exception", "syntax"]
    shards = []
    for k in (1, 2):
        shard_root = tmp_path / f"shard{k}"
        shutil.copytree(root, shard_root, ignore=shutil.ignore_patterns("autograded", "feedback", "grades.csv"))
        graded = grade_class(shard_root, timeout=CELL_TIMEOUT, students=students, assignments=[A1], shard=(k, 2))
        assert {r.student for r in graded} == {s for s in students if shard_of(s, 2) == k - 1}
        shards.append(shard_root / "build")
    assert {shard_of(s, 2) for s in students} == {0, 1}  # both shards had work
    target = tmp_path / "merged"
    shutil.copytree(root, target, ignore=shutil.ignore_patterns("autograded", "feedback"))
    with _gradebook(target) as gb:  # forget these students' grades, so only the merge can bring them back
        for student in students:
            for nb in gb.find_submission(A1, student).notebooks:
                for grade in nb.grades:
                    grade.auto_score = None
        gb.db.commit()
    merged = {(r["student"], r["assignment"]): r for r in merge_shards(target, shards)}
    for student in students:
        assert float(merged[(student, A1)]["score"]) == rows[(student, A1)].score
        assert (target / "build" / "feedback" / student / A1 / f"{A1}.html").is_file()
        with _gradebook(target) as gb:
            assert gb.find_submission(A1, student).score == rows[(student, A1)].score


# --- refusing to grade ---------------------------------------------------------------------------

def test_drift_is_refused_unless_allowed(tmp_path, capsys):
    root = tmp_path / "course"
    shutil.copytree(REPO_ROOT / "solutions", root / "solutions", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    release(root)
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "solutions", "assignments", "nbgrader_config.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "course"], check=True)
    assert drift(root, code_root=root) == []
    record_state(root)
    with open(root / "build" / "gradebook.db", "ab") as f:  # a planted score
        f.write(b"\0")
    assert any("gradebook.db changed" in r for r in drift(root, code_root=root))
    record_state(root)
    nb = _solution(root, A1)  # hidden tests removed from the instructor's copy, not committed
    for cell in nb.cells:
        if "BEGIN HIDDEN TESTS" in cell.source:
            cell.source = cell.source.split("### BEGIN HIDDEN TESTS")[0]
    nbformat.write(nb, root / "solutions" / A1 / f"{A1}.ipynb")
    reasons = drift(root, code_root=root)
    assert any(f"solutions/{A1}" in r for r in reasons), reasons
    assert main(["--root", str(root), "grade"]) == 2
    assert "refusing to grade" in capsys.readouterr().err
    assert main(["--root", str(root), "grade", "--allow-stale", "--no-sandbox"]) == 0  # (no submissions)
    err = capsys.readouterr().err
    assert "--allow-stale" in err and "--no-sandbox" in err


def test_no_backend_means_a_clear_refusal():
    missing = [name for name in ("podman", "docker") if not works(name)]
    if not missing:
        pytest.skip("both container backends work here: no missing backend to ask for")
    with pytest.raises(NoSandbox, match="--no-sandbox"):
        require_backend(missing[0])


# --- the sandbox and the harness, directly ---------------------------------------------------------

@pytest.mark.parametrize("name", BACKENDS)
def test_sandbox_contract(tmp_path, name):
    import os
    import sys

    if not works(name):
        pytest.skip(f"sandbox backend {name} does not work on this machine")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    probe = f"""
import os, socket, subprocess, sys
print("helpers" if os.path.isdir("/course/helpers") else "no helpers")
for path in ({str(REPO_ROOT / "solutions")!r}, {str(REPO_ROOT / "build")!r}, {str(Path.home() / ".ipython")!r}):
    print("sees" if os.path.exists(path) else "hidden", path)
for path in ("/course/helpers/__init__.py", {os.path.realpath(Path(sys.prefix) / "pyvenv.cfg")!r}):
    try:
        open(path, "a").close(); print("wrote", path)
    except OSError as err:
        print("read-only", err.errno)
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2); print("network")
except OSError:
    print("no network")
print("home", os.environ["HOME"])
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "course-sandbox-orphan-probe"], start_new_session=True)
open("big", "wb").write(b"x" * (80 * 2**20))
"""
    box = Sandbox(name, scratch, REPO_ROOT / "helpers")
    result = subprocess.run(box.command([sys.executable, "-c", probe]), capture_output=True, text=True, timeout=120)
    log = (scratch / ".kernel.log").read_text() if (scratch / ".kernel.log").exists() else result.stdout
    assert "helpers\n" in log and "sees" not in log and "wrote" not in log, log
    assert log.count("read-only") == 2 and "no network" in log and "home /tmp/home" in log, log
    assert result.returncode != 0 and (scratch / "big").stat().st_size <= 64 * 2**20  # file size cap
    # the orphan it started carries a marker of its own, so no other process on the machine can match
    assert "course-sandbox-orphan-probe" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


def test_harness_result_cannot_be_forged():
    from nbformat.v4 import new_code_cell, new_output

    def cell(*texts):
        c = new_code_cell("x")
        c.outputs = [new_output("stream", name="stdout", text=t) for t in texts]
        return c

    ok = f"\n{RESULT_PREFIX} n1 {{\"status\": \"ok\"}}\n"
    assert take_result(cell(ok), "n1") == {"status": "ok"}
    assert take_result(cell(ok), "other")["status"] == "error"  # a result for another cell (or a guess)
    assert take_result(cell(ok, ok), "n1")["status"] == "error"  # printed twice: one is forged
    assert take_result(cell("100.0"), "n1")["evalue"].startswith("the test reported no result")
    silenced = cell(ok)
    silenced.outputs.append(new_output("error", ename="AssertionError", evalue="", traceback=[]))
    assert take_result(silenced, "n1")["ename"] == "AssertionError"
    assert BROKEN_CELL_ENAME == "GraderError" and GradeRow("a", "b", 0, 1).backend == ""


# --- the solutions against outside references ------------------------------------------------------

_solution_namespace = solution_namespace  # tests/scratch_course.py


def test_bpe_solution_matches_tokenizers():
    """a1's solution against `tokenizers`: BpeTrainer on the GPT-4 chunks learns the same merges, and the
    BPE loaded with them encodes each chunk to the same ids."""
    import json

    import regex
    from tokenizers import Tokenizer, models, trainers

    ns = _solution_namespace(A1)
    text = "low lower lowest newer newest wider widest 👋 héllo  12345 don't!! " * 4
    chunks = [c.encode("utf-8").decode("latin-1") for c in regex.findall(ns["GPT4_SPLIT_PATTERN"], text)]
    tok = Tokenizer(models.BPE())
    tok.train_from_iterator(chunks, trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                                        initial_alphabet=[chr(b) for b in range(256)]))
    ids = {chr(b): b for b in range(256)}
    library = {}
    for a, b in json.loads(tok.to_str())["model"]["merges"]:
        ids[a + b] = len(ids)
        library[(ids[a], ids[b])] = ids[a + b]
    merges = ns["train"](text, 300)
    assert len(merges) > 30 and merges == library  # (37: then every distinct chunk is one token)
    vocab = {v: k for k, v in ids.items()}
    tok = Tokenizer(models.BPE(vocab=ids, merges=[(vocab[a], vocab[b]) for a, b in merges]))
    probe = "the lowest newer wider 👋 12345 don't!!"
    # split the text with the pattern, then BPE on each chunk's Latin-1-spelled bytes
    expected = [i for c in regex.findall(ns["GPT4_SPLIT_PATTERN"], probe)
                for i in tok.encode(c.encode("utf-8").decode("latin-1")).ids]
    assert ns["encode"](probe, merges) == expected
    assert ns["decode"](expected, merges) == probe


def test_chat_template_solution_renders_like_gemmas_template():
    """a2's solution TEMPLATE renders like Gemma's original template (TRL's verbatim copy, the string TRL
    recognises Gemma by) rendered by transformers' own chat-template renderer."""
    from transformers.utils.chat_template_utils import render_jinja_template
    from trl.chat_template_utils import gemma_chat_template

    ns = _solution_namespace("a2_chat_templates")
    chats = [[{"role": "user", "content": "Hi"}],
             [{"role": "user", "content": " q "}, {"role": "assistant", "content": "a\n"},
              {"role": "user", "content": "é🤖"}]]
    for chat in chats:
        for gen in (False, True):
            rendered, _ = render_jinja_template(conversations=[chat], chat_template=gemma_chat_template,
                                                add_generation_prompt=gen, bos_token="<bos>", eos_token="<eos>")
            assert ns["render"](ns["TEMPLATE"], chat, gen) == rendered[0]


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
