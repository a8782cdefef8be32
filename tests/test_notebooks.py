"""Every lecture and solution notebook runs in the tiny profile; the runner reports failures clearly."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course import run as runner
from helpers.models import MODELS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("lectures/*.ipynb")) + sorted(ROOT.glob("solutions/*/*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_runs_in_tiny_profile(notebook, tmp_path):
    # The kernel works in tmp_path, so the notebook's own outputs (build/...) never collide with a
    # parallel test or a `make run` in the same checkout.
    [row] = runner.run_notebooks([notebook], "tiny", progress=False, out_dir=tmp_path / "executed", root=ROOT,
                                 workdir=tmp_path)
    assert row.status == "ok", row.failure_message()
    assert (tmp_path / "executed" / row.notebook).exists()


def _notebook(path: Path, *sources: str) -> Path:
    """A minimal notebook: a parameters cell, then one code cell per source."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('PROFILE = "auto"', metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_runner_reports_failing_cell_and_honours_tiny(tmp_path, capsys):
    notebooks = tmp_path / "nbs"
    notebooks.mkdir()
    # The good notebook asserts what the runner promises the kernel: this interpreter, the
    # profile injected, the Hub switched off.
    _notebook(
        notebooks / "a_good.ipynb",
        f"import os, sys\nassert sys.executable == {sys.executable!r}, sys.executable",
        'assert PROFILE == "tiny", PROFILE',
        'assert os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"',
        # A newer library's deprecation is reported under the table; other warnings are not.
        'import warnings\nwarnings.warn("old_name is deprecated in favour of new_name", FutureWarning)\n'
        'warnings.warn("just a note", UserWarning)',
    )
    _notebook(notebooks / "b_bad.ipynb", "x = 1", "y = x / 0  # the failing cell\nprint(y)", "z = 2")
    summary = tmp_path / "summary.json"

    code = runner.main(
        ["--profile", "tiny", "--no-progress", "--out", str(tmp_path / "out"), "--summary", str(summary), str(notebooks)]
    )
    out, err = capsys.readouterr()

    assert code == 1
    assert "deprecation warnings from the kernels (1):" in out
    assert "a_good.ipynb: " in out and "FutureWarning: old_name is deprecated in favour of new_name" in out
    assert "just a note" not in out
    assert "FAILED b_bad.ipynb: cell 2 (`y = x / 0  # the failing cell`) failed: ZeroDivisionError" in err
    assert "a_good.ipynb" not in err
    rows = json.loads(summary.read_text())["notebooks"]
    assert [(r["notebook"], r["status"], r["failed_cell_index"]) for r in rows] == [
        ("a_good.ipynb", "ok", None),
        ("b_bad.ipynb", "failed", 2),
    ]
    assert all(r["peak_rss_gib"] > 0 for r in rows)  # the kernel was measured
    assert (tmp_path / "out" / "b_bad.ipynb").exists()


@pytest.mark.slow
def test_runner_reports_a_cell_timeout(tmp_path, capsys):
    """A cell that runs past --timeout is stopped and reported as a timeout, naming notebook and cell."""
    _notebook(tmp_path / "slow.ipynb", "import time", "time.sleep(120)  # the slow cell", "never = True")
    summary = tmp_path / "summary.json"
    code = runner.main(["--profile", "tiny", "--no-progress", "--timeout", "5", "--out", str(tmp_path / "out"),
                        "--summary", str(summary), str(tmp_path / "slow.ipynb")])
    err = capsys.readouterr().err

    assert code == 1
    assert ("FAILED slow.ipynb: cell 2 (`time.sleep(120)  # the slow cell`) timed out: "
            "the cell ran longer than --timeout 5 s and was stopped") in err
    [row] = json.loads(summary.read_text())["notebooks"]
    assert (row["status"], row["failed_cell_index"]) == ("timeout", 2)
    assert row["seconds"] < 60  # stopped, not waited out


@pytest.mark.slow
def test_runner_runs_kernels_at_once_and_keeps_sorted_order(tmp_path):
    """--jobs 2 really runs two kernels at the same time: each notebook waits for the other's flag,
    which cannot happen one at a time. Rows keep sorted order although b finishes first."""
    wait = (
        "import pathlib, time\n"
        "pathlib.Path({mine!r}).touch()\n"
        "deadline = time.monotonic() + 60\n"
        "while not pathlib.Path({other!r}).exists():\n"
        "    assert time.monotonic() < deadline, 'the other notebook never ran alongside this one'\n"
        "    time.sleep(0.1)"
    )
    a, b = str(tmp_path / "a.flag"), str(tmp_path / "b.flag")
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "a_slow.ipynb", wait.format(mine=a, other=b), "time.sleep(2)")
    _notebook(nbs / "b_fast.ipynb", wait.format(mine=b, other=a), "1 / 0  # fails after the rendezvous")

    rows = runner.run_notebooks([nbs], "tiny", progress=False, jobs=2, out_dir=tmp_path / "out", root=tmp_path)

    assert [(r.notebook, r.status, r.failed_cell_index) for r in rows] == [
        ("nbs/a_slow.ipynb", "ok", None),
        ("nbs/b_fast.ipynb", "failed", 2),
    ]
    assert rows[1].failure_message() == "nbs/b_fast.ipynb: cell 2 (`1 / 0  # fails after the rendezvous`) failed: " \
                                        "ZeroDivisionError: division by zero"
    assert all(r.peak_rss_gib > 0 for r in rows)  # each worker measured its own kernel


