"""The three standard header cells of every course notebook, and a fixer that keeps them current.

Every notebook in lectures/ and solutions/ opens with
  1. a markdown cell: ``# <title>``, a blank line, the Colab badge of the notebook's own path;
  2. a code cell tagged ``colab-install`` that installs the pinned set, on Colab only;
  3. a code cell tagged ``parameters`` (papermill) holding ``PROFILE = "auto"`` and the other knobs.

The text of cells 1 and 2 is defined here once; tests/test_hygiene.py imports it.

Worked example:

>>> cells = header_cells("lectures/01_tokenization.ipynb", "Tokenization")
>>> cells[0].source.splitlines()[0]
'# Tokenization'
>>> cells[1].metadata["tags"], cells[2].metadata["tags"]
(['colab-install'], ['parameters'])

Command line (run from the repository root after writing or editing a notebook):

    python -m course header --fix --strip            # every notebook in lectures/ solutions/
    python -m course header --strip assignments      # only strip outputs
    python -m course header --check                  # exit 1 if anything would change
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]

from course.links import badge_markdown, clone_url  # noqa: E402

INSTALL_TAG = "colab-install"
PARAMETERS_TAG = "parameters"
REQUIREMENTS_FILES = ("requirements.txt", "requirements-gpu.txt")
DEFAULT_DIRS = ("lectures", "solutions")

INSTALL_TEMPLATE = """\
# Colab only (does nothing elsewhere; safe to re-run): fetch the course, install its pinned libraries
# except torch (Colab's torch is built for its GPU driver), and make `helpers` importable in this kernel.
import os
import sys

if "google.colab" in sys.modules:
    COURSE_DIR = os.environ.get("COURSE_DIR", "/content/course")
    COURSE_REPO = os.environ.get("COURSE_REPO", "{repo}")
    if not os.path.isdir(os.path.join(COURSE_DIR, "helpers")):
        !git clone -q --depth 1 {{COURSE_REPO}} {{COURSE_DIR}}
    !{{sys.executable}} {{COURSE_DIR}}/helpers/colab.py install {{COURSE_DIR}}/{requirements}
    if get_ipython().user_ns["_exit_code"]:  # `!` does not raise: stop "Run all" here, not at an import below
        raise RuntimeError("fetching or installing the course failed (see the messages above); re-run this cell")
    if COURSE_DIR not in sys.path:
        sys.path.insert(0, COURSE_DIR)"""

DEFAULT_PARAMETERS = """\
# Parameters: papermill and CI override these (make run PROFILE=tiny|full).
PROFILE = "auto"  # "tiny": CPU, offline stand-in models; "full": GPU, the real models; "auto": full if CUDA"""

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
# Notebook-level metadata a committed notebook may carry (nbgrader marks its own notebooks).
ALLOWED_NOTEBOOK_METADATA = ("kernelspec", "language_info", "nbgrader")
# Cell metadata written by running or viewing a notebook, never by its author.
VOLATILE_CELL_METADATA = ("execution", "papermill", "collapsed", "scrolled", "ExecuteTime", "widgets")


def title_source(path: str, title: str, extra: str = "") -> str:
    """Source of cell 1.

    >>> print(title_source("lectures/x.ipynb", "X"))  # doctest: +ELLIPSIS
    # X
    <BLANKLINE>
    [![Open In Colab](...)](https://colab.research.google.com/github/.../blob/main/lectures/x.ipynb)
    """
    text = f"# {title}\n\n{badge_markdown(path)}"
    return f"{text}\n\n{extra}" if extra.strip() else text


def install_source(requirements: str = "requirements.txt") -> str:
    """Source of cell 2; `requirements` is requirements.txt or (lecture 04) requirements-gpu.txt.

    >>> [line.strip() for line in install_source().splitlines() if "colab.py install" in line]
    ['!{sys.executable} {COURSE_DIR}/helpers/colab.py install {COURSE_DIR}/requirements.txt']
    """
    if requirements not in REQUIREMENTS_FILES:
        raise ValueError(f"requirements must be one of {REQUIREMENTS_FILES}, not {requirements!r}")
    return INSTALL_TEMPLATE.format(repo=clone_url(), requirements=requirements)


def header_cells(path: str, title: str, requirements: str = "requirements.txt", parameters: str = DEFAULT_PARAMETERS):
    """The three header cells (title + badge, Colab install, parameters) of the notebook at `path`."""
    return [
        nbformat.v4.new_markdown_cell(title_source(path, title)),
        nbformat.v4.new_code_cell(install_source(requirements), metadata={"tags": [INSTALL_TAG]}),
        nbformat.v4.new_code_cell(parameters, metadata={"tags": [PARAMETERS_TAG]}),
    ]


def new_notebook(path: str, title: str, requirements: str = "requirements.txt", parameters: str = DEFAULT_PARAMETERS):
    """An empty course notebook: the header cells and kernelspec-only metadata."""
    nb = nbformat.v4.new_notebook()
    nb.cells = header_cells(path, title, requirements, parameters)
    nb.metadata = nbformat.from_dict({"kernelspec": dict(KERNELSPEC)})
    return nb


