"""The student tree (`python -m course publish`): what students clone holds no answers and works.

The tree is written to a scratch folder exactly as `publish` writes it, then every file is read back
and scanned: nbgrader's markers, every non-trivial line of every solution and hidden test, grading
modules, badges, and the student pyproject (built into a wheel offline). The scanner itself is shown
to catch planted leaks, and `publish`'s refusals are run for real (a stale release, a foreign --out).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from course import publish as pub
from course.links import INSTRUCTOR_REPO, STUDENT_REPO, clone_url, colab_url

ROOT = Path(__file__).resolve().parents[1]
COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^)\s\"]+")
TOOLING = ("course/", "tests/", "solutions/", "benchmarks/", "nbgrader_config.py", ".github/", ".ci/")
@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """The student tree as `publish` writes it (its refusals are tested separately below)."""
    out = tmp_path_factory.mktemp("publish") / "student"
    pub.write_tree(pub.student_files(ROOT), out)
    return out


@pytest.fixture(scope="module")
def files(tree) -> dict[str, bytes]:
    return pub.read_tree(tree)


@pytest.fixture(scope="module")
def answers() -> dict[str, str]:
    return pub.answer_lines(ROOT)


def _source_helpers() -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "helpers").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


# ---- what is in the tree, and what is not --------------------------------------------------------

def test_tree_holds_the_student_files_and_nothing_else(files):
    top = {path.split("/")[0] for path in files}
    assert top == {"lectures", "assignments", "helpers", "requirements.txt", "requirements-gpu.txt",
                   "requirements-dev.txt", "environment.yml", "pyproject.toml", "README.md", ".gitignore",
                   pub.MARKER}
    assert {p for p in files if p.startswith("helpers/")} == _source_helpers()
    lectures = {p.relative_to(ROOT).as_posix() for p in (ROOT / "lectures").glob("*.ipynb")}
    assignments = {p.relative_to(ROOT).as_posix() for p in (ROOT / "assignments").glob("*/*") if p.is_file()}
    assert {p for p in files if p.startswith(("lectures/", "assignments/"))} == lectures | assignments
    for path in ("lectures", "assignments", "helpers"):  # notebooks and package files byte for byte
        assert all(files[p] == (ROOT / p).read_bytes() for p in files if p.startswith(path + "/"))


def test_no_grading_module_and_no_tooling(files):
    assert not [p for p in files if p.startswith(TOOLING) or "__pycache__" in p or p.endswith(".pyc")]
    imports_tooling = re.compile(r"^\s*(from|import)\s+(course|nbgrader|papermill|tests)\b", re.MULTILINE)
    for path, content in files.items():
        if path.endswith((".py", ".ipynb")):
            text = "\n".join(pub._text_lines(path, content))
            assert not imports_tooling.search(text), f"{path} imports instructor tooling"
    assert INSTRUCTOR_REPO not in b"".join(files.values()).decode()


def test_no_nbgrader_markers_anywhere(files):
    assert pub.leaks(files, {}) == []


def test_no_line_of_any_solution_or_hidden_test(files, answers):
    """Every file of the tree against every non-trivial line between the markers of solutions/."""
    assert pub.leaks(files, answers) == []


def test_answer_lines_cover_every_solution_and_hidden_test(answers):
    """The scan's reference set really holds the answers (a scan against an empty set proves nothing)."""
    for source in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        nb = nbformat.read(source, as_version=4)
        rel = source.relative_to(ROOT).as_posix()
        for cell in nb.cells:
            secret = [line.strip() for line in pub._secret_lines(cell, cell.source)]
            secret = [line for line in secret if len(line) >= pub.MIN_ANSWER_CHARS]
            if "BEGIN HIDDEN TESTS" in cell.source or "BEGIN SOLUTION" in cell.source:
                assert secret, f"{rel}: a marked region with no collected line"
                assert any(answers.get(line) == rel for line in secret), f"{rel}: {secret[:2]}"
    assert not [line for line in answers if any(m in line for m in pub.LEAK_MARKERS)]


