"""Autograde every submission of a class, one at a time, so that no submission can sink the batch.

Each submission `submitted/<student>/<aid>/` is checked (is every notebook a notebook?), autograded by
nbgrader (with `RobustExecute`: a kernel-killing cell costs that cell only), given feedback, and read
back from the gradebook into a `GradeRow`. Whatever goes wrong is caught per submission and becomes the
row's `status` and `reason`; the problems found in cells name the cell by its `grade_id`.

Worked example (the row of a submission whose kernel died in one cell):

>>> row = GradeRow("alice", "a1_bpe_tokenizer", 7.0, 20.0, status="graded",
...                problems=[Problem("test_merge", "GraderError: the kernel died while running this cell")])
>>> row.csv_row()["reason"]
'test_merge: GraderError: the kernel died while running this cell'
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time
import warnings
from pathlib import Path

from .grading_course import REPO_ROOT, assignment_ids, course_config, nbgrader_api

CSV_FIELDS = ["student", "assignment", "score", "max_score", "needs_manual_grade", "status", "reason"]


@dataclasses.dataclass
class Problem:
    """Something wrong in one cell (`cell` is its grade_id, or `cell <n>` for an ungraded cell)."""

    cell: str
    reason: str

    def __str__(self) -> str:
        return f"{self.cell}: {self.reason}"


@dataclasses.dataclass
class GradeRow:
    student: str
    assignment: str
    score: float
    max_score: float
    needs_manual_grade: bool = False
    status: str = "graded"  # graded | not-a-notebook | failed
    problems: list[Problem] = dataclasses.field(default_factory=list)
    seconds: float = 0.0  # wall time of everything for this submission (checks, autograde, feedback)
    autograde_seconds: float = 0.0  # nbgrader autograde alone

    def csv_row(self) -> dict:
        return {"student": self.student, "assignment": self.assignment, "score": f"{self.score:g}",
                "max_score": f"{self.max_score:g}", "needs_manual_grade": str(self.needs_manual_grade).lower(),
                "status": self.status, "reason": "; ".join(map(str, self.problems))}


def find_submissions(root: str | os.PathLike, assignments: list[str]) -> list[tuple[str, str]]:
    """(student, assignment) for every `submitted/<student>/<aid>/` folder of a known assignment."""
    submitted = Path(root) / "submitted"
    if not submitted.is_dir():
        return []
    return sorted((s.name, a) for s in submitted.iterdir() if s.is_dir()
                  for a in assignments if (s / a).is_dir())


def unreadable_notebooks(folder: Path, notebook_names: list[str]) -> list[Problem]:
    """A Problem for each expected notebook in `folder` that exists but is not a valid notebook."""
    import nbformat

    problems = []
    for name in notebook_names:
        path = folder / f"{name}.ipynb"
        if not path.exists():
            continue  # nbgrader itself scores a missing notebook 0
        try:
            nbformat.validate(nbformat.read(path, as_version=4))
        except Exception as err:  # noqa: BLE001 - any way of not being a notebook
            problems.append(Problem(f"{name}.ipynb", f"not a notebook ({type(err).__name__}: {str(err)[:120]})"))
    return problems


def cell_problems(autograded: Path) -> list[Problem]:
    """One Problem per cell of an autograded notebook that has an error output."""
    import nbformat

    nb = nbformat.read(autograded, as_version=4)
    problems = []
    for index, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        name = meta.get("grade_id", f"cell {index}")
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                evalue = str(out.get("evalue", "")).strip().splitlines()
                problems.append(Problem(name, f"{out['ename']}: {evalue[0][:160] if evalue else ''}".rstrip(": ")))
                break
    return problems


def tampered_cells(submitted: Path, released: Path, instructor: dict[str, str]) -> list[Problem]:
    """Locked (test/read-only) cells whose submitted source is neither the released nor the instructor's.

    `instructor` maps grade_id -> source with hidden tests (from the gradebook). nbgrader overwrites
    such cells with the instructor's version anyway; this only reports it.
    """
    import nbformat

    try:
        nb = nbformat.read(submitted, as_version=4)
        original = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nbformat.read(released, as_version=4).cells
                    if c.metadata.get("nbgrader", {}).get("locked")}
    except Exception:  # noqa: BLE001 - reported elsewhere
        return []
    problems = []
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in original and cell.source not in (original[grade_id], instructor.get(grade_id)):
            problems.append(Problem(grade_id, "locked cell edited by the student; graded as the original"))
    return problems


def deleted_cells(submitted: Path, grade_cells: set[str], answer_cells: set[str]) -> list[Problem]:
    """Graded cells (tests, restored by nbgrader) and answer cells (not restored) missing from a submission."""
    import nbformat

    try:
        nb = nbformat.read(submitted, as_version=4)
    except Exception:  # noqa: BLE001 - reported elsewhere
        return []
    present = {c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells}
    return [Problem(gid, "deleted by the student; " + ("restored from the release and run" if gid in grade_cells
                                                       else "not restored, so the tests that need it fail"))
            for gid in sorted((grade_cells | answer_cells) - present)]


def _zero_submission(gb, aid: str, student: str) -> None:
    """Record a submission whose notebooks could not be read: every grade 0, nothing to grade by hand."""
    with warnings.catch_warnings():  # SQLAlchemy autoflush chatter from nbgrader's own models
        warnings.simplefilter("ignore")
        gb.update_or_create_student(student)
        gb.update_or_create_submission(aid, student)
        for notebook in gb.find_submission(aid, student).notebooks:
            for grade in notebook.grades:
                grade.auto_score, grade.needs_manual_grade = 0, False
        gb.db.commit()


def grade_submission(api, root: Path, student: str, aid: str) -> GradeRow:
    """Autograde + feedback for one submission; never raises for anything the submission contains."""
    from nbgrader.api import Gradebook

    start = time.perf_counter()
    db_url = api.coursedir.db_url
    with Gradebook(db_url, api.coursedir.course_id) as gb:
        assignment = gb.find_assignment(aid)
        notebooks = [nb.name for nb in assignment.notebooks]
        locked = {c.name: c.source for nb in assignment.notebooks for c in nb.source_cells if c.locked}
        graded = {nb.name: ({c.name for c in nb.grade_cells}, {c.name for c in nb.solution_cells})
                  for nb in assignment.notebooks}
    folder = root / "submitted" / student / aid
    unreadable = unreadable_notebooks(folder, notebooks)
    problems, status, autograde_seconds = list(unreadable), "graded", 0.0
    if unreadable:
        status = "not-a-notebook"
        with Gradebook(db_url, api.coursedir.course_id) as gb:
            _zero_submission(gb, aid, student)
    else:
        for name in notebooks:
            submitted = folder / f"{name}.ipynb"
            problems += deleted_cells(submitted, *graded[name])
            problems += tampered_cells(submitted, root / "assignments" / aid / f"{name}.ipynb", locked)
        autograde_start = time.perf_counter()
        with warnings.catch_warnings():  # SQLAlchemy autoflush chatter from inside nbgrader
            warnings.simplefilter("ignore")
            result = api.autograde(aid, student, force=True, create=True)
        autograde_seconds = time.perf_counter() - autograde_start
        if not result["success"]:
            status = "failed"
            problems.append(Problem("(notebook)", "autograde failed: " + _last_error_line(result)))
        else:
            for name in notebooks:
                path = root / "build" / "autograded" / student / aid / f"{name}.ipynb"
                problems += cell_problems(path)
            feedback = api.generate_feedback(aid, student, force=True)
            if not feedback["success"]:
                problems.append(Problem("(feedback)", "generate_feedback failed: " + _last_error_line(feedback)))
    row = _row_from_gradebook(api, student, aid)
    row.status, row.problems = status, problems
    row.seconds, row.autograde_seconds = time.perf_counter() - start, autograde_seconds
    return row


def _last_error_line(result: dict) -> str:
    text = (result.get("error") or "") + "\n" + (result.get("log") or "")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln or "error" in ln]
    return (errors or lines or ["(no log)"])[-1].strip()[:200]


def _row_from_gradebook(api, student: str, aid: str) -> GradeRow:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        try:
            sub = gb.find_submission(aid, student)
        except MissingEntry:
            max_score = gb.find_assignment(aid).max_score
            return GradeRow(student, aid, 0.0, max_score, status="failed")
        return GradeRow(student, aid, float(sub.score), float(sub.max_score), bool(sub.needs_manual_grade))


def grade_class(root: str | os.PathLike = REPO_ROOT, *, timeout: int | None = None,
                students: list[str] | None = None, assignments: list[str] | None = None,
                progress=None) -> list[GradeRow]:
    """Grade every submission under `<root>/submitted/`; returns one row per submission.

    The gradebook must already know the assignments (`stale_release` or `release` records them).
    """
    root = Path(root).resolve()
    api = nbgrader_api(course_config(root, timeout=timeout))
    wanted = assignments or assignment_ids(root)
    rows = []
    for student, aid in find_submissions(root, wanted):
        if students and student not in students:
            continue
        try:
            row = grade_submission(api, root, student, aid)
        except Exception as err:  # noqa: BLE001 - a bug here must not stop the other students
            row = GradeRow(student, aid, 0.0, 0.0, status="failed",
                           problems=[Problem("(grader)", f"{type(err).__name__}: {err}")])
        rows.append(row)
        if progress:
            progress(row)
    return rows


def write_grades_csv(rows: list[GradeRow], path: str | os.PathLike) -> Path:
    """Write `rows` sorted by student then assignment (same grades -> same bytes: re-grading is idempotent)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in sorted(rows, key=lambda r: (r.student, r.assignment)):
            writer.writerow(row.csv_row())
    return path
