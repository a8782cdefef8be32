"""Autograde throughput on a class: seconds per submission with 1 job and with all cores, sandbox on.

A scratch copy of the course gets a class of >= 40 submissions (every assignment: the solution's
answers in the student notebook, and the blank release, round-robin over students), graded like
`make grade` (sandboxed, each submission in its own process) once with `jobs=1` and once with
`jobs=os.cpu_count()`. Prints wall seconds per submission for each, the speed-up, and the mean
nbgrader autograde time per submission. Figures, not checks: nothing here asserts a time.

    $ python -m benchmarks autograde        # this 2-core shared CPU box, 2026-11-25
    class: 40 submissions, sandbox unshare, 2 cores
    jobs   wall s  s/submission  mean autograde s
       1    224.1          5.60              2.10
       2    150.5          3.76              2.64
    speed-up with 2 jobs: 1.5x
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

CLASS_SIZE = 40


def build_class(root: Path, size: int = CLASS_SIZE) -> int:
    """Release the course into `root` and submit `size` notebooks; returns how many."""
    import nbformat

    from course.grading import assignment_ids, release
    from course.grading_course import REPO_ROOT
    from course.grading_normalize import answered_release

    shutil.copytree(REPO_ROOT / "solutions", root / "solutions", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    release(root)
    aids = assignment_ids(root)
    kinds = {}
    for aid in aids:
        released = nbformat.read(root / "assignments" / aid / f"{aid}.ipynb", as_version=4)
        solution = nbformat.read(root / "solutions" / aid / f"{aid}.ipynb", as_version=4)
        kinds[aid] = [answered_release(released, solution), released]
    for i in range(size):
        aid = aids[i % len(aids)]
        folder = root / "submitted" / f"student{i // len(aids):03d}" / aid
        folder.mkdir(parents=True)
        nbformat.write(kinds[aid][(i // len(aids)) % 2], folder / f"{aid}.ipynb")
    return size


def measure(size: int = CLASS_SIZE, jobs_list: tuple[int, ...] | None = None) -> list[dict]:
    """One dict per jobs setting: jobs, wall seconds, seconds per submission, mean autograde seconds."""
    from course.grading import grade_class

    jobs_list = jobs_list or tuple(sorted({1, os.cpu_count() or 1}))
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-autograde-") as tmp:
        root = Path(tmp)
        n = build_class(root, size)
        for jobs in jobs_list:
            start = time.perf_counter()
            rows = grade_class(root, jobs=jobs)
            wall = time.perf_counter() - start
            bad = [r for r in rows if r.status != "graded"]
            results.append({"jobs": jobs, "wall": wall, "per_submission": wall / n, "submissions": n,
                            "autograde": statistics.mean(r.autograde_seconds for r in rows),
                            "backend": rows[0].backend if rows else "-", "not_graded": len(bad)})
    return results


def format_table(results: list[dict]) -> str:
    first = results[0]
    lines = [f"class: {first['submissions']} submissions, sandbox {first['backend']}, {os.cpu_count()} cores",
             f"{'jobs':>4} {'wall s':>8} {'s/submission':>13} {'mean autograde s':>17}"]
    lines += [f"{r['jobs']:>4} {r['wall']:>8.1f} {r['per_submission']:>13.2f} {r['autograde']:>17.2f}"
              + (f"   ({r['not_graded']} not graded!)" if r["not_graded"] else "") for r in results]
    if len(results) > 1:
        lines.append(f"speed-up with {results[-1]['jobs']} jobs: {results[0]['wall'] / results[-1]['wall']:.1f}x")
    return "\n".join(lines)


def main() -> int:
    results = measure()
    print(format_table(results), flush=True)
    return 1 if any(r["not_graded"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