def _planted(tree: Path, tmp_path: Path, plant) -> set[str]:
    copy = tmp_path / "planted"
    shutil.copytree(tree, copy)
    plant(copy)
    return set(pub.read_tree(copy))


@pytest.mark.parametrize("where", ["helpers/estimate.py", "lectures/02_chat_templates.ipynb", "README.md"])
def test_scanner_reports_a_planted_solution_line(tree, files, answers, tmp_path, where):
    """A solution line (with quotes, so a notebook stores it JSON-escaped) planted into the tree is found."""
    # A leak is a run of MIN_ANSWER_RUN answer lines of one solution notebook. Plant such a run, with a
    # line holding quotes first (a notebook stores it JSON-escaped) and a hidden-test line among them.
    a1 = "solutions/a1_bpe_tokenizer/a1_bpe_tokenizer.ipynb"
    ours = [line for line, src in answers.items() if src == a1]
    quoted = next(line for line in ours if '"' in line)
    hidden = next(line for line in ours if line.startswith("assert "))
    run = [quoted, hidden, *[line for line in ours if line not in (quoted, hidden)][: pub.MIN_ANSWER_RUN - 2]]
    copy = tmp_path / "planted"
    shutil.copytree(tree, copy)
    target = copy / where
    if where.endswith(".ipynb"):
        nb = nbformat.read(target, as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell("def f():\n" + "\n".join("    " + line for line in run)))
        nbformat.write(nb, target)
    else:
        target.write_text(target.read_text() + "\n" + "\n".join(run) + "\n")
    before = set(pub.leaks(files, answers))
    new = set(pub.leaks(pub.read_tree(copy), answers)) - before
    assert {line.split(": ", 2)[-1] for line in new} == set(run)
    assert all(line.startswith(where + ":") for line in new)


def test_scanner_reports_a_planted_marker_and_a_whole_solution_cell(tree, tmp_path, answers):
    copy = tmp_path / "planted"
    shutil.copytree(tree, copy)
    source = nbformat.read(ROOT / "solutions/a4_dpo/a4_dpo.ipynb", as_version=4)
    written = next(c for c in source.cells if c.cell_type == "markdown" and
                   c.metadata.get("nbgrader", {}).get("solution"))
    nb_path = copy / "assignments/a4_dpo/a4_dpo.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell(written.source))  # the mark scheme, markers and all
    nbformat.write(nb, nb_path)
    found = pub.leaks(pub.read_tree(copy), answers)
    assert any("marker BEGIN MARK SCHEME" in f for f in found)
    assert any("line of solutions/a4_dpo/a4_dpo.ipynb" in f for f in found)


# ---- links, environment files, package -----------------------------------------------------------

def test_every_badge_opens_its_own_notebook_in_the_student_repo(tree, files):
    notebooks = sorted(p for p in files if p.endswith(".ipynb"))
    assert len(notebooks) >= 10
    for rel in notebooks:
        nb = nbformat.reads(files[rel].decode(), as_version=4)
        assert COLAB_LINK.findall(nb.cells[0].source) == [colab_url(rel)], rel
        assert f"/github/{STUDENT_REPO}/blob/" in colab_url(rel)
        assert f'COURSE_REPO = os.environ.get("COURSE_REPO", "{clone_url()}")' in nb.cells[1].source, rel
        assert clone_url() == f"https://github.com/{STUDENT_REPO}"
    readme = files["README.md"].decode()
    linked = COLAB_LINK.findall(readme)
    assert sorted(linked) == sorted(colab_url(rel) for rel in notebooks)  # every notebook, once


def test_readme_and_environment_files_name_only_files_of_the_tree(files):
    readme = files["README.md"].decode()
    named = set(re.findall(r"`([\w./-]+\.(?:txt|yml|toml|ipynb))`", readme))
    assert {"environment.yml", "requirements-gpu.txt"} <= named
    assert all(n in files or any(p.endswith("/" + n) for p in files) for n in named), named
    for phrase in ("pip install -e .", "jupyter lab", "conda env create -f environment.yml", "Download .ipynb"):
        assert phrase in readme
    for path in ("environment.yml", "requirements-gpu.txt", "requirements-dev.txt"):
        for include in re.findall(r"-r\s+(\S+)", files[path].decode()):
            assert include in files, f"{path} includes {include}, absent from the tree"


