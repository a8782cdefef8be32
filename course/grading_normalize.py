"""Turn what a student handed in into the notebook nbgrader expects, saying what was changed and why.

- Student ids are folder names: letters, digits, `.`, `_`, `-` only (`validate_student_id`), so an id
  can never act as a glob or a path.
- The notebook: the expected name, else the one notebook in the folder under another name
  (`a1_bpe_tokenizer (1).ipynb`), noted. Nothing else in the folder is used.
- Grading metadata, checked against the release: a graded cell that appears twice (a copy-pasted
  test or answer) keeps its last copy, the others run as ordinary cells; an unknown grade id becomes
  an ordinary cell; a cell whose metadata was dropped (Colab) gets it back when it is a locked cell
  with the released source, or the one unmarked code cell where a missing answer cell belongs.
- Integrity flags: nbgrader's solution/hidden-test markers, or the instructor's hidden test code.

>>> validate_student_id("alice_01")
'alice_01'
>>> validate_student_id("bob[1]")
Traceback (most recent call last):
...
ValueError: invalid student id 'bob[1]': use letters, digits, '.', '_' or '-' (no glob characters, no path separators)
"""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path

STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
MIN_HIDDEN_LINE = 16  # characters: shorter hidden-test lines (`assert x`) are too common to flag


def validate_student_id(student: str) -> str:
    """`student` if it is a safe folder name, else ValueError with the rule."""
    if not STUDENT_ID.fullmatch(student) or student in (".", ".."):
        raise ValueError(f"invalid student id {student!r}: use letters, digits, '.', '_' or '-' "
                         "(no glob characters, no path separators)")
    return student


@dataclasses.dataclass
class Normalized:
    notebook: object | None  # NotebookNode to grade, None when nothing usable was handed in
    source_name: str | None  # the file it came from
    notes: list[str] = dataclasses.field(default_factory=list)  # what was repaired (no points lost)
    flags: list[str] = dataclasses.field(default_factory=list)  # for the instructor to review
    unreadable: str | None = None  # why the file is not a notebook


