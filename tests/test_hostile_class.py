"""A hostile class graded with the sandbox on, next to honest students whose grades must not move.

Every case in tests/grading_corpus/ (one per bullet of issue 11's three lists; see its README) is
built from the course's own first assignment at test time: cheats inject a cell into the released
notebook (whose stubs earn 0), honest variants change the solution's answers in harmless ways. The
whole class is graded once, with `--jobs 2` and short cell timeouts, in a scratch copy of the course
(with a decoy copy of the grader code and config for the attackers to aim at). Then:

- no cheat earns a point, and each is graded (the batch completes whatever one submission does);
- honest variants get full marks, with a note that names the cause (stderr ignored, metadata
  restored, file renamed, copy-pasted test);
- nothing outside a submission's scratch folder changed: submitted/, solutions/, config, grader
  code, the gradebook and grades.csv are as the grader left them (also seconds after the batch),
  no file under HOME, no process left running, no file over the size cap;
- feedback pages hold no script and no hidden tests; the CSV and console no control characters.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from course.grading import assignment_ids, format_row, grade_class, release
from course.grading_autograde import read_grades_csv
from course.grading_course import REPO_ROOT
from course.grading_integrity import changed_outputs
from course.grading_normalize import answered_release
from course.sandbox import backend

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).parent / "grading_corpus"
CELL_TIMEOUT = 4
DEADLINE = 150  # seconds per submission: a hanging cell is cut off well before
MARK = "pwn" + uuid.uuid4().hex[:10]


def load_cases() -> dict[str, dict]:
    cases = {}
    for path in sorted(CORPUS.glob("*.cell")):
        lines = path.read_text(encoding="utf-8").splitlines()
        header = {}
        for i, line in enumerate(lines):
            match = re.fullmatch(r"# (issue|base|inject|expect|note|transform): (.*)", line)
            if not match:
                break
            header[match.group(1)] = match.group(2)
        else:
            i = len(lines)
        header["code"] = "\n".join(lines[i:]).strip("\n")
        cases[path.stem] = header
    return cases


CASES = load_cases()


def _gid(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def _placeholders(code: str, root: Path, aid: str) -> str:
    return (code.replace("@ROOT@", str(root)).replace("@AID@", aid).replace("@MARK@", MARK)
            .replace("@VICTIM@", "honest_victim"))


def build_submission(root: Path, aid: str, name: str, case: dict) -> None:
    released = nbformat.read(root / "assignments" / aid / f"{aid}.ipynb", as_version=4)
    solution = nbformat.read(root / "solutions" / aid / f"{aid}.ipynb", as_version=4)
    nb = {"release": released, "answered": answered_release(released, solution), "solution": solution}[case["base"]]
    nb = copy.deepcopy(nb)
    code = _placeholders(case["code"], root, aid)
    inject = case.get("inject")
    answers = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"]
    if inject == "first":
        params = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])
                      or c.source.lstrip().startswith("# Parameters"))
        nb.cells.insert(params + 1, nbformat.v4.new_code_cell(code))
    elif inject == "answers-before":
        for cell in answers:
            cell.source = code + "\n" + cell.source
    elif inject == "answers-after":
        for cell in answers:
            cell.source = cell.source + "\n" + code
    filename, student = f"{aid}.ipynb", name
    transform = case.get("transform")
    if transform == "duplicate_tests":
        tests = [i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade") and
                 not c.metadata["nbgrader"].get("solution")]
        for i in reversed(tests):
            duplicate = copy.deepcopy(nb.cells[i])
            duplicate.id = uuid.uuid4().hex[:8]  # Jupyter gives a pasted cell a new id, not new metadata
            nb.cells.insert(i + 1, duplicate)
    elif transform == "drop_metadata":
        for cell in nb.cells:
            cell.metadata.pop("nbgrader", None)
    elif transform == "rename":
        filename = f"{aid} (1).ipynb"
    elif transform == "glob_id":
        student = "hon[e]st*"
    folder = root / "submitted" / student / aid
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / filename)


def _tree_digest(*paths: Path) -> dict[str, str]:
    digests = {}
    for top in paths:
        for path in sorted(top.rglob("*") if top.is_dir() else [top]):
            if path.is_file():
                digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def _home_plants() -> list[Path]:
    home = Path(os.path.expanduser("~"))
    return [p for sub in (".ipython", ".jupyter", ".local") if (home / sub).is_dir()
            for p in (home / sub).rglob(f"*{MARK}*")]


def _leftover_processes(root: Path) -> list[str]:
    """Processes the class left: anything naming the case marker, or a kernel of this course."""
    out = subprocess.run(["ps", "-eo", "pid,stat,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if (MARK in line or str(root) in line)
            and "ps -eo" not in line and " Z" not in line]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if backend() is None:
        pytest.skip("no sandbox backend on this machine (util-linux unshare with namespaces, or Docker/Podman)")
    root = tmp_path_factory.mktemp("hostile")
    shutil.copytree(REPO_ROOT / "solutions", root / "solutions", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(REPO_ROOT / "course", root / "course", ignore=shutil.ignore_patterns("__pycache__"))  # decoy
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root / "nbgrader_config.py")  # decoy
    release(root)
    aid = assignment_ids(root)[0]
    for name, case in CASES.items():
        build_submission(root, aid, name, case)
    protected = [root / "submitted", root / "solutions", root / "course", root / "nbgrader_config.py",
                 root / "assignments"]
    before = _tree_digest(*protected)
    console = []
    start = time.perf_counter()
    try:
        rows = grade_class(root, timeout=CELL_TIMEOUT, jobs=2, deadline=DEADLINE,
                           progress=lambda row: console.append(format_row(row)))
        seconds = time.perf_counter() - start
        print(f"graded {len(rows)} submissions in {seconds:.0f} s\n" + "\n".join(console))
        time.sleep(3)  # anything left behind would act now
        yield {"root": root, "aid": aid, "rows": {r.student: r for r in rows}, "before": before,
               "after": _tree_digest(*protected), "console": "\n".join(console), "seconds": seconds,
               "plants": _home_plants(), "leftovers": _leftover_processes(root)}
    finally:
        for path in _home_plants():  # never leave a sabotage file for the machine's other kernels
            path.unlink(missing_ok=True)


def _markup_with(page: str, needle: str) -> list[str]:
    """Tags of `page` (parsed as a browser would) whose attributes or script body mention `needle`,
    and any `on*` event-handler attribute at all."""
    from html.parser import HTMLParser

    found = []

    class Parser(HTMLParser):
        in_script = False

        def handle_starttag(self, tag, attrs):
            self.in_script = tag == "script"
            for name, value in attrs:
                if name.startswith("on") or needle in (value or ""):
                    found.append(f"<{tag} {name}={value!r}>")

        def handle_data(self, data):
            if self.in_script and needle in data:
                found.append(f"<script>{data[:80]}")

        def handle_endtag(self, tag):
            self.in_script = False

    Parser().feed(page)
    return found


def _max(graded) -> float:
    return graded["rows"]["honest"].max_score


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c["expect"] == "zero"])
def test_no_cheat_earns_a_point(graded, name):
    row = graded["rows"][name]
    assert row.score == 0, (row, CASES[name]["issue"])
    assert row.max_score == _max(graded) and row.status == "graded", row  # graded, with reasons


def test_the_instructors_notebook_is_flagged_and_held(graded):
    row = graded["rows"]["instructor_solution"]
    assert (row.status, row.score) == ("flagged", 0), row
    assert any("nbgrader markers" in f for f in row.flags) and any("hidden tests" in f for f in row.flags)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c["expect"] == "full"])
def test_honest_variants_get_full_marks_with_the_cause_named(graded, name):
    row = graded["rows"][name]
    assert _max(graded) > 0
    assert (row.status, row.score, row.problems, row.flags) == ("graded", _max(graded), [], []), row
    if "note" in CASES[name]:
        assert any(CASES[name]["note"] in n for n in row.notes), row.notes


def test_glob_characters_in_a_student_id_are_refused(graded):
    row = graded["rows"]["hon[e]st*"]
    assert row.status == "invalid-id" and "no glob characters" in row.problems[0].reason
    assert sum(1 for s in graded["rows"] if s == "honest") == 1 and graded["rows"]["honest"].score == _max(graded)


def test_nothing_outside_the_scratch_folders_changed(graded):
    root = graded["root"]
    assert graded["after"] == graded["before"]  # submitted/, solutions/, config, grader code, release
    assert changed_outputs(root) == []  # gradebook.db and grades.csv as the grader left them, seconds later
    for path in root.rglob("*"):
        assert MARK not in path.name, path
        if path.is_file():
            assert path.stat().st_size < 64 * 2**20, path
    for name in ("gradebook.db", "grades.csv"):
        assert MARK.encode() + b" planted" not in (root / "build" / name).read_bytes()
    assert graded["plants"] == [], "files planted under HOME"
    assert graded["leftovers"] == [], "processes outlived the batch"
    assert not list((root / "build" / ".grading").glob("*-*")), "per-submission work folders left behind"


def test_every_submission_has_a_row_and_the_backend_is_recorded(graded):
    table = read_grades_csv(graded["root"] / "build" / "grades.csv")
    assert {r["student"] for r in table} == {("hon[e]st*" if c.get("transform") == "glob_id" else n)
                                             for n, c in CASES.items()}
    assert {r["backend"] for r in table} == {backend()}
    assert all(r["status"] != "pending" for r in table)


def test_feedback_and_reports_are_inert(graded):
    root, aid = graded["root"], graded["aid"]
    html = (root / "build" / "feedback" / "script_and_escapes" / aid / f"{aid}.html").read_text(encoding="utf-8")
    assert MARK in html  # the output is there, as text...
    assert _markup_with(html, MARK) == []  # ...never as markup: no script, handler or tag carries it
    assert "\x1b" not in html and "\x07" not in html
    csv_text = (root / "build" / "grades.csv").read_text(encoding="utf-8")
    assert "\x1b" not in csv_text and "\x07" not in csv_text and "\r" not in csv_text.replace("\r\n", "\n")
    assert MARK in graded["rows"]["script_and_escapes"].problems[0].reason
    assert "\x1b" not in graded["console"] and "\x07" not in graded["console"]
    for page in (root / "build" / "feedback").rglob("*"):
        assert page.is_dir() or page.suffix == ".html", page  # only the rendered pages


def test_a_hanging_cell_is_cut_off(graded):
    row = graded["rows"]["ignores_interrupt"]
    assert row.status == "graded" and any("GraderError" in p.reason for p in row.problems), row
    assert row.score == 0 and row.seconds < DEADLINE, row
    assert any("time limit" in p.reason or "deadline" in p.reason for p in row.problems), row.problems
