"""Instructor commands: `python -m course release`, `python -m course grade [merge]`.

release      regenerate assignments/ from solutions/ (nbgrader generate_assignment; reproducible byte
             for byte, so the committed assignments/ can be checked against a fresh release).
grade        refuse if anything the grades depend on drifted from what is committed (`--allow-stale`
             overrides), then autograde every submitted/<student>/<aid>/ in a sandbox (`--jobs N` at
             once, `--shard K/N` for a slice), feedback pages in build/feedback/ (HTML only, hidden tests
             removed), build/grades.csv rewritten as results come. Problems print as
             `student / assignment / cell: reason`.
grade merge  combine the build/ folders of shards into this course's gradebook and grades.csv.

Worked example (after collecting submissions into submitted/):

    $ make grade
    sandbox: unshare
    alice   a1_bpe_tokenizer   20/20  graded
    bob     a1_bpe_tokenizer    6/20  graded
        bob / a1_bpe_tokenizer / test_encode_decode: AssertionError: ...
    wrote build/grades.csv (2 submissions)

The Python API is re-exported here: `release`, `stale_release`, `grade_class`, `write_grades_csv`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .grading_autograde import GradeRow, Problem, grade_class, parse_shard, write_grades_csv
from .grading_course import REPO_ROOT, assignment_ids, course_config, release, stale_release
from .grading_integrity import drift, record_state
from .grading_merge import merge_shards
from .grading_preprocessors import clean_text
from .sandbox import BACKENDS, NoSandbox

__all__ = ["GradeRow", "Problem", "assignment_ids", "course_config", "drift", "grade_class", "merge_shards",
           "release", "stale_release", "write_grades_csv", "format_row", "main"]


def format_row(row: GradeRow) -> str:
    """One line per submission, then its problems, flags and notes (plain text: no control characters)."""
    text = f"{row.student:<12} {row.assignment:<26} {row.score:>5g}/{row.max_score:<4g} {row.status}"
    if row.needs_manual_grade:
        text += " (+ manual grading)"
    text += "".join(f"\n    {row.student} / {row.assignment} / {p}" for p in row.problems)
    text += "".join(f"\n    {row.student} / {row.assignment} / FLAG: {f}" for f in row.flags)
    text += "".join(f"\n    {row.student} / {row.assignment} / note: {n}" for n in row.notes)
    return clean_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="course root (default: this repository)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("release", help="regenerate assignments/ from solutions/")
    grade = sub.add_parser("grade", help="autograde submitted/, feedback, build/grades.csv; `grade merge DIR...`")
    grade.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: nbgrader_config.py)")
    grade.add_argument("--student", action="append", help="only these students (repeatable)")
    grade.add_argument("--assignment", action="append", help="only these assignments (repeatable)")
    grade.add_argument("--jobs", type=int, default=None, help="submissions graded at once (default: the cores)")
    grade.add_argument("--shard", type=parse_shard, default=None, metavar="K/N",
                       help="grade slice K of N (by student; merge the shards with `grade merge`)")
    grade.add_argument("--deadline", type=int, default=None, help="seconds one submission may take in all")
    grade.add_argument("--sandbox", choices=BACKENDS, default=None, help="sandbox backend (default: first that works)")
    grade.add_argument("--no-sandbox", action="store_true",
                       help="run student code unprotected, with your rights (trusted submissions only)")
    grade.add_argument("--allow-stale", action="store_true",
                       help="grade even if the release, hidden tests, config, grader code or gradebook drifted")
    merge = sub.add_parser("merge", help=argparse.SUPPRESS)
    merge.add_argument("builds", nargs="+", type=Path, help="the build/ folders of the shards")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["grade", "merge"]:
        argv = argv[1:]
    args = parser.parse_args(argv)

    if args.command == "release":
        for path in release(args.root):
            print(f"released {path.relative_to(args.root)}")
        return 0
    if args.command == "merge":
        rows = merge_shards(args.root, args.builds)
        record_state(args.root)
        print(f"merged {len(args.builds)} shard(s): build/grades.csv has {len(rows)} rows")
        return 0

    reasons = drift(args.root)  # also records every assignment in the gradebook
    if reasons and not args.allow_stale:
        print("refusing to grade: what the grades depend on is not what was committed\n  "
              + "\n  ".join(reasons) + "\n(fix it and commit, or pass --allow-stale)", file=sys.stderr)
        return 2
    for reason in reasons:
        print(f"warning (--allow-stale): {reason}", file=sys.stderr)
    if args.no_sandbox:
        print("WARNING: --no-sandbox: student code runs with your rights over the whole course, with network "
              "access; use it for trusted submissions only", file=sys.stderr)
    try:
        rows = grade_class(args.root, timeout=args.timeout, students=args.student, assignments=args.assignment,
                           jobs=args.jobs, shard=args.shard, deadline=args.deadline,
                           sandbox=None if args.no_sandbox else (args.sandbox or "auto"),
                           progress=lambda row: print(format_row(row), flush=True))
    except (NoSandbox, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    record_state(args.root)
    backend = rows[0].backend if rows else "-"
    print(f"wrote build/grades.csv ({len(rows)} submissions graded, sandbox: {backend}; feedback in build/feedback/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