def _gid(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _strip_grading(cell) -> None:
    cell.metadata.pop("nbgrader", None)


def find_notebook(folder: Path, name: str) -> tuple[Path | None, list[str]]:
    """The file to grade as `<name>.ipynb` in `folder`, and a note if it had another name."""
    expected = folder / f"{name}.ipynb"
    if expected.is_file():
        return expected, []
    others = sorted(p for p in folder.glob("*.ipynb") if p.is_file())
    if len(others) == 1:
        return others[0], [f"graded {others[0].name!r} as {expected.name!r} (renamed file)"]
    if others:
        return None, [f"{expected.name!r} not found; {len(others)} other notebooks, none graded: "
                      + ", ".join(repr(p.name) for p in others[:5])]
    return None, [f"{expected.name!r} not found"]


def normalize(folder: Path, name: str, released, hidden_lines: set[str], *, single_notebook: bool = True) -> Normalized:
    """Read `folder`'s notebook for `name` and repair it against `released` (the release's NotebookNode)."""
    import nbformat

    path, notes = find_notebook(folder, name) if single_notebook else (folder / f"{name}.ipynb", [])
    if path is None or not path.is_file():
        return Normalized(None, None, notes)
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # noqa: BLE001 - any way of not being a notebook
        return Normalized(None, path.name, notes, unreadable=f"{type(err).__name__}: {str(err)[:120]}")
    result = Normalized(nb, path.name, notes)
    result.flags += integrity_flags(nb, hidden_lines)
    repair_metadata(nb, released, result.notes)
    return result


def integrity_flags(nb, hidden_lines: set[str]) -> list[str]:
    """Why this submission needs a human: solution/hidden-test markers, or the hidden tests' code."""
    flags = []
    text = "\n".join(c.source for c in nb.cells)
    markers = sorted({m for m in MARKERS if m in text})
    if markers:
        flags.append("contains nbgrader markers (" + ", ".join(markers) + "): the instructor's source notebook?")
    lines = {ln.strip() for ln in text.splitlines()}
    leaked = sorted(ln for ln in hidden_lines if ln in lines)
    if leaked:
        flags.append(f"contains {len(leaked)} line(s) of the hidden tests")
    return flags


def repair_metadata(nb, released, notes: list[str]) -> None:
    """Fix duplicate, unknown and dropped grading metadata in `nb` (in place), appending notes."""
    spec = {_gid(c): c for c in released.cells if _gid(c)}
    seen: set[str] = set()
    for index in range(len(nb.cells) - 1, -1, -1):  # from the end: the last copy of a cell is graded
        cell, gid = nb.cells[index], _gid(nb.cells[index])
        if gid is None:
            continue
        if gid not in spec:
            _strip_grading(cell)
            notes.append(f"cell {index}: unknown grade id {gid!r}; run as an ordinary cell")
        elif gid in seen:
            _strip_grading(cell)
            notes.append(f"{gid}: appears more than once (copy-pasted?); the last copy is graded, "
                         "the others run as ordinary cells")
        else:
            seen.add(gid)
    missing = [gid for gid in spec if gid not in seen]
    if not missing:
        return
    # Locked cells (tests, read-only code) are recognised by their released source.
    by_source = {spec[gid].source.strip(): gid for gid in missing if spec[gid].metadata["nbgrader"].get("locked")}
    for cell in nb.cells:
        gid = by_source.get(cell.source.strip()) if _gid(cell) is None else None
        if gid and gid not in seen:
            cell.metadata["nbgrader"] = copy.deepcopy(spec[gid].metadata["nbgrader"])
            seen.add(gid)
            notes.append(f"{gid}: grading metadata missing (dropped by an editor?); restored from the release")
    released_sources = {c.source.strip() for c in released.cells}
    # An answer cell is the one unmarked code cell between the graded cells around it in the release.
    order = [_gid(c) for c in released.cells if _gid(c)]
    for gid in [g for g in order if g not in seen]:
        if spec[gid].cell_type != "code":
            continue
        i = order.index(gid)
        before = next((g for g in reversed(order[:i]) if g in seen), None)
        after = next((g for g in order[i + 1:] if g in seen), None)
        positions = {_gid(c): k for k, c in enumerate(nb.cells) if _gid(c)}
        lo = positions[before] + 1 if before else 0
        hi = positions[after] if after else len(nb.cells)
        candidates = [c for c in nb.cells[lo:hi] if c.cell_type == "code" and _gid(c) is None
                      and c.source.strip() not in released_sources]  # not the release's own ungraded cells
        if len(candidates) == 1:
            candidates[0].metadata["nbgrader"] = copy.deepcopy(spec[gid].metadata["nbgrader"])
            seen.add(gid)
            notes.append(f"{gid}: grading metadata missing (dropped by an editor?); restored by position")


def hidden_test_lines(source_cells) -> set[str]:
    """The lines inside `BEGIN/END HIDDEN TESTS` of the instructor's cells, long enough to be distinctive."""
    lines: set[str] = set()
    for source in source_cells:
        hidden = False
        for line in source.splitlines():
            if "BEGIN HIDDEN TESTS" in line:
                hidden = True
            elif "END HIDDEN TESTS" in line:
                hidden = False
            elif hidden and len(line.strip()) >= MIN_HIDDEN_LINE:
                lines.add(line.strip())
    return lines


def answered_release(released, solution):
    """The release with every answer cell holding the instructor's answer (markers removed).

    What an honest student who got everything right hands in: tests and read-only cells are the
    release's own, so nothing of the hidden tests is in it.
    """
    answers = {_gid(c): c.source for c in solution.cells if _gid(c)}
    nb = copy.deepcopy(released)
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and _gid(cell) in answers:
            lines = answers[_gid(cell)].split("\n")
            cell.source = "\n".join(ln for ln in lines if "BEGIN SOLUTION" not in ln and "END SOLUTION" not in ln)
    return nb