def has_tag(cell, tag: str) -> bool:
    return tag in cell.get("metadata", {}).get("tags", [])


def _title_from_filename(path: str) -> str:
    """'lectures/01_tokenization.ipynb' -> 'Tokenization'."""
    stem = re.sub(r"^\d+[_-]", "", Path(path).stem)
    return stem.replace("_", " ").replace("-", " ").strip().capitalize() or Path(path).stem


def _split_title_cell(source: str) -> tuple[str | None, str]:
    """(title, extra text) of an existing cell 1; badge lines are dropped (they are regenerated)."""
    lines = source.splitlines()
    if not lines or not lines[0].startswith("# "):
        return None, source
    rest = [line for line in lines[1:] if "colab-badge.svg" not in line]
    return lines[0][2:].strip(), "\n".join(rest).strip("\n")


def set_badge(nb, path: str) -> None:
    """Point the badge in cell 1 at `path` (e.g. after nbgrader copies solutions/ to assignments/)."""
    title, extra = _split_title_cell(nb.cells[0].source) if nb.cells else (None, "")
    if title is None:
        raise ValueError(f"{path}: cell 1 must be a markdown cell starting with '# <title>'")
    nb.cells[0].source = title_source(path, title, extra)


def fix_header(nb, path: str):
    """Stamp cells 1–2 and make sure a `parameters` cell is cell 3; returns a new notebook.

    Keeps the existing title (and any text after the badge), the metadata (e.g. nbgrader) and ids
    of existing header cells, the requirements file an existing install cell names, and the body
    of an existing parameters cell. `path` is the notebook's path relative to the repository root.
    """
    nb = copy.deepcopy(nb)
    cells = list(nb.cells)

    title_cell = None
    if cells and cells[0].cell_type == "markdown" and cells[0].source.startswith("# "):
        title_cell = cells.pop(0)
    install_cell = next((c for c in cells if has_tag(c, INSTALL_TAG)), None)
    params_cell = next((c for c in cells if has_tag(c, PARAMETERS_TAG)), None)
    cells = [c for c in cells if c is not install_cell and c is not params_cell]

    if title_cell is None:
        title_cell = nbformat.v4.new_markdown_cell(title_source(path, _title_from_filename(path)))
    else:
        title, extra = _split_title_cell(title_cell.source)
        title_cell.source = title_source(path, title, extra)

    requirements = "requirements.txt"
    if install_cell is not None and "requirements-gpu.txt" in install_cell.source:
        requirements = "requirements-gpu.txt"
    if install_cell is None:
        install_cell = nbformat.v4.new_code_cell(metadata={"tags": [INSTALL_TAG]})
    install_cell.source = install_source(requirements)

    if params_cell is None:
        params_cell = nbformat.v4.new_code_cell(DEFAULT_PARAMETERS, metadata={"tags": [PARAMETERS_TAG]})

    nb.cells = [title_cell, install_cell, params_cell, *cells]
    return nb


def strip_notebook(nb):
    """No outputs, execution counts, widget state or run metadata; returns a new notebook.

    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1", execution_count=3)])
    >>> strip_notebook(nb).cells[0].execution_count is None
    True
    """
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
    metadata = {k: v for k, v in nb.metadata.items() if k in ALLOWED_NOTEBOOK_METADATA}
    metadata.setdefault("kernelspec", dict(KERNELSPEC))
    nb.metadata = nbformat.from_dict(metadata)
    return nb


def notebook_paths(targets, root: Path = ROOT) -> list[Path]:
    """Every .ipynb under the target dirs (or the target files), sorted, checkpoints excluded."""
    found: list[Path] = []
    for target in targets:
        p = Path(target)
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            found += [q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts]
        elif p.suffix == ".ipynb":
            found.append(p)
    return sorted(set(found))


def process(path: Path, fix: bool, strip: bool, root: Path = ROOT) -> tuple[object, bool]:
    """(new notebook, changed?) for one file; writes nothing."""
    rel = path.resolve().relative_to(root.resolve()).as_posix()
    original = nbformat.read(path, as_version=4)
    nb = original
    if fix:
        nb = fix_header(nb, rel)
    if strip:
        nb = strip_notebook(nb)
    nbformat.validate(nb)
    return nb, nbformat.writes(nb) != nbformat.writes(original)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", help=f"dirs or notebooks (default: {' '.join(DEFAULT_DIRS)})")
    parser.add_argument("--fix", action="store_true", help="stamp/refresh header cells 1-3")
    parser.add_argument("--strip", action="store_true", help="remove outputs, execution counts, widget state")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a notebook would change")
    args = parser.parse_args(argv)
    if not (args.fix or args.strip):
        parser.error("nothing to do: give --fix and/or --strip")

    changed = []
    for path in notebook_paths(args.targets or DEFAULT_DIRS):
        nb, differs = process(path, args.fix, args.strip)
        if differs:
            changed.append(path.relative_to(ROOT).as_posix())
            if not args.check:
                nbformat.write(nb, path)
    verb = "would change" if args.check else "updated"
    for rel in changed:
        print(f"{verb}: {rel}")
    if not changed:
        print("all notebooks already clean")
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