def test_student_pyproject_builds_a_wheel_of_helpers_only(tree, tmp_path):
    source = tmp_path / "src"
    shutil.copytree(tree, source)  # the build writes build/ and *.egg-info beside the sources
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(tmp_path / "wheels"), str(source)], check=True)
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"helpers"}
    assert {n for n in names if n.startswith("helpers/")} == _source_helpers()  # modules + templates + data


# ---- publish: deterministic, and its refusals ----------------------------------------------------

def test_the_tree_is_a_pure_function_of_the_sources(files):
    assert pub.student_files(ROOT) == files
    assert b"\r" not in files["README.md"] and json.dumps(sorted(files)) == json.dumps(list(files))


def test_refuses_an_out_dir_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert pub.main(["--out", str(out)]) == 2
    assert "not a previous publish output" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_replaces_its_own_output_but_keeps_git(tree, tmp_path):
    out = tmp_path / "student"
    shutil.copytree(tree, out)
    (out / ".git").mkdir()
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (out / "lectures" / "99_removed_since.ipynb").write_text("{}")
    pub.check_out_dir(out)  # has the marker: no refusal
    pub.write_tree(pub.student_files(ROOT), out)
    assert pub.read_tree(out) == pub.student_files(ROOT)
    assert (out / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"


def _scratch_course(tmp_path: Path) -> Path:
    root = tmp_path / "course"
    for name in ("solutions", "assignments", "lectures", "helpers"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "build"))
    for name in (*pub.TOP_FILES, "pyproject.toml"):
        shutil.copy(ROOT / name, root / name)
    return root


@pytest.mark.slow
def test_refuses_a_stale_release_and_writes_nothing(tmp_path, capsys):
    root = _scratch_course(tmp_path)
    stale = root / "assignments/a3_lora_arithmetic/a3_lora_arithmetic.ipynb"
    nb = nbformat.read(stale, as_version=4)
    nb.cells[3].source += "\n\nAn edit made in assignments/ instead of solutions/."
    nbformat.write(nb, stale)
    out = tmp_path / "out"
    assert pub.main(["--root", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "make release" in err and "a3_lora_arithmetic/a3_lora_arithmetic.ipynb" in err
    assert not out.exists()
    assert not (root / "build").exists(), "the release check must not write into the course (gradebook)"


@pytest.mark.slow
def test_make_publish_end_to_end(tmp_path, capsys):
    out = tmp_path / "student"
    assert pub.main(["--out", str(out)]) == 0, capsys.readouterr().err
    assert pub.read_tree(out) == pub.student_files(ROOT)
    assert pub.main(["--out", str(out)]) == 0  # its own output: replaced, same bytes
    assert pub.read_tree(out) == pub.student_files(ROOT)


def test_publish_workflow_pushes_to_the_student_repo_from_the_instructor_repo_only():
    """The workflow's repository guard and push target are the two constants of course.links."""
    import yaml

    from course.links import BRANCH

    workflow = yaml.safe_load((ROOT / ".github/workflows/publish.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as True
    assert triggers == {"push": {"tags": ["v*"]}}, "publish on version tags only (never on pull requests)"
    (job,) = workflow["jobs"].values()
    assert job["if"] == f"github.repository == '{INSTRUCTOR_REPO}'"
    assert job["env"] == {"STUDENT_REPO": STUDENT_REPO, "STUDENT_BRANCH": BRANCH}
    runs = [step.get("run", "") for step in job["steps"]]
    assert any(r.strip() == "make publish" for r in runs)
    uses_secret = [s["name"] for s in job["steps"] if "secrets." in json.dumps(s)]
    assert uses_secret == ["Push to the student repository"], "the deploy key reaches the push step only"
