"""Before grading: is everything the grade depends on what the instructor committed?

`drift(root)` lists what differs, each with the reason; `python -m course grade` refuses to grade
while the list is not empty, unless `--allow-stale`:
- `assignments/` is not what a fresh release of `solutions/` gives (stale release);
- uncommitted changes (or untracked files) in `solutions/` (hidden tests), `assignments/`,
  `nbgrader_config.py` or the grader code `course/`, in the course and in the code that runs;
- `build/gradebook.db` or `build/grades.csv` changed since the grader last wrote them (planted
  scores): `record_state` stores their SHA-256 after every run.

>>> _digest(Path("/nonexistent"))
'absent'
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from .grading_course import REPO_ROOT, stale_release

TRACKED = ("solutions", "assignments", "nbgrader_config.py", "course")
STATE_FILE = ".grading-state.json"  # in build/
STATE_OF = ("gradebook.db", "grades.csv")


def _digest(path: Path) -> str:
    if not path.is_file():
        return "absent"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record_state(root: str | Path) -> None:
    """Remember the gradebook and grades.csv as the grader left them."""
    build = Path(root) / "build"
    state = {name: _digest(build / name) for name in STATE_OF}
    (build / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")


def changed_outputs(root: str | Path) -> list[str]:
    """Grading outputs changed since `record_state` (nothing recorded yet: nothing to compare)."""
    build = Path(root) / "build"
    try:
        state = json.loads((build / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [f"build/{name} changed since the last grading run (edited by hand or by a submission?)"
            for name in STATE_OF if state.get(name) != _digest(build / name)]


def uncommitted(repo: Path, paths=TRACKED) -> list[str]:
    """`git status` lines for `paths` in `repo` ([] when clean, or when `repo` is not a git work tree)."""
    try:
        top = subprocess.run(["git", "-C", str(repo), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=30)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != repo.resolve():
            return []
        out = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", *paths],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in out.splitlines() if line.strip()]


def drift(root: str | Path = REPO_ROOT, code_root: Path = REPO_ROOT) -> list[str]:
    """Why grading `root` now would not use what was committed ([] = go ahead). Refreshes the gradebook."""
    root = Path(root).resolve()
    outputs = changed_outputs(root)  # first: the release check below rewrites the gradebook
    reasons = list(outputs)
    reasons += [f"assignments/{name} is not what solutions/ releases (run `make release` and commit)"
                for name in stale_release(root)]
    for repo in dict.fromkeys([root, code_root.resolve()]):
        reasons += [f"uncommitted change in {repo}: {line}" for line in uncommitted(repo)]
    if not outputs:
        record_state(root)  # the release check rewrote the gradebook's copy of the assignments: that is ours
    return reasons
