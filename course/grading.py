"""Instructor commands: `python -m course release` and `python -m course grade`.

release  regenerate assignments/ from solutions/ (nbgrader generate_assignment; reproducible byte for
         byte, so the committed assignments/ can be checked against a fresh release).
grade    check assignments/ is what solutions/ releases, then autograde every
         submitted/<student>/<aid>/, generate feedback (build/feedback/, hidden tests removed), and
         write build/grades.csv. Problems are printed as `student / assignment / cell: reason`.

Worked example (after collecting submissions into submitted/):

    $ make grade
    alice   a1_bpe_tokenizer   20/20  graded
    bob     a1_bpe_tokenizer    6/20  graded  test_encode_decode: AssertionError: ...
    wrote build/grades.csv (2 submissions)

The Python API is re-exported here: `release`, `stale_release`, `grade_class`, `write_grades_csv`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .grading_autograde import GradeRow, Problem, grade_class, write_grades_csv
from .grading_course import REPO_ROOT, assignment_ids, course_config, release, stale_release

__all__ = ["GradeRow", "Problem", "assignment_ids", "course_config", "grade_class", "release",
           "stale_release", "write_grades_csv", "format_row", "main"]


def format_row(row: GradeRow) -> str:
    """One line per submission: `student  assignment  score/max  status  problems`."""
    text = f"{row.student:<12} {row.assignment:<26} {row.score:>5g}/{row.max_score:<4g} {row.status}"
    if row.needs_manual_grade:
        text += " (+ manual grading)"
    return text + "".join(f"\n    {row.student} / {row.assignment} / {p}" for p in row.problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="course root (default: this repository)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("release", help="regenerate assignments/ from solutions/")
    grade = sub.add_parser("grade", help="autograde submitted/, feedback, build/grades.csv")
    grade.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: nbgrader_config.py)")
    grade.add_argument("--student", action="append", help="only these students (repeatable)")
    grade.add_argument("--assignment", action="append", help="only these assignments (repeatable)")
    grade.add_argument("--allow-stale", action="store_true",
                       help="grade even if assignments/ differs from a fresh release of solutions/")
    args = parser.parse_args(argv)

    if args.command == "release":
        for path in release(args.root):
            print(f"released {path.relative_to(args.root)}")
        return 0

    stale = stale_release(args.root)  # also records every assignment in the gradebook
    if stale and not args.allow_stale:
        print("assignments/ is not what solutions/ releases (run `make release` and commit), differing: "
              + ", ".join(stale), file=sys.stderr)
        return 2
    rows = grade_class(args.root, timeout=args.timeout, students=args.student,
                       assignments=args.assignment, progress=lambda row: print(format_row(row), flush=True))
    out = write_grades_csv(rows, args.root / "build" / "grades.csv")
    print(f"wrote {out.relative_to(args.root)} ({len(rows)} submissions; feedback in build/feedback/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
