"""Where a course lives on disk, its nbgrader configuration, and the release step.

The configuration is `nbgrader_config.py` at the repository root (what `nbgrader` and formgrader read);
`course_config(root)` loads that file and re-points every directory at `root`, so the tests and the
benchmark grade a scratch copy of the course with exactly the instructor's settings.

Worked example:

>>> cfg = course_config("/tmp/course", timeout=5)
>>> cfg.CourseDirectory.db_url, cfg.Execute.timeout
('sqlite:////tmp/course/build/gradebook.db', 5)
>>> assignment_ids(REPO_ROOT)[:1]
['a1_bpe_tokenizer']
"""

from __future__ import annotations

import filecmp
import os
import shutil
import sys
import tempfile
from pathlib import Path

from traitlets.config import Config, PyFileConfigLoader

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILE = REPO_ROOT / "nbgrader_config.py"


def course_config(root: str | os.PathLike = REPO_ROOT, *, timeout: int | None = None,
                  release_directory: str | None = None) -> Config:
    """`nbgrader_config.py`, with the course moved to `root` (and optionally a shorter cell timeout)."""
    root = Path(root).resolve()
    cfg = PyFileConfigLoader(CONFIG_FILE.name, path=str(REPO_ROOT)).load_config()
    cfg.CourseDirectory.root = str(root)
    cfg.CourseDirectory.db_url = "sqlite:///" + str(root / "build" / "gradebook.db")
    if release_directory is not None:
        cfg.CourseDirectory.release_directory = release_directory
    if timeout is not None:
        cfg.Execute.timeout = timeout
    return cfg


def assignment_ids(root: str | os.PathLike = REPO_ROOT) -> list[str]:
    """Assignments = folders of solutions/ holding a notebook, sorted."""
    source = Path(root) / "solutions"
    return sorted(p.name for p in source.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def nbgrader_api(cfg: Config):
    """An `NbGraderAPI` for `cfg` (its `build/` folder created first: the gradebook lives there)."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    Path(cfg.CourseDirectory.root, "build").mkdir(parents=True, exist_ok=True)
    _put_interpreter_on_path()  # a new gradebook runs `alembic` from PATH
    return NbGraderAPI(CourseDirectory(config=cfg), config=cfg)


def _put_interpreter_on_path() -> None:
    """Make the tools installed next to this Python (alembic, jupyter) findable when PATH lacks .venv/bin."""
    bin_dir = os.path.dirname(sys.executable)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


class ReleaseError(RuntimeError):
    """`nbgrader generate_assignment` failed; the message holds its log."""


def release(root: str | os.PathLike = REPO_ROOT, release_directory: str = "assignments") -> list[Path]:
    """Generate the student version of every assignment into `<root>/<release_directory>/`.

    Also (re)records each assignment's cells in the gradebook, which `autograde` needs to restore
    test cells. The output is a pure function of solutions/: nbgrader writes no timestamps into
    notebooks, and `normalize_release` fixes what is left (key order, trailing newline).
    """
    api = nbgrader_api(course_config(root, release_directory=release_directory))
    written = []
    for aid in assignment_ids(root):
        result = api.generate_assignment(aid, force=True, create=True)
        if not result["success"]:
            raise ReleaseError(f"generate_assignment {aid} failed:\n{result['error']}\n{result['log']}")
        out_dir = Path(root) / release_directory / aid
        for nb_path in sorted(out_dir.glob("*.ipynb")):
            normalize_release(nb_path, f"solutions/{aid}/{nb_path.name}", f"assignments/{aid}/{nb_path.name}")
            written.append(nb_path)
    return written


def normalize_release(path: Path, source_rel: str, release_rel: str) -> None:
    """Rewrite a released notebook canonically: no outputs, and its Colab badge pointing at itself.

    The badge is written for the released path even when releasing into a scratch folder, so a
    check release compares equal to the committed one.
    """
    import nbformat

    from .links import colab_url

    nb = nbformat.read(path, as_version=4)
    if nb.cells and nb.cells[0].cell_type == "markdown":
        nb.cells[0].source = nb.cells[0].source.replace(colab_url(source_rel), colab_url(release_rel))
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")


def stale_release(root: str | os.PathLike = REPO_ROOT) -> list[str]:
    """Files where a fresh release differs from the committed assignments/ ([] = up to date).

    Runs `release` into a scratch folder under `<root>/build/`, which also refreshes the gradebook.
    """
    scratch = Path(tempfile.mkdtemp(prefix="release-check-", dir=_build_dir(root)))
    try:
        release(root, release_directory=os.path.relpath(scratch, root))
        return _tree_differences(scratch, Path(root) / "assignments")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _build_dir(root) -> Path:
    path = Path(root) / "build"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _tree_differences(fresh: Path, committed: Path) -> list[str]:
    names = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
    names |= {p.relative_to(committed) for p in committed.rglob("*") if p.is_file()} if committed.exists() else set()
    return sorted(str(n) for n in names
                  if not ((fresh / n).is_file() and (committed / n).is_file()
                          and filecmp.cmp(fresh / n, committed / n, shallow=False)))