@pytest.mark.slow
def test_runner_builds_every_stand_in_before_kernels_start(tmp_path, monkeypatch):
    """In tiny, the stand-ins exist before the first cell runs (built once per run, not per notebook)."""
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    check = (
        "from helpers.models import MODELS\nfrom helpers.tiny import tiny_model_dir\n"
        "missing = [k for k, s in MODELS.items() if not (tiny_model_dir(s) / 'config.json').exists()]\n"
        "assert not missing, missing"
    )
    _notebook(tmp_path / "n.ipynb", check)
    [row] = runner.run_notebooks([tmp_path / "n.ipynb"], "tiny", progress=False, out_dir=tmp_path / "out",
                                 root=tmp_path)
    assert row.status == "ok", row.failure_message()
    assert sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")) \
        == sorted(MODELS)


@pytest.fixture(scope="module")
def module_scoped():
    return object()


def test_tests_sharing_a_module_fixture_stay_on_one_worker(module_scoped, request):
    """Under `make test` (xdist, --dist loadgroup) a test using a module-scoped fixture carries its
    module's group: xdist sends the group to one worker, so such a fixture (the graded class in
    test_grading.py: minutes) is built once, not once per worker."""
    if not (os.environ.get("PYTEST_XDIST_WORKER") and request.config.getvalue("loadgroup")):
        pytest.skip("grouping exists only under pytest-xdist --dist loadgroup, as `make test` runs")
    assert request.node.nodeid.endswith("@tests/test_notebooks.py"), request.node.nodeid


def test_runner_refuses_unknown_profile(tmp_path):
    _notebook(tmp_path / "n.ipynb", "pass")
    proc = subprocess.run(
        [sys.executable, "-m", "course.run", "--profile", "gpu", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "unknown profile 'gpu'" in proc.stderr
    with pytest.raises(ValueError, match="(?i)unknown profile .gpu."):
        runner.run_notebooks([tmp_path], "gpu", progress=False)


def test_runner_refuses_missing_path(tmp_path):
    assert runner.main(["--profile", "tiny", str(tmp_path / "missing.ipynb")]) == 2


def test_format_table_and_failure_message():
    rows = [
        runner.NotebookRun("a.ipynb", "ok", 1.25, 0.5),
        runner.NotebookRun("bb.ipynb", "failed", 2.0, 1.0, failed_cell_index=3, failed_cell_first_line="f()",
                           error="KeyError: 'x'"),
    ]
    assert runner.format_table(rows).splitlines() == [
        "notebook  status  seconds  peak RSS (GiB)",
        "a.ipynb   ok          1.2            0.50",
        "bb.ipynb  failed      2.0            1.00",
        "total                 3.2            1.00",
    ]
    assert rows[1].failure_message() == "bb.ipynb: cell 3 (`f()`) failed: KeyError: 'x'"


def test_offline_environment_is_restored(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with runner.kernel_environment("tiny"):
        import os

        assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert "HF_HUB_OFFLINE" not in os.environ
    with runner.kernel_environment("full"):
        assert "HF_HUB_OFFLINE" not in os.environ


def test_runner_doctests():
    assert doctest.testmod(runner, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


@pytest.mark.slow
def test_course_benchmark_times_each_notebook(tmp_path):
    from benchmarks import course

    _notebook(tmp_path / "00_a.ipynb", "import time\ntime.sleep(0.2)")
    timing = course.measure([tmp_path], out_dir=tmp_path / "out")
    assert timing.ok and [r.notebook for r in timing.rows] == ["00_a.ipynb"]
    assert timing.rows[0].seconds >= 0.2 and timing.wall_seconds >= timing.rows[0].seconds
    assert course.format_report(timing).splitlines()[-1].startswith(
        "course wall time (tiny profile, 1 notebooks, 1 kernel at a time):")


def test_benchmark_registry_skips_missing_modules(monkeypatch, capsys):
    from benchmarks import __main__ as bench

    monkeypatch.setattr(bench, "REGISTRY", [("ghost", "benchmarks.ghost_not_written", "nothing"),
                                            ("slow", "benchmarks.slow_not_written:main_slow", "minutes")])
    monkeypatch.setattr(bench, "OPT_IN", {"slow"})
    assert bench.main([]) == 0
    out = capsys.readouterr().out
    assert "skipped: benchmarks.ghost_not_written is not present" in out
    assert "slow" not in out  # opt-in: not run unless named
    assert bench.main(["slow"]) == 0
    assert "skipped: benchmarks.slow_not_written is not present" in capsys.readouterr().out
    assert bench.main(["nope"]) == 2


def test_runner_refuses_full_without_a_gpu(tmp_path, monkeypatch):
    """`full` on a machine without CUDA stops before any notebook runs, with the reason."""
    import helpers.device

    monkeypatch.setattr(helpers.device, "has_cuda", lambda: False)
    _notebook(tmp_path / "n.ipynb", "pass")
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        runner.run_notebooks([tmp_path], "full", progress=False)
    assert runner.main(["--profile", "full", str(tmp_path)]) == 2
