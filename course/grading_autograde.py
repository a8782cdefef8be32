"""Autograde a class: every submission in a child process with a deadline, N at a time, never lost.

Each submission `submitted/<student>/<aid>/` is graded by `course.grading_worker` in a process of its
own (kernel in the sandbox, `RobustExecute`: a kernel-killing cell costs that cell only). As each one
finishes, the batch merges its grades into `build/gradebook.db` (manual scores kept), moves its
feedback page (the HTML only) to `build/feedback/`, and rewrites `build/grades.csv` atomically, so a
batch that dies leaves every finished row and marks the rest `pending`. A failed (re-)grade records
the failure and a score of 0, never the previous score. `--shard K/N` grades a deterministic slice
(by a hash of the student id, so a student's assignments stay together).

Worked example (the row of a submission whose kernel died in one cell):

>>> row = GradeRow("alice", "a1_bpe_tokenizer", 7.0, 20.0, status="graded",
...                problems=[Problem("test_merge", "GraderError: the kernel died while running this cell")])
>>> row.csv_row()["reason"]
'test_merge: GraderError: the kernel died while running this cell'
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .grading_course import REPO_ROOT, assignment_ids, course_config, nbgrader_api
from .grading_normalize import validate_student_id
from .grading_preprocessors import clean_text

CSV_FIELDS = ["student", "assignment", "score", "max_score", "needs_manual_grade", "status", "reason",
              "notes", "flags", "backend"]


@dataclasses.dataclass
class Problem:
    """Something wrong in one cell (`cell` is its grade_id, or `cell <n>` for an ungraded cell)."""

    cell: str
    reason: str

    def __post_init__(self):  # whatever a student wrote reaches the console and CSV as plain text
        self.cell, self.reason = clean_text(self.cell), clean_text(self.reason)

    def __str__(self) -> str:
        return f"{self.cell}: {self.reason}"


@dataclasses.dataclass
class GradeRow:
    student: str
    assignment: str
    score: float
    max_score: float
    needs_manual_grade: bool = False
    status: str = "graded"  # graded | flagged | not-a-notebook | missing | failed | invalid-id | pending
    problems: list[Problem] = dataclasses.field(default_factory=list)  # what cost points, by cell
    seconds: float = 0.0  # wall time of everything for this submission (checks, autograde, feedback)
    autograde_seconds: float = 0.0  # nbgrader autograde alone
    notes: list[str] = dataclasses.field(default_factory=list)  # repaired or ignored, no points lost
    flags: list[str] = dataclasses.field(default_factory=list)  # integrity: for the instructor to review
    backend: str = ""  # sandbox that ran the kernel: unshare | docker | podman | none

    def __post_init__(self):
        self.problems = [p if isinstance(p, Problem) else Problem(**p) for p in self.problems]
        self.notes = [clean_text(n) for n in self.notes]
        self.flags = [clean_text(f) for f in self.flags]

    def csv_row(self) -> dict:
        return {"student": self.student, "assignment": self.assignment, "score": f"{self.score:g}",
                "max_score": f"{self.max_score:g}", "needs_manual_grade": str(self.needs_manual_grade).lower(),
                "status": self.status, "reason": _cell("; ".join(map(str, self.problems))),
                "notes": _cell("; ".join(self.notes)), "flags": _cell("; ".join(self.flags)),
                "backend": self.backend}


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text (never runs `=...` as a formula)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


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


def stderr_notes(autograded: Path) -> list[str]:
    """A note for each passing test cell that wrote to stderr (stderr never costs points)."""
    import nbformat

    from .grading_preprocessors import is_test_cell

    notes = []
    for cell in nbformat.read(autograded, as_version=4).cells:
        if is_test_cell(cell) and not any(o.get("output_type") == "error" for o in cell.outputs) \
                and any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in cell.outputs):
            notes.append(f"{cell.metadata['nbgrader']['grade_id']}: wrote to stderr (warnings, progress bars, "
                         "debug prints): ignored, only an exception fails a test")
    return notes


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
    """Record a submission that could not be graded: every automatic grade 0 (manual scores kept)."""
    with warnings.catch_warnings():  # SQLAlchemy autoflush chatter from nbgrader's own models
        warnings.simplefilter("ignore")
        gb.update_or_create_student(student)
        gb.update_or_create_submission(aid, student)
        for notebook in gb.find_submission(aid, student).notebooks:
            for grade in notebook.grades:
                grade.auto_score = 0
                grade.needs_manual_grade = grade.manual_score is not None
        gb.db.commit()


def merge_submission(source_db: str, target_db: str, course_id: str, student: str, aid: str) -> None:
    """Copy one submission's automatic grades, comments and late penalty from `source_db` into `target_db`.

    Manual scores already in `target_db` are kept (nbgrader then marks the grade for review), so a
    re-grade never undoes a human's work.
    """
    from nbgrader.api import Gradebook

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Gradebook(source_db, course_id) as src, Gradebook(target_db, course_id) as dst:
            sub = src.find_submission(aid, student)
            dst.update_or_create_student(student)
            dst.update_or_create_submission(aid, student, timestamp=sub.timestamp)
            for nb in sub.notebooks:
                target = dst.find_submission_notebook(nb.name, aid, student)
                target.late_submission_penalty = nb.late_submission_penalty
                for grade in nb.grades:
                    mine = dst.find_grade(grade.name, nb.name, aid, student)
                    mine.auto_score = grade.auto_score
                    mine.needs_manual_grade = bool(grade.needs_manual_grade) or mine.manual_score is not None
                for comment in nb.comments:
                    dst.find_comment(comment.name, nb.name, aid, student).auto_comment = comment.auto_comment
            dst.db.commit()


def _scores(db_url: str, course_id: str, student: str, aid: str) -> tuple[float, float, bool]:
    from nbgrader.api import Gradebook

    with Gradebook(db_url, course_id) as gb:
        sub = gb.find_submission(aid, student)
        late = float(sub.late_submission_penalty or 0)  # nbgrader keeps the penalty apart from the score
        return max(0.0, float(sub.score) - late), float(sub.max_score), bool(sub.needs_manual_grade)


def find_submissions(root: str | os.PathLike, assignments: list[str]) -> list[tuple[str, str]]:
    """(student, assignment) for every `submitted/<student>/<aid>/` folder of a known assignment."""
    submitted = Path(root) / "submitted"
    if not submitted.is_dir():
        return []
    return sorted((s.name, a) for s in submitted.iterdir() if s.is_dir()
                  for a in assignments if (s / a).is_dir())


def shard_of(student: str, shards: int) -> int:
    """Which of `shards` slices grades `student` (0-based; stable across machines and runs).

    >>> [shard_of(s, 3) for s in ("alice", "bob", "carol", "dave")]
    [2, 2, 2, 2]
    """
    return zlib.crc32(student.encode("utf-8")) % shards


def parse_shard(text: str) -> tuple[int, int]:
    """`"K/N"` (1 <= K <= N) -> (K, N).

    >>> parse_shard("2/4")
    (2, 4)
    """
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise ValueError(f"--shard must be K/N with 1 <= K <= N, got {text!r}")
    return int(k), int(n)


def default_deadline(timeout: int) -> int:
    """Seconds one submission may take in all (kernel starts, re-runs after broken cells, feedback)."""
    return max(300, 20 * timeout)


class _Batch:
    """What the threads of one grade_class call share: the gradebook lock, the rows, the CSV."""

    def __init__(self, root: Path, cfg, csv_path: Path | None, planned: list[tuple[str, str]], replace_all: bool,
                 progress):
        self.root, self.db_url, self.course_id = root, cfg.CourseDirectory.db_url, cfg.CourseDirectory.course_id
        self.csv_path, self.progress, self.lock = csv_path, progress, threading.Lock()
        self.done: dict[tuple[str, str], GradeRow] = {}
        self.keep = [] if replace_all or csv_path is None else \
            [r for r in read_grades_csv(csv_path) if (r["student"], r["assignment"]) not in set(planned)]
        self.planned = planned

    def record(self, row: GradeRow, work: Path | None) -> None:
        """Merge one finished submission into the course (under the lock) and rewrite grades.csv."""
        from nbgrader.api import Gradebook

        with self.lock:
            key = (row.student, row.assignment)
            worker_db = work / "course" / "build" / "gradebook.db" if work else None
            if any("nbgrader markers" in f for f in row.flags):
                row.notes.append(f"held at 0 for review ({row.status}: {row.score:g}/{row.max_score:g})")
                row.status = "flagged"
            if row.status == "graded" and worker_db and worker_db.exists():
                merge_submission("sqlite:///" + str(worker_db), self.db_url, self.course_id, *key)
                row.score, row.max_score, row.needs_manual_grade = _scores(self.db_url, self.course_id, *key)
                with Gradebook(self.db_url, self.course_id) as gb:
                    sub = gb.find_submission(row.assignment, row.student)
                    if sub.total_seconds_late > 0:
                        row.notes.append(f"submitted {sub.total_seconds_late / 3600:.1f} h after the due date "
                                         f"(late penalty {float(sub.late_submission_penalty or 0):g})")
                self._publish(work, *key)
            elif row.status != "invalid-id":
                with Gradebook(self.db_url, self.course_id) as gb:
                    _zero_submission(gb, row.assignment, row.student)
                row.score = 0.0
                self._publish(None, *key)
            self.done[key] = row
            if self.csv_path is not None:
                pending = [GradeRow(s, a, 0.0, 0.0, status="pending") for s, a in self.planned if (s, a) not in self.done]
                write_grades_csv([*self.keep, *self.done.values(), *pending], self.csv_path)
                if self.csv_path == self.root / "build" / "grades.csv":
                    from .grading_integrity import record_state

                    record_state(self.root)  # so that only changes made outside the grader count as drift
            if self.progress:
                self.progress(row)

    def _publish(self, work: Path | None, student: str, aid: str) -> None:
        """Replace build/feedback/<student>/<aid>/ (HTML only) and build/autograded/<student>/<aid>/."""
        for kind, pattern in (("feedback", "*.html"), ("autograded", "*.ipynb")):
            target = self.root / "build" / kind / student / aid
            fresh = target.parent / f".{aid}.new"
            shutil.rmtree(fresh, ignore_errors=True)
            fresh.mkdir(parents=True)
            if work is not None:
                for path in (work / "course" / "build" / kind / student / aid).glob(pattern):
                    if path.is_file() and not path.is_symlink():
                        shutil.copyfile(path, fresh / path.name)
            old = target.parent / f".{aid}.old"
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                target.rename(old)
            fresh.rename(target)
            shutil.rmtree(old, ignore_errors=True)


def _run_worker(batch: _Batch, job: dict, deadline: int) -> tuple[GradeRow, Path]:
    """Grade one submission in a child process (own session) and wait at most `deadline` seconds."""
    import signal

    work = Path(job["work"])
    (work / "course" / "build").mkdir(parents=True)
    with batch.lock:  # a consistent copy: nobody writes the gradebook while it is copied
        shutil.copyfile(Path(batch.db_url.removeprefix("sqlite:///")), work / "course" / "build" / "gradebook.db")
    (work / "job.json").write_text(json.dumps(job), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    env.pop("JPY_PARENT_PID", None)
    with open(work / "worker.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "course.grading_worker", str(work / "job.json")],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=work, env=env, start_new_session=True)
        try:
            code = proc.wait(timeout=deadline)
            why = None
        except subprocess.TimeoutExpired:
            why = f"grading took longer than the deadline of {deadline} s; it was stopped with all its processes"
            code = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever the worker left behind in its session
            except ProcessLookupError:
                pass
            proc.wait()
    student, aid = job["student"], job["assignment"]
    result = work / "result.json"
    if why is None and code == 0 and result.is_file():
        return GradeRow(**json.loads(result.read_text(encoding="utf-8"))), work
    if why is None:
        tail = [ln for ln in (work / "worker.log").read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        why = f"the grading process died ({how})" + (f": {tail[-1][:200]}" if tail else "")
    row = GradeRow(student, aid, 0.0, 0.0, status="failed", problems=[Problem("(grader)", why)],
                   backend=job["backend"] or "none")
    return row, work


def grade_class(root: str | os.PathLike = REPO_ROOT, *, timeout: int | None = None,
                students: list[str] | None = None, assignments: list[str] | None = None,
                progress=None, jobs: int | None = None, shard: tuple[int, int] | None = None,
                sandbox: str | None = "auto", deadline: int | None = None,
                csv_path: str | os.PathLike | None = "build/grades.csv") -> list[GradeRow]:
    """Grade the submissions under `<root>/submitted/` (or those of `students` / `assignments`).

    Returns one row per submission graded. `jobs` submissions at once (default: the cores); `shard`
    (K, N) grades slice K of N; `sandbox` is "auto" (the first backend that works, NoSandbox if none),
    a backend name, or None (no sandbox: trusted submissions only). `csv_path` (relative to root)
    is rewritten after every submission; a run limited to some students/assignments/a shard keeps
    the other rows. The gradebook must already know the assignments (`stale_release` or `release`).
    """
    from .sandbox import require_backend

    root = Path(root).resolve()
    cfg = course_config(root, timeout=timeout)
    nbgrader_api(cfg)  # creates build/ and, if needed, the gradebook
    backend = None if sandbox in (None, "none") else require_backend(None if sandbox == "auto" else sandbox)
    for student in students or []:
        validate_student_id(student)
    wanted = assignments or assignment_ids(root)
    planned, invalid = [], []
    for student, aid in find_submissions(root, wanted):
        if students and student not in students:
            continue
        if shard and shard_of(student, shard[1]) != shard[0] - 1:
            continue
        try:
            validate_student_id(student)
            planned.append((student, aid))
        except ValueError as err:
            invalid.append(GradeRow(student, aid, 0.0, 0.0, status="invalid-id",
                                    problems=[Problem("(student id)", str(err))], backend=backend or "none"))
    csv_file = None if csv_path is None else root / csv_path
    batch = _Batch(root, cfg, csv_file, planned, replace_all=not (students or assignments or shard), progress=progress)
    for row in invalid:
        batch.record(row, None)
    cell_timeout = int(cfg.Execute.timeout)
    limit = deadline or default_deadline(cell_timeout)
    work_root = root / "build" / ".grading"
    work_root.mkdir(parents=True, exist_ok=True)
    cache = _sandbox_cache(work_root) if backend else None

    def one(key: tuple[str, str]) -> GradeRow:
        student, aid = key
        work = Path(tempfile.mkdtemp(prefix=f"{student}-{aid}-", dir=work_root))
        job = {"root": str(root), "student": student, "assignment": aid, "work": str(work),
               "timeout": cell_timeout, "backend": backend, "helpers": str(REPO_ROOT / "helpers"),
               "cache": str(cache) if cache else None}
        try:
            row, _ = _run_worker(batch, job, limit)
        except Exception as err:  # noqa: BLE001 - a bug here must not stop the other students
            row = GradeRow(student, aid, 0.0, 0.0, status="failed",
                           problems=[Problem("(grader)", f"{type(err).__name__}: {err}")], backend=backend or "none")
        try:
            batch.record(row, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return row

    with ThreadPoolExecutor(max_workers=max(1, jobs or os.cpu_count() or 1)) as pool:
        rows = list(pool.map(one, planned))
    return invalid + rows


def _sandbox_cache(work_root: Path) -> Path:
    """A world-readable copy of the tiny-model cache, every stand-in built first (the kernel cannot write)."""
    from helpers.models import MODELS
    from helpers.tiny import build_tiny_model, cache_root

    for spec in MODELS.values():
        try:
            build_tiny_model(spec)
        except Exception:  # noqa: BLE001 - a model a notebook does not use may not build here; it fails there
            pass
    target = work_root / "cache"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(cache_root(), target, ignore=shutil.ignore_patterns(".tmp*", "*.lock"))
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def write_grades_csv(rows: list[GradeRow] | list[dict], path: str | os.PathLike) -> Path:
    """Write `rows` (GradeRows or CSV dicts) sorted by student then assignment, atomically.

    Same grades -> same bytes: re-grading is idempotent. The file is replaced in one step, so a reader
    (or a batch killed mid-write) sees the old table or the new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = [r.csv_row() if isinstance(r, GradeRow) else r for r in rows]
    fd, tmp = tempfile.mkstemp(prefix=".grades-", suffix=".csv", dir=path.parent)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore", restval="")
        writer.writeheader()
        for row in sorted(table, key=lambda r: (r["student"], r["assignment"])):
            writer.writerow(row)
    os.replace(tmp, path)
    return path


def read_grades_csv(path: str | os.PathLike) -> list[dict]:
    """The rows of an existing grades.csv ([] if there is none)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
