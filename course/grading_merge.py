"""Combine the results of shards (`grade --shard K/N` on several machines) into one course.

Each shard leaves a `build/` folder (gradebook.db, grades.csv, feedback/, autograded/). Copy them
anywhere, then on the instructor's machine:

    $ python -m course grade merge shard1/build shard2/build shard3/build

Every submission graded in a shard is merged into `build/gradebook.db` (automatic grades; manual
scores already there are kept), its feedback and autograded notebook replace the course's, and
`build/grades.csv` gets the shards' rows (rows of submissions no shard graded are kept).

>>> sorted({"student", "assignment"} - set(CSV_KEY))
[]
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .grading_autograde import _scores, _zero_submission, merge_submission, read_grades_csv, write_grades_csv
from .grading_course import course_config, nbgrader_api

CSV_KEY = ("student", "assignment")


def merge_shards(root: str | Path, shard_builds: list[str | Path]) -> list[dict]:
    """Merge the `build/` folders of shards into `<root>/build/`; returns the merged grades.csv rows."""
    root = Path(root).resolve()
    cfg = course_config(root)
    nbgrader_api(cfg)
    rows = {(r["student"], r["assignment"]): r for r in read_grades_csv(root / "build" / "grades.csv")}
    for build in map(Path, shard_builds):
        for row in read_grades_csv(build / "grades.csv"):
            key = (row["student"], row["assignment"])
            if row["status"] == "pending":
                continue
            db, course_id = cfg.CourseDirectory.db_url, cfg.CourseDirectory.course_id
            if row["status"] == "graded":
                merge_submission("sqlite:///" + str((build / "gradebook.db").resolve()), db, course_id, *key)
                score, max_score, manual = _scores(db, course_id, *key)  # manual scores here count
                row.update(score=f"{score:g}", max_score=f"{max_score:g}", needs_manual_grade=str(manual).lower())
            elif row["status"] != "invalid-id":
                from nbgrader.api import Gradebook

                with Gradebook(db, course_id) as gb:
                    _zero_submission(gb, key[1], key[0])
            for kind in ("feedback", "autograded"):
                source, target = build / kind / key[0] / key[1], root / "build" / kind / key[0] / key[1]
                shutil.rmtree(target, ignore_errors=True)
                if source.is_dir():
                    target.mkdir(parents=True)
                    for path in source.iterdir():
                        if path.is_file() and not path.is_symlink() and path.suffix in (".html", ".ipynb"):
                            shutil.copyfile(path, target / path.name)
            rows[key] = row
    write_grades_csv(list(rows.values()), root / "build" / "grades.csv")
    return list(rows.values())
