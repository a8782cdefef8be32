"""Write the student tree: what the public student repository holds, and nothing students must not see.

The instructor repository (this one, private) holds solutions, hidden tests and the grading tooling.
`python -m course publish` writes the tree that is pushed to the student repository
(`course.links.STUDENT_REPO`, what the Colab badges open and the install cell clones):

    lectures/*.ipynb           the lecture notebooks
    assignments/<aid>/*        the student versions (nbgrader's release, committed in assignments/)
    helpers/                   the package the notebooks import, with its templates and data
    requirements*.txt, environment.yml
    pyproject.toml             installs `helpers` only (generated from this repository's pyproject)
    README.md                  for students: Colab table, running locally, submitting (student_README.md)
    .gitignore, .course-publish (the marker that says "written by publish; safe to overwrite")

Never: solutions/, hidden tests, course/ (this tooling), tests/, nbgrader_config.py, benchmarks/,
the instructor README. Before writing anything it refuses (exit 2, nothing deleted or written) when
  - `assignments/` is not what a fresh release of `solutions/` gives (students would get stale
    notebooks); the check releases a scratch copy, so the instructor's gradebook is not touched;
  - any file it would write contains a solution or hidden-test marker, or a line of a solution or
    a hidden test (`leaks`);
  - `--out` exists, is not empty and is not a previous publish output (no marker file).
A previous output is replaced entirely, except a `.git` folder in it (so `--out` may be a clone of
the student repository). The output is a pure function of the sources: same input, same bytes.

    python -m course publish                       # -> build/student/
    python -m course publish --out ../student-repo

Worked example (the tree is computed in memory; `publish` writes it):

>>> files = student_files(REPO_ROOT)
>>> sorted({path.split("/")[0] for path in files})  # doctest: +NORMALIZE_WHITESPACE
['.course-publish', '.gitignore', 'README.md', 'assignments', 'environment.yml', 'helpers',
 'lectures', 'pyproject.toml', 'requirements-dev.txt', 'requirements-gpu.txt', 'requirements.txt']
>>> leaks({"x.py": b"### BEGIN SOLUTION\\n"}, {})
['x.py:1: marker BEGIN SOLUTION']
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import string
import sys
import tempfile
import tomllib
from pathlib import Path

from .grading_course import REPO_ROOT, stale_release
from .links import STUDENT_REPO, badge_markdown, clone_url

DEFAULT_OUT = Path("build") / "student"
MARKER = ".course-publish"
MARKER_TEXT = (
    "This tree was written by `python -m course publish` in the instructor repository.\n"
    "Do not edit it here: every publish replaces it (a .git folder is kept).\n"
)
README_TEMPLATE = Path(__file__).with_name("student_README.md")
TOP_FILES = ("requirements.txt", "requirements-gpu.txt", "requirements-dev.txt", "environment.yml")
KEEP_ON_REPLACE = (".git",)
STUDENT_GITIGNORE = """\
.venv/
build/
__pycache__/
*.egg-info/
.ipynb_checkpoints/
"""
# nbgrader's markers (solution regions, hidden tests, mark schemes); none may reach a student.
LEAK_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS",
                "BEGIN MARK SCHEME", "END MARK SCHEME")
REGIONS = {"BEGIN SOLUTION": "END SOLUTION", "BEGIN HIDDEN TESTS": "END HIDDEN TESTS",
           "BEGIN MARK SCHEME": "END MARK SCHEME"}
# An answer line shorter than this (after stripping) is too generic to call a leak: `return out`.
MIN_ANSWER_CHARS = 16
MIN_ANSWER_RUN = 3  # consecutive answer lines that make a leak (see `leaks`)


class PublishError(RuntimeError):
    """The student tree cannot be published; the message says why and what to do."""


# ---- what goes into the tree ---------------------------------------------------------------------

def _notebook_title(path: Path) -> str:
    """The notebook's title: cell 1's '# ...' line, without a leading 'NN · ' number."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    first = "".join(nb["cells"][0]["source"]).splitlines()[0]
    return re.sub(r"^\d+\s*·\s*", "", first.removeprefix("# ").strip())


