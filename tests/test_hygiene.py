"""Notebooks are committed clean, with the standard header; the README's Colab links are right.

The checker `notebook_problems` returns a list of problems (empty when clean); it is tested on
bad examples first, then applied to every committed notebook.
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import nbformat
import pytest

from course import notebook_header as header
from course.links import badge_markdown, colab_url

ROOT = Path(__file__).resolve().parents[1]

NEEDS_PARAMETERS = ("lectures", "solutions")
NOTEBOOKS = sorted(
    p for d in ("lectures", "solutions", "assignments") for p in (ROOT / d).rglob("*.ipynb")
    if ".ipynb_checkpoints" not in p.parts
)
PROFILE_ASSIGNMENT = re.compile(r"^PROFILE\s*=", re.MULTILINE)
COLAB_LINK = re.compile(r"\((https://colab\.research\.google\.com/github/[^)\s]+)\)")


def notebook_problems(nb, rel: str) -> list[str]:
    """Everything wrong with notebook `nb` at repo-relative path `rel` (empty list: clean)."""
    problems = []
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        problems.append(f"invalid nbformat: {exc.message}")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and cell.get("outputs"):
            problems.append(f"cell {i} has outputs")
        if cell.cell_type == "code" and cell.get("execution_count") is not None:
            problems.append(f"cell {i} has an execution_count")
    extra = sorted(set(nb.metadata) - set(header.ALLOWED_NOTEBOOK_METADATA))
    if "widgets" in nb.metadata:
        problems.append("widget state in notebook metadata")
    if extra:
        problems.append(f"notebook metadata beyond {header.ALLOWED_NOTEBOOK_METADATA}: {extra}")
    if "kernelspec" not in nb.metadata:
        problems.append("no kernelspec")

    cells = nb.cells
    title = cells[0] if cells else None
    if title is None or title.cell_type != "markdown" or not title.source.startswith("# "):
        problems.append("cell 1 is not a markdown '# <title>' cell")
    else:
        lines = title.source.splitlines()
        if len(lines) < 3 or lines[1] != "" or lines[2] != badge_markdown(rel):
            problems.append(f"cell 1: '# title', blank line, then the badge of {rel} expected")
    if len(cells) < 2 or not header.has_tag(cells[1], header.INSTALL_TAG):
        problems.append("cell 2 is not tagged colab-install")
    elif cells[1].source not in {header.install_source(r) for r in header.REQUIREMENTS_FILES}:
        problems.append("cell 2 differs from the standard Colab install cell (run python -m course header --fix)")

    if rel.split("/")[0] in NEEDS_PARAMETERS:
        tagged = [i for i, c in enumerate(cells) if header.has_tag(c, header.PARAMETERS_TAG)]
        if len(tagged) != 1:
            problems.append(f"{len(tagged)} cells tagged parameters (exactly one expected)")
        elif tagged[0] != 2:
            problems.append(f"the parameters cell is cell {tagged[0] + 1}, not cell 3")
        elif not PROFILE_ASSIGNMENT.search(cells[2].source):
            problems.append("the parameters cell does not assign PROFILE")
    return problems


# ---- the checker catches what it should ---------------------------------------------------------

GOOD_PATH = "lectures/99_example.ipynb"


def _good():
    nb = header.new_notebook(GOOD_PATH, "Example")
    nb.cells.append(nbformat.v4.new_code_cell("print(PROFILE)"))
    return nb


def test_checker_accepts_a_fresh_notebook():
    assert notebook_problems(_good(), GOOD_PATH) == []


def _with(change):
    nb = _good()
    change(nb)
    return nb


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda nb: nb.cells[3].outputs.append(nbformat.v4.new_output("stream", text="hi")), "cell 3 has outputs"),
        (lambda nb: setattr(nb.cells[3], "execution_count", 7), "cell 3 has an execution_count"),
        (lambda nb: nb.metadata.update(widgets={"application/vnd.jupyter.widget-state+json": {}}), "widget state"),
        (lambda nb: nb.metadata.pop("kernelspec"), "no kernelspec"),
        (lambda nb: setattr(nb.cells[0], "source", nb.cells[0].source.replace("99_example", "00_other")), "badge"),
        (lambda nb: nb.cells[1].metadata.update(tags=[]), "colab-install"),
        (lambda nb: setattr(nb.cells[1], "source", "!pip install torch"), "standard Colab install"),
        (lambda nb: nb.cells[3].metadata.update(tags=["parameters"]), "2 cells tagged parameters"),
        (lambda nb: setattr(nb.cells[2], "source", "STEPS = 3"), "does not assign PROFILE"),
        (lambda nb: nb.cells.insert(2, nbformat.v4.new_code_cell("import os")), "not cell 3"),
    ],
)
def test_checker_rejects(change, expected):
    problems = notebook_problems(_with(change), GOOD_PATH)
    assert any(expected in p for p in problems), problems


def test_fix_repairs_a_broken_header():
    broken = _good()
    broken.cells[0].source = "# Example\n\n[![Open In Colab](https://x/colab-badge.svg)](https://wrong)\n\nIntro text."
    del broken.cells[1]  # no install cell
    broken.cells[-1].outputs = [nbformat.v4.new_output("stream", text="hi")]
    broken.cells[-1].execution_count = 4
    broken.cells[1].metadata["nbgrader"] = {"grade": False, "locked": True, "solution": False, "grade_id": "p"}
    fixed = header.strip_notebook(header.fix_header(broken, GOOD_PATH))
    assert notebook_problems(fixed, GOOD_PATH) == []
    assert fixed.cells[0].source.endswith("\n\nIntro text.")  # text after the badge is kept
    assert fixed.cells[2].metadata["nbgrader"]["grade_id"] == "p"  # and cell metadata


def test_fix_keeps_gpu_requirements():
    nb = _good()
    nb.cells[1].source = header.install_source("requirements-gpu.txt").replace("-q ", "")
    assert "requirements-gpu.txt" in header.fix_header(nb, GOOD_PATH).cells[1].source


def test_notebook_header_doctests():
    assert doctest.testmod(header, optionflags=doctest.ELLIPSIS).failed == 0


# ---- every committed notebook -------------------------------------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_is_clean(path):
    rel = path.relative_to(ROOT).as_posix()
    assert notebook_problems(nbformat.read(path, as_version=4), rel) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_header_tool_would_change_nothing(path):
    fix = path.relative_to(ROOT).parts[0] in NEEDS_PARAMETERS
    _, changed = header.process(path, fix=fix, strip=True, root=ROOT)
    assert not changed, "run: python -m course header --fix --strip"


# ---- README -------------------------------------------------------------------------------------

def readme_colab_paths(text: str) -> dict[str, str]:
    """{notebook path: link} for every Colab link in README text."""
    links = {}
    for url in COLAB_LINK.findall(text):
        path = url.split("/blob/", 1)[1].split("/", 1)[1] if "/blob/" in url else url
        links[path] = url
    return links


def test_readme_link_parser():
    text = f"| 00 | [![Open In Colab](badge.svg)]({colab_url('lectures/00_a.ipynb')}) |"
    assert readme_colab_paths(text) == {"lectures/00_a.ipynb": colab_url("lectures/00_a.ipynb")}


def test_readme_colab_links_match_the_lectures():
    links = readme_colab_paths((ROOT / "README.md").read_text())
    lectures = {p.relative_to(ROOT).as_posix() for p in ROOT.glob("lectures/*.ipynb")}
    assert links, "README has no Colab links"
    for path, url in links.items():
        assert url == colab_url(path), f"README link for {path} is not colab_url({path!r})"
    missing_from_readme = lectures - set(links)
    assert not missing_from_readme, f"lectures without a README Colab row: {sorted(missing_from_readme)}"
    dangling = {p for p in links if p.startswith("lectures/")} - lectures
    assert not dangling, f"README links to notebooks that do not exist: {sorted(dangling)}"
