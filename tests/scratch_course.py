"""Shared by the grading tests: a scratch copy of the course, and a solution notebook's answers in-process.

>>> sorted(solution_namespace("a3_lora_arithmetic"))[:1]  # doctest: +SKIP
['LoRALinear']
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

from course.grading import release
from course.grading_course import REPO_ROOT


def scratch_course(root: Path, aids) -> Path:
    """A course under `root` holding only the solutions of `aids`, released with the instructor's settings."""
    for aid in aids:
        shutil.copytree(REPO_ROOT / "solutions" / aid, root / "solutions" / aid,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    release(root)
    return root


def solution_namespace(aid: str) -> dict:
    """Run the answer cells (and the read-only setup cells) of a solution notebook; return its globals."""
    nb = nbformat.read(REPO_ROOT / "solutions" / aid / f"{aid}.ipynb", as_version=4)
    ns: dict = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and (meta.get("solution") or (meta.get("locked") and not meta.get("grade"))):
            exec(compile(cell.source, f"{aid}:{meta['grade_id']}", "exec"), ns)
    return ns
