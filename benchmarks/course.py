"""Course wall time: every lecture executed in the tiny profile through the runner, one kernel at a
time (before: how `make run` ran) and then `--jobs N` kernels at once (after: how it runs now), in the
same invocation on the same machine, so the two figures compare.

`measure` returns the figures, `format_report` / `format_comparison` render them:

>>> from course.run import NotebookRun
>>> t = CourseTiming(wall_seconds=20.0, rows=[NotebookRun("lectures/00_x.ipynb", "ok", 18.5, 0.9)])
>>> print(format_report(t).splitlines()[-1])
course wall time (tiny profile, 1 notebooks, 1 kernel at a time): 20.0 s
>>> print(format_comparison(CourseTiming(80.0, [], 1), CourseTiming(44.0, [], 2)))
course wall time, serial (1 kernel): 80.0 s; parallel (2 kernels at once): 44.0 s; speed-up 1.82x
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from course import run as runner

OUT = Path("build/bench")


@dataclasses.dataclass
class CourseTiming:
    wall_seconds: float  # start to end, stand-in check and kernel start-ups included
    rows: list  # one course.run.NotebookRun per notebook
    jobs: int = 1

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.rows)


def measure(paths=("lectures",), profile: str = "tiny", out_dir: Path = OUT / "executed", jobs: int = 1,
            expected_seconds: dict[str, float] | None = None) -> CourseTiming:
    """Run every notebook under `paths` once, `jobs` kernels at a time, and time the whole course
    (`expected_seconds` orders the parallel starts, as `make run` does from its last summary)."""
    start = time.perf_counter()
    rows = runner.run_notebooks(list(paths), profile, out_dir=out_dir, jobs=jobs, expected_seconds=expected_seconds)
    jobs = min(jobs, max(1, len(rows)))
    return CourseTiming(round(time.perf_counter() - start, 1), rows, jobs)


def _kernels(jobs: int) -> str:
    return f"{jobs} kernel{'s' if jobs > 1 else ''}"


def format_report(timing: CourseTiming) -> str:
    lines = [runner.format_table(timing.rows)]
    lines += [f"FAILED {r.failure_message()}" for r in timing.rows if r.status != "ok"]
    lines.append(f"course wall time (tiny profile, {len(timing.rows)} notebooks, {_kernels(timing.jobs)} at a time): "
                 f"{timing.wall_seconds:.1f} s")
    return "\n".join(lines)


def format_comparison(serial: CourseTiming, parallel: CourseTiming) -> str:
    speedup = serial.wall_seconds / parallel.wall_seconds if parallel.wall_seconds else float("nan")
    return (f"course wall time, serial ({_kernels(serial.jobs)}): {serial.wall_seconds:.1f} s; "
            f"parallel ({_kernels(parallel.jobs)} at once): {parallel.wall_seconds:.1f} s; speed-up {speedup:.2f}x")


def machine() -> str:
    """'Linux x86_64, 2 CPU cores available, load average 1.2' — what the figures came from."""
    load = f", load average {os.getloadavg()[0]:.1f} at the end" if hasattr(os, "getloadavg") else ""
    return f"{platform.system()} {platform.machine()}, {runner.default_jobs()} CPU cores available{load}"


def notebook_imports(notebook: Path) -> str:
    """The top-level import statements of a notebook's code cells, in order, one per line (cells
    that are not plain Python, e.g. shell magics, are skipped).

    >>> import nbformat, tempfile
    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import os\\nx = 1\\nfrom json import dumps"),
    ...                                      nbformat.v4.new_code_cell("!pip install x")])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     nbformat.write(nb, f"{d}/n.ipynb")
    ...     print(notebook_imports(Path(d) / "n.ipynb"))
    import os
    from json import dumps
    """
    import ast

    import nbformat

    lines = []
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        lines += [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return "\n".join(lines)


def _python_seconds(code: str) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def where_time_goes(timing: CourseTiming, root: Path = Path.cwd()) -> str:
    """Per notebook of a serial run: kernel start-up (an empty notebook's run), the notebook's imports
    timed in a fresh interpreter (less the interpreter's own start), and the rest (its cells' work)."""
    import tempfile

    import nbformat

    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.ipynb"
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('PROFILE = "tiny"', metadata={"tags": ["parameters"]})])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, empty)
        kernel = runner.run_notebook(empty, "tiny", out_dir=Path(tmp) / "out", root=Path(tmp)).seconds
    bare = _python_seconds("pass")
    width = max(len(r.notebook) for r in timing.rows) + 2
    lines = [f"{'notebook':<{width}}{'run s':>7}{'kernel start s':>16}{'imports s':>11}{'rest s':>8}"]
    for r in timing.rows:
        imports = max(0.0, _python_seconds(notebook_imports(root / r.notebook)) - bare)
        rest = r.seconds - kernel - imports
        lines.append(f"{r.notebook:<{width}}{r.seconds:>7.1f}{kernel:>16.1f}{imports:>11.1f}{rest:>8.1f}")
    return "\n".join(lines)


def main() -> int:
    if not runner.find_notebooks(["lectures"]):
        print("no lecture notebooks yet: skipped")
        return 0
    # The stand-ins are built (once) before either run, so neither pays for them.
    runner.prepare_profile("tiny")
    serial = measure(jobs=1, out_dir=OUT / "executed-serial")
    print(format_report(serial), flush=True)
    print("\nwhere a serial run's time goes (imports: the notebook's import lines in a fresh python):")
    print(where_time_goes(serial), flush=True)
    print()
    parallel = measure(jobs=runner.default_jobs(), out_dir=OUT / "executed",
                       expected_seconds={r.notebook: r.seconds for r in serial.rows})
    print(format_report(parallel))
    print(format_comparison(serial, parallel))
    print(f"machine: {machine()}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "course.json").write_text(json.dumps({
        "machine": machine(),
        "serial": {"wall_seconds": serial.wall_seconds, **runner.summary(serial.rows, "tiny", serial.wall_seconds, 1)},
        "parallel": {"wall_seconds": parallel.wall_seconds,
                     **runner.summary(parallel.rows, "tiny", parallel.wall_seconds, parallel.jobs)},
    }, indent=2) + "\n")
    return 0 if serial.ok and parallel.ok else 1


def measure_tests(workers: str | int | None, args: tuple[str, ...] = ()) -> tuple[float, int]:
    """(wall seconds, pytest exit code) of the whole test suite: `workers=None` one process
    (`-p no:xdist`), else `-n workers --dist loadgroup`, as `make test` runs it."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    cmd += ["-p", "no:xdist"] if workers is None else ["-n", str(workers), "--dist", "loadgroup"]
    start = time.perf_counter()
    code = subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode
    return round(time.perf_counter() - start, 1), code


def main_tests() -> int:
    """`python -m course bench tests`: the suite serially, then as `make test` runs it (-n auto)."""
    serial, serial_code = measure_tests(None)
    print(f"test suite, serial (one process): {serial:.1f} s (pytest exit {serial_code})", flush=True)
    parallel, parallel_code = measure_tests("auto")
    print(f"test suite, pytest-xdist -n auto --dist loadgroup: {parallel:.1f} s (pytest exit {parallel_code}); "
          f"speed-up {serial / parallel:.2f}x")
    print(f"machine: {machine()}")
    return serial_code or parallel_code
