"""Grade ONE submission, in a process of its own: `python -m course.grading_worker JOB.json`.

The batch (`grading_autograde.grade_class`) starts one of these per submission, with a deadline, so
that nothing a submission does (kill its parent, hang, crash) reaches the batch. The worker is
grader code and runs with the grader's rights; only the kernel it starts runs in the sandbox.

It works in a private folder `work/`: `work/course/` is a throw-away nbgrader course (a copy of the
gradebook, the normalised notebook under `submitted/`), `work/sandbox/` is the kernel's scratch folder.
It writes `work/result.json` (a GradeRow as a dict) and never touches the real course: the batch
merges the gradebook rows and the feedback page back, one submission at a time.

>>> job = {"root": "/c", "student": "alice", "assignment": "a1", "work": "/w", "timeout": 5,
...        "backend": None, "helpers": "/c/helpers", "cache": None}
>>> sorted(job) == sorted(JOB_KEYS)
True
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

JOB_KEYS = ("root", "student", "assignment", "work", "timeout", "backend", "helpers", "cache")


def grade(job: dict) -> dict:
    """Grade the submission described by `job`; returns the GradeRow as a dict."""
    import nbformat
    from nbgrader.api import Gradebook

    from . import grading_kernel
    from .grading_autograde import (
        GradeRow,
        Problem,
        cell_problems,
        deleted_cells,
        stderr_notes,
        tampered_cells,
    )
    from .grading_course import course_config, nbgrader_api
    from .grading_normalize import hidden_test_lines, normalize
    from .sandbox import Sandbox

    start = time.perf_counter()
    root, work = Path(job["root"]), Path(job["work"])
    student, aid = job["student"], job["assignment"]
    course = work / "course"
    cfg = course_config(course, timeout=job["timeout"])
    cfg.CourseDirectory.source_directory = str(root / "solutions")  # the committed instructor copy
    api = nbgrader_api(cfg)
    with Gradebook(api.coursedir.db_url, api.coursedir.course_id) as gb:
        assignment = gb.find_assignment(aid)
        names = [nb.name for nb in assignment.notebooks]
        locked = {c.name: c.source for nb in assignment.notebooks for c in nb.source_cells if c.locked}
        graded = {nb.name: ({c.name for c in nb.grade_cells}, {c.name for c in nb.solution_cells})
                  for nb in assignment.notebooks}
        hidden = hidden_test_lines(c.source for nb in assignment.notebooks for c in nb.source_cells)
        max_score = float(assignment.max_score)
    row = GradeRow(student, aid, 0.0, max_score, backend=job["backend"] or "none")
    folder = root / "submitted" / student / aid
    dest = course / "submitted" / student / aid
    dest.mkdir(parents=True, exist_ok=True)
    unreadable = []
    releases = {name: nbformat.read(root / "assignments" / aid / f"{name}.ipynb", as_version=4) for name in names}
    hidden -= {ln.strip() for nb in releases.values() for c in nb.cells for ln in c.source.splitlines()}
    for name in names:
        released = releases[name]
        found = normalize(folder, name, released, hidden, single_notebook=len(names) == 1)
        row.notes += [f"{name}.ipynb: {n}" if len(names) > 1 else n for n in found.notes]
        row.flags += found.flags
        if found.unreadable:
            unreadable.append(Problem(found.source_name, f"not a notebook ({found.unreadable})"))
        elif found.notebook is not None:
            path = dest / f"{name}.ipynb"
            nbformat.write(found.notebook, path)
            row.problems += deleted_cells(path, *graded[name])
            row.problems += tampered_cells(path, root / "assignments" / aid / f"{name}.ipynb", locked)
    stamp = folder / "timestamp.txt"
    if stamp.is_file() and stamp.stat().st_size < 200:
        shutil.copy(stamp, dest / "timestamp.txt")
    if unreadable:
        row.status, row.problems = "not-a-notebook", unreadable + row.problems
        return _finish(row, start, 0.0)
    if not any(dest.glob("*.ipynb")):
        row.status = "missing"
        return _finish(row, start, 0.0)

    if job["backend"]:
        scratch = work / "sandbox"
        scratch.mkdir(exist_ok=True)
        for nb_path in dest.glob("*.ipynb"):  # the student's own notebook, nothing else of the course
            shutil.copy(nb_path, scratch / nb_path.name)
        # Unix socket paths are limited to ~107 bytes: the kernel's sockets live in a short folder.
        sockets = Path(tempfile.mkdtemp(prefix="cg-", dir="/tmp"))
        grading_kernel.ACTIVE = Sandbox(job["backend"], scratch, Path(job["helpers"]),
                                        Path(job["cache"]) if job["cache"] else None, sockets=sockets)
    autograde_start = time.perf_counter()
    try:
        with warnings.catch_warnings():  # SQLAlchemy autoflush chatter from inside nbgrader
            warnings.simplefilter("ignore")
            result = api.autograde(aid, student, force=True, create=True)
    finally:
        if grading_kernel.ACTIVE is not None and grading_kernel.ACTIVE.sockets is not None:
            shutil.rmtree(grading_kernel.ACTIVE.sockets, ignore_errors=True)
    autograde_seconds = time.perf_counter() - autograde_start
    if not result["success"]:
        row.status = "failed"
        row.problems.append(Problem("(notebook)", "autograde failed: " + _last_error_line(result)))
        return _finish(row, start, autograde_seconds)
    for name in names:
        path = course / "build" / "autograded" / student / aid / f"{name}.ipynb"
        if path.exists():
            row.problems += cell_problems(path)
            row.notes += stderr_notes(path)
    feedback = api.generate_feedback(aid, student, force=True)
    if not feedback["success"]:
        row.problems.append(Problem("(feedback)", "generate_feedback failed: " + _last_error_line(feedback)))
    from .grading_autograde import _scores

    row.score, row.max_score, row.needs_manual_grade = _scores(api.coursedir.db_url, api.coursedir.course_id,
                                                               student, aid)
    return _finish(row, start, autograde_seconds)


def _finish(row, start: float, autograde_seconds: float) -> dict:
    import dataclasses

    row.seconds, row.autograde_seconds = time.perf_counter() - start, autograde_seconds
    return dataclasses.asdict(row)


def _last_error_line(result: dict) -> str:
    text = (result.get("error") or "") + "\n" + (result.get("log") or "")
    lines = [ln for ln in text.splitlines() if ln.strip() and "Please see the" not in ln]
    errors = [ln for ln in lines if "Error" in ln or "error" in ln]
    return (errors or lines or ["(no log)"])[-1].strip()[:200]


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    row = grade(job)
    out = Path(job["work"]) / "result.json"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(row), encoding="utf-8")
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
