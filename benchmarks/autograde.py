"""Autograde time per notebook-submission: the solution of every assignment, graded like `make grade`.

A scratch copy of the course gets one student per assignment whose submission is the solution; each is
autograded twice (the first run also warms the disk cache). Prints nbgrader's autograde seconds per
notebook and the total per submission (checks + autograde + feedback). Goal: autograde <= 5 s.

    $ python -m benchmarks autograde
    assignment                  autograde s   total s   score
    a1_bpe_tokenizer                    3.6       4.1   20/20
    ...
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

GOAL_SECONDS = 5.0


def measure(repeats: int = 2) -> list[tuple[str, float, float, str]]:
    """(assignment, best autograde seconds, best total seconds, score) for each solution."""
    from course.grading import assignment_ids, grade_class, release
    from course.grading_course import REPO_ROOT

    with tempfile.TemporaryDirectory(prefix="bench-autograde-") as tmp:
        root = Path(tmp)
        shutil.copytree(REPO_ROOT / "solutions", root / "solutions")
        release(root)
        for aid in assignment_ids(root):
            folder = root / "submitted" / "bench" / aid
            folder.mkdir(parents=True)
            shutil.copy(root / "solutions" / aid / f"{aid}.ipynb", folder)
        runs = [grade_class(root) for _ in range(repeats)]
    results = []
    for rows in zip(*runs):
        results.append((rows[0].assignment, min(r.autograde_seconds for r in rows),
                        min(r.seconds for r in rows), f"{rows[-1].score:g}/{rows[-1].max_score:g}"))
    return results


def format_table(results) -> str:
    lines = [f"{'assignment':<26} {'autograde s':>11} {'total s':>9}   score"]
    lines += [f"{aid:<26} {auto:>11.1f} {total:>9.1f}   {score}" for aid, auto, total, score in results]
    mean = statistics.mean(auto for _, auto, _, _ in results)
    lines.append(f"mean autograde per notebook-submission: {mean:.1f} s (goal <= {GOAL_SECONDS:g} s)")
    return "\n".join(lines)


def main() -> int:
    print(format_table(measure()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