def _notebooks(root: Path) -> tuple[list[Path], list[Path]]:
    lectures = sorted((root / "lectures").glob("*.ipynb"))
    assignments = sorted((root / "assignments").glob("*/*.ipynb"))
    return lectures, assignments


def colab_tables(root: str | Path = REPO_ROOT) -> tuple[str, str]:
    """Markdown tables (lectures, assignments) with each notebook's title and Colab badge.

    >>> lectures, _ = colab_tables()
    >>> lectures.splitlines()[0], lectures.splitlines()[2][:7]
    ('| # | lecture | Colab |', '| 00 | ')
    """
    root = Path(root)
    lectures, assignments = _notebooks(root)
    rows = ["| # | lecture | Colab |", "|---|---|---|"]
    for path in lectures:
        rel = path.relative_to(root).as_posix()
        rows.append(f"| {path.name[:2]} | {_notebook_title(path)} | {badge_markdown(rel)} |")
    arows = ["| assignment | notebook | Colab |", "|---|---|---|"]
    for path in assignments:
        rel = path.relative_to(root).as_posix()
        arows.append(f"| {_notebook_title(path)} | `{rel}` | {badge_markdown(rel)} |")
    return "\n".join(rows), "\n".join(arows)


def student_readme(root: str | Path = REPO_ROOT) -> str:
    """The student README: `student_README.md` with the Colab tables and repository filled in."""
    lectures, assignments = colab_tables(root)
    template = string.Template(README_TEMPLATE.read_text(encoding="utf-8"))
    return template.substitute(lecture_table=lectures, assignment_table=assignments,
                               repo=STUDENT_REPO, repo_name=STUDENT_REPO.split("/")[-1],
                               clone_url=clone_url())


def student_pyproject(root: str | Path = REPO_ROOT) -> str:
    """A pyproject.toml that installs `helpers` alone, with the package data this repository declares.

    >>> "packages = [\\"helpers\\"]" in student_pyproject()
    True
    """
    project = tomllib.loads((Path(root) / "pyproject.toml").read_text(encoding="utf-8"))
    meta = project["project"]
    data = project["tool"]["setuptools"].get("package-data", {}).get("helpers", [])
    q = json.dumps  # a JSON string is a valid TOML basic string
    return "\n".join([
        "# The student repository's package: `helpers`, what the course notebooks import.",
        "# Its pins live in requirements*.txt (see README.md); this file declares none.",
        "[build-system]",
        f"requires = {q(project['build-system']['requires'])}",
        f"build-backend = {q(project['build-system']['build-backend'])}",
        "",
        "[project]",
        f"name = {q(meta['name'])}",
        f"version = {q(meta['version'])}",
        f"description = {q(meta['description'])}",
        'readme = "README.md"',
        f"requires-python = {q(meta['requires-python'])}",
        "dependencies = []",
        "",
        "[tool.setuptools]",
        'packages = ["helpers"]',
        "",
        "[tool.setuptools.package-data]",
        f"helpers = {q(data)}",
        "",
    ])


