"""Course wall time: every lecture executed in the tiny profile through the runner.

`measure` returns the figures, `format_report` renders them:

>>> from course.run import NotebookRun
>>> t = CourseTiming(wall_seconds=20.0, rows=[NotebookRun("lectures/00_x.ipynb", "ok", 18.5, 0.9)])
>>> print(format_report(t).splitlines()[-1])
course wall time (tiny profile, 1 notebooks): 20.0 s
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from course import run as runner

OUT = Path("build/bench")


@dataclasses.dataclass
class CourseTiming:
    wall_seconds: float  # start to end, kernel start-ups included
    rows: list  # one course.run.NotebookRun per notebook

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.rows)


def measure(paths=("lectures",), profile: str = "tiny", out_dir: Path = OUT / "executed") -> CourseTiming:
    """Run every notebook under `paths` once and time the whole course."""
    start = time.perf_counter()
    rows = runner.run_notebooks(list(paths), profile, out_dir=out_dir)
    return CourseTiming(round(time.perf_counter() - start, 1), rows)


def format_report(timing: CourseTiming) -> str:
    lines = [runner.format_table(timing.rows)]
    lines += [f"FAILED {r.failure_message()}" for r in timing.rows if r.status != "ok"]
    lines.append(f"course wall time (tiny profile, {len(timing.rows)} notebooks): {timing.wall_seconds:.1f} s")
    return "\n".join(lines)


def main() -> int:
    if not runner.find_notebooks(["lectures"]):
        print("no lecture notebooks yet: skipped")
        return 0
    timing = measure()
    print(format_report(timing))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "course.json").write_text(
        json.dumps({"wall_seconds": timing.wall_seconds, **runner.summary(timing.rows, "tiny")}, indent=2) + "\n"
    )
    return 0 if timing.ok else 1