def _helpers_files(root: Path) -> list[Path]:
    """The package's modules and its package data (the patterns pyproject.toml declares)."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = ["*.py", *project["tool"]["setuptools"].get("package-data", {}).get("helpers", [])]
    base = root / "helpers"
    return sorted({p for pattern in patterns for p in base.glob(pattern) if p.is_file()})


def student_files(root: str | Path = REPO_ROOT) -> dict[str, bytes]:
    """Every file of the student tree: repo-relative POSIX path -> content, sorted by path."""
    root = Path(root)
    lectures, _ = _notebooks(root)
    copied = [*lectures, *sorted(p for p in (root / "assignments").glob("*/*") if p.is_file()),
              *_helpers_files(root), *(root / name for name in TOP_FILES)]
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in copied}
    files.update({
        "README.md": student_readme(root).encode(),
        "pyproject.toml": student_pyproject(root).encode(),
        ".gitignore": STUDENT_GITIGNORE.encode(),
        MARKER: MARKER_TEXT.encode(),
    })
    return dict(sorted(files.items()))


# ---- what must never go into it ------------------------------------------------------------------

def _cell_sources(nb: dict):
    for cell in nb.get("cells", []):
        source = cell.get("source", "")
        yield cell, source if isinstance(source, str) else "".join(source)


def answer_lines(root: str | Path = REPO_ROOT) -> dict[str, str]:
    """Lines a student must not see: stripped line -> where it comes from ('solutions/a1/a1.ipynb').

    Taken from every solutions/*/*.ipynb: the code between nbgrader's solution, hidden-test and
    mark-scheme markers, and the whole text of a markdown answer cell written without markers.
    Trivial lines are left out: shorter than MIN_ANSWER_CHARS (`return out`), imports, and lines
    that a released student notebook shows anyway (e.g. `torch.manual_seed(0)`).
    """
    root = Path(root)
    public = set()
    for released in sorted((root / "assignments").glob("*/*.ipynb")):
        for _, text in _cell_sources(json.loads(released.read_text(encoding="utf-8"))):
            public |= {line.strip() for line in text.splitlines()}
    found: dict[str, str] = {}
    for source_path in sorted((root / "solutions").glob("*/*.ipynb")):
        rel = source_path.relative_to(root).as_posix()
        for cell, text in _cell_sources(json.loads(source_path.read_text(encoding="utf-8"))):
            for line in _secret_lines(cell, text):
                line = line.strip()
                if (len(line) >= MIN_ANSWER_CHARS and line not in public
                        and not line.startswith(("import ", "from "))):
                    found.setdefault(line, rel)
    return found


def _secret_lines(cell: dict, text: str) -> list[str]:
    """The lines of one source cell that nbgrader's release removes."""
    lines = text.splitlines()
    nbgrader = cell.get("metadata", {}).get("nbgrader", {})
    if cell.get("cell_type") == "markdown" and nbgrader.get("solution") and not any(m in text for m in REGIONS):
        return lines  # nbgrader replaces a whole answer cell written without markers by its stub
    secret, end = [], None
    for line in lines:
        if end is not None and end in line:
            end = None
        elif end is not None:
            secret.append(line)
        else:
            end = next((REGIONS[m] for m in REGIONS if m in line), None)
    return secret


def _text_lines(path: str, content: bytes) -> list[str]:
    """The lines a reader sees: a notebook's cell sources and text outputs, else the decoded file."""
    text = content.decode("utf-8", errors="replace")
    if path.endswith(".ipynb"):
        try:
            nb = json.loads(text)
        except ValueError:
            return text.splitlines()
        shown = []
        for cell, source in _cell_sources(nb):
            shown += source.splitlines()
            for output in cell.get("outputs", []):
                for value in [output.get("text", "")] + list(output.get("data", {}).values()):
                    shown += ("".join(value) if isinstance(value, list) else str(value)).splitlines()
        return shown
    return text.splitlines()


def leaks(files: dict[str, bytes], answers: dict[str, str], run: int | None = None) -> list[str]:
    """Every place in `files` (path -> bytes) showing a marker or answer code; [] when clean.

    Answer code is a run of at least `run` (default MIN_ANSWER_RUN) consecutive lines of one solution
    notebook's answer lines: a solution cell's code, or a piece of it. A single line shared with an
    answer (`for new_id in range(256, vocab_size):` in lecture 01, which the assignment extends) is
    not a leak; whether the lectures and `helpers` give away too much is measured by grading a
    submission built only from them (tests/test_assignments_*).

    >>> answers = {"y = secret(x)": "solutions/a/a.ipynb", "z = more(y)": "solutions/a/a.ipynb"}
    >>> leaks({"a.py": b"x = 1\\n    y = secret(x)  \\nz = more(y)\\n"}, answers, run=2)
    ['a.py:2: line of solutions/a/a.ipynb: y = secret(x)', 'a.py:3: line of solutions/a/a.ipynb: z = more(y)']
    >>> leaks({"a.py": b"y = secret(x)\\nprint(y)\\n"}, answers, run=2)
    []
    """
    run = MIN_ANSWER_RUN if run is None else run
    found = []
    for path, content in files.items():
        lines = [(n, line.strip()) for n, line in enumerate(_text_lines(path, content), 1) if line.strip()]
        streak: list[tuple[int, str]] = []
        for number, line in lines + [(0, "")]:
            marker = next((m for m in LEAK_MARKERS if m in line), None)
            if marker:
                found.append(f"{path}:{number}: marker {marker}")
            source = answers.get(line)
            if source is not None and (not streak or answers[streak[-1][1]] == source):
                streak.append((number, line))
                continue
            if len(streak) >= run:
                found += [f"{path}:{n}: line of {answers[t]}: {t}" for n, t in streak]
            streak = [(number, line)] if source is not None else []
    return sorted(found, key=lambda f: (f.split(":")[0], int(f.split(":")[1])))


def read_tree(path: str | Path) -> dict[str, bytes]:
    """Every file under `path` (a `.git` folder excepted): relative POSIX path -> bytes."""
    path = Path(path)
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(path).parts}


# ---- refusing, then writing ----------------------------------------------------------------------

def check_out_dir(out: Path) -> None:
    """Raise PublishError unless `out` is absent, empty, or a previous publish output."""
    if out.exists() and not out.is_dir():
        raise PublishError(f"{out} exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise PublishError(f"{out} is not empty and holds no {MARKER} marker, so it is not a previous "
                           "publish output; refusing to replace it (choose an empty or new --out)")


def check_release(root: Path) -> None:
    """Raise PublishError when assignments/ differs from a fresh release of solutions/.

    The release runs on a scratch copy: `stale_release` records into the gradebook of the root it
    is given, and publishing must not change the instructor's gradebook.
    """
    with tempfile.TemporaryDirectory(prefix="publish-release-check-") as scratch:
        for name in ("solutions", "assignments"):
            if (root / name).is_dir():
                shutil.copytree(root / name, Path(scratch) / name,
                                ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        stale = stale_release(scratch)
    if stale:
        raise PublishError("assignments/ is not what solutions/ releases (run `make release` and commit), "
                           "differing: " + ", ".join(stale))


def publish(out: str | Path = DEFAULT_OUT, root: str | Path = REPO_ROOT) -> dict[str, bytes]:
    """Write the student tree into `out` (relative to `root` unless absolute); returns what was written.

    Raises PublishError, having written and deleted nothing, for the cases in the module docstring.
    """
    root = Path(root).resolve()
    out = Path(out) if Path(out).is_absolute() else root / out
    check_out_dir(out)
    check_release(root)
    files = student_files(root)
    problems = leaks(files, answer_lines(root))
    if problems:
        raise PublishError("the student tree would show answers:\n  " + "\n  ".join(problems))

    write_tree(files, out)
    return files


def write_tree(files: dict[str, bytes], out: Path) -> None:
    """Replace the contents of `out` (a `.git` folder excepted) by `files` (path -> bytes)."""
    out.mkdir(parents=True, exist_ok=True)
    for entry in sorted(out.iterdir()):
        if entry.name in KEEP_ON_REPLACE:
            continue
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for rel, content in files.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"where to write the student tree (default: {DEFAULT_OUT})")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="instructor repository (default: this one)")
    args = parser.parse_args(argv)
    try:
        files = publish(args.out, args.root)
    except PublishError as exc:
        print(f"publish: refused: {exc}", file=sys.stderr)
        return 2
    out = args.out if args.out.is_absolute() else args.root / args.out
    print(f"published {len(files)} files to {out} (for {STUDENT_REPO})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
