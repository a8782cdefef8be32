"""Run course notebooks headless with papermill, one profile for all: the engine behind `make run`.

    python -m course run --profile tiny lectures          # every lecture, offline stand-ins
    python -m course run --profile full lectures/05_dpo.ipynb
    python -m course run --jobs 1 lectures                # one kernel at a time

Several kernels run at once (`--jobs N`; default in tiny: the CPU cores this process may use, in
full: one, as one notebook takes the whole GPU), each
driven by its own worker process; rows, the table and the summary keep the sorted notebook order
whatever order they finish in. In the tiny profile the offline stand-ins are built once, before any
kernel starts, so parallel kernels never build the same one twice. Each notebook gets ``PROFILE=<resolved profile>`` injected into its `parameters` cell, runs in the
notebook's own folder, and its executed copy goes to ``build/executed/<same relative path>``.
``build/run-summary.json`` gets one row per notebook. The tiny profile sets HF_HUB_OFFLINE=1,
TRANSFORMERS_OFFLINE=1 and HF_DATASETS_OFFLINE=1 in the kernel's environment, so nothing can
reach the Hub.

Computing and printing are apart: `run_notebooks` returns rows, `format_table` renders them.

>>> row = NotebookRun("lectures/00_environment_check.ipynb", "ok", 12.3, 0.84)
>>> print(format_table([row]))  # doctest: +NORMALIZE_WHITESPACE
notebook                              status  seconds  peak RSS (GiB)
lectures/00_environment_check.ipynb   ok         12.3            0.84
total                                            12.3            0.84
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

from helpers.constants import OFFLINE_ENV, PROFILES

DEFAULT_OUT = Path("build/executed")
DEFAULT_SUMMARY = Path("build/run-summary.json")
# papermill parses parameters cells line by line to *describe* them, and warns on multi-line dicts
# (our per-profile SETTINGS); injection does not need that parse, so the warnings are noise.
logging.getLogger("papermill.translators").setLevel(logging.ERROR)


@dataclasses.dataclass
class NotebookRun:
    """One executed notebook. `peak_rss_gib`: peak resident memory of the kernel process tree, GiB."""

    notebook: str
    status: str  # "ok", "failed" (a cell raised, the kernel died ...) or "timeout" (a cell ran past --timeout)
    seconds: float
    peak_rss_gib: float
    output: str = ""
    failed_cell_index: int | None = None  # index in the source notebook (0-based, as nbformat counts)
    failed_cell_first_line: str = ""
    error: str = ""
    warnings: list[str] = dataclasses.field(default_factory=list)  # deprecation lines the kernel printed

    def failure_message(self) -> str:
        """'lectures/x.ipynb: cell 5 (`model = load()`) failed: ValueError: bad' (or 'timed out: ...')."""
        where = "" if self.failed_cell_index is None else f" cell {self.failed_cell_index} (`{self.failed_cell_first_line}`)"
        verb = "timed out" if self.status == "timeout" else "failed"
        return f"{self.notebook}:{where} {verb}: {self.error}"


def default_jobs() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def jobs_for(profile: str, requested: int | None = None) -> int:
    """Kernels at once: `requested` when given; else one per CPU core in `tiny`, and one in `full`
    (a full-profile notebook takes the whole GPU: two would fight over its memory).

    >>> jobs_for("full"), jobs_for("full", 2), jobs_for("tiny", 3), jobs_for("tiny") == default_jobs()
    (1, 2, 3, True)
    """
    if requested is not None:
        return max(1, requested)
    return default_jobs() if profile == "tiny" else 1


def prepare_profile(profile: str) -> list[Path]:
    """Build what every notebook of `profile` shares, once, before kernels start: in `tiny`, every
    offline stand-in (cached; a no-op when built); in `full`, nothing (the Hub serves the models).

    Returns the stand-in directories (empty in `full`).
    """
    if profile != "tiny":
        return []
    from helpers.models import MODELS
    from helpers.tiny import build_tiny_model

    with kernel_environment(profile):  # the same cache directory and offline switches the kernels see
        return [build_tiny_model(spec) for spec in MODELS.values()]


def resolve_profile(profile: str) -> str:
    """'auto' | 'tiny' | 'full' -> 'tiny' | 'full'; ValueError on an unknown profile or on `full`
    without a CUDA GPU (every notebook would stop at its preflight: say it once, up front)."""
    from helpers.device import has_cuda
    from helpers.device import resolve_profile as device_resolve

    resolved = device_resolve(profile)
    if resolved == "full" and not has_cuda():
        raise ValueError("the full profile trains the real Hub models and needs a CUDA GPU, but none was found; "
                         "use --profile tiny (or auto) on this machine")
    return resolved


def find_notebooks(paths, root: Path | None = None) -> list[Path]:
    """Every .ipynb under the given dirs (or the files themselves), sorted, checkpoints excluded."""
    root = Path.cwd() if root is None else root
    found: set[Path] = set()
    for p in map(Path, paths):
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            found |= {q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts}
        elif p.suffix == ".ipynb" and p.exists():
            found.add(p)
        else:
            raise FileNotFoundError(f"not a notebook or a folder: {p}")
    return sorted(found)


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:  # outside the repo (e.g. a test's tmp_path): keep the file name
        return Path(path.name)


def PeakRSS(interval: float = 0.1):
    """Sampler of the peak summed RSS (GiB) of this process's descendants: the kernel tree.

    >>> with PeakRSS(interval=0.01) as meter:
    ...     pass
    >>> meter.peak >= 0
    True
    """
    from helpers.memory import RssSampler, children_rss_gib

    return RssSampler(interval=interval, measure=children_rss_gib)


@contextlib.contextmanager
def kernel_environment(profile: str):
    """Environment the kernel inherits: COURSE_HEADLESS=1 (widgets render static HTML) and, in `tiny`,
    the offline Hub switches; restored afterwards."""
    changes = {"COURSE_HEADLESS": "1", **(OFFLINE_ENV if profile == "tiny" else {})}
    if profile == "tiny":  # tiny matrices: one thread is faster than several fighting over 2 cores
        changes.setdefault("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    saved = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def venv_kernel_manager_class():
    """An AsyncKernelManager whose `python3` kernel is always this interpreter (the .venv's python).

    jupyter_client would otherwise take the first `python3` kernelspec on the Jupyter path, which
    can be a user-level spec pointing at another Python with other packages.
    """
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from traitlets import default

    class VenvKernelSpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            if kernel_name == "python3":  # argv = [sys.executable, "-m", "ipykernel_launcher", ...]
                return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())
            return super().get_kernel_spec(kernel_name)

    class VenvKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _venv_kernel_spec_manager(self):
            return VenvKernelSpecManager(data_dir=self.data_dir)

    return VenvKernelManager


PAPERMILL_TAGS = ("injected-parameters", "papermill-error-cell-tag")  # cells papermill adds


def _locate_failed_cell(executed_path: Path) -> tuple[int | None, str]:
    """(index in the source notebook, first source line) of the cell an executed copy failed in.

    Papermill marks that cell `failed` on a cell error; on a timeout or a dead kernel it is the
    last cell that started. Cells papermill inserted (injected parameters, error banners) do not count.
    """
    import nbformat

    try:
        nb = nbformat.read(executed_path, as_version=4)
    except Exception:
        return None, ""
    source_index, last_started = 0, (None, "")
    for cell in nb.cells:
        if any(tag in cell.get("metadata", {}).get("tags", []) for tag in PAPERMILL_TAGS):
            continue
        meta = cell.get("metadata", {}).get("papermill", {})
        first = next((ln.strip() for ln in cell.source.splitlines() if ln.strip()), "")
        if meta.get("exception") or meta.get("status") in ("running", "failed"):
            return source_index, first
        if meta.get("start_time"):
            last_started = (source_index, first)
        source_index += 1
    return last_started


DEPRECATION = re.compile(r"(Deprecation|PendingDeprecation|Future)Warning|\bdeprecated\b", re.IGNORECASE)


def deprecation_warnings(executed_path: Path) -> list[str]:
    """Distinct stderr lines of an executed notebook that announce a deprecation, in order: how a
    newer library says a name the course uses will go (reported, never a failure)."""
    import nbformat

    try:
        nb = nbformat.read(executed_path, as_version=4)
    except Exception:
        return []
    found: dict[str, None] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                for line in out.get("text", "").splitlines():
                    # indented lines echo the source line a warning came from: the message is enough
                    if DEPRECATION.search(line) and not line[:1].isspace():
                        found.setdefault(line.strip()[:300])
    return list(found)


def run_notebook(
    path: Path,
    profile: str,
    out_dir: Path = DEFAULT_OUT,
    root: Path | None = None,
    kernel: str = "python3",
    timeout: float | None = 600,
    start_timeout: float = 120,
    workdir: Path | None = None,
) -> NotebookRun:
    """Execute one notebook in an already-resolved profile ('tiny' or 'full'); never raises on cell errors.

    The kernel's working directory is `workdir` (default: the notebook's folder), where the notebook's
    own outputs (`build/...` relative paths) land.
    """
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError

    root = Path.cwd() if root is None else root
    rel = _relative(path, root)
    output = out_dir / rel
    output.parent.mkdir(parents=True, exist_ok=True)
    engine_kwargs = {"kernel_manager_class": venv_kernel_manager_class()} if kernel == "python3" else {}

    error, status = "", "ok"
    start = time.perf_counter()
    with kernel_environment(profile), PeakRSS() as meter:
        try:
            pm.execute_notebook(
                str(path),
                str(output),
                parameters={"PROFILE": profile},
                kernel_name=kernel,
                cwd=str(path.parent if workdir is None else workdir),
                progress_bar=False,
                execution_timeout=timeout,
                start_timeout=start_timeout,
                **engine_kwargs,
            )
        except pm.PapermillExecutionError as exc:
            status = "failed"
            error = f"{exc.ename}: {exc.evalue}"
        except CellTimeoutError:
            status = "timeout"
            error = f"the cell ran longer than --timeout {timeout:g} s and was stopped"
        except Exception as exc:  # timeout, dead kernel, unreadable notebook, missing kernel ...
            status = "failed"
            error = f"{type(exc).__name__}: {exc}".strip()
    seconds = time.perf_counter() - start

    row = NotebookRun(rel.as_posix(), status, round(seconds, 1), round(meter.peak, 2), output.as_posix(),
                      warnings=deprecation_warnings(output))
    if status != "ok":
        row.error = error.splitlines()[0] if error else "unknown error"
        row.failed_cell_index, row.failed_cell_first_line = _locate_failed_cell(output)
    return row


def _run_one(args: tuple) -> NotebookRun:
    """Worker-process entry: run_notebook(path, profile, **kwargs), a crash turned into a failed row."""
    path, profile, kwargs = args
    try:
        return run_notebook(path, profile, **kwargs)
    except Exception as exc:  # e.g. an unwritable out_dir: report it on this notebook's row
        rel = _relative(path, kwargs.get("root") or Path.cwd())
        return NotebookRun(rel.as_posix(), "failed", 0.0, 0.0, error=f"{type(exc).__name__}: {exc}")


def schedule(notebooks: list[Path], expected_seconds: dict[str, float] | None = None, root: Path | None = None):
    """Start order for parallel kernels, longest first, so no long notebook starts last and runs
    alone: notebooks with no figure in `expected_seconds` (a previous summary) first, largest file
    first (a rough proxy), then the others by their seconds. Only the start order: results keep the
    sorted order.

    >>> [p.name for p in schedule([Path("a.ipynb"), Path("b.ipynb"), Path("c.ipynb")], {"a.ipynb": 5, "b.ipynb": 9})]
    ['c.ipynb', 'b.ipynb', 'a.ipynb']
    """
    root = Path.cwd() if root is None else root
    expected = expected_seconds or {}

    def key(path: Path):
        seconds = expected.get(_relative(path, root).as_posix())
        if seconds is None:
            return (0, -(path.stat().st_size if path.exists() else 0))
        return (1, -seconds)

    return sorted(notebooks, key=key)


def run_notebooks(paths, profile: str, progress: bool = True, jobs: int | None = None,
                  expected_seconds: dict[str, float] | None = None, **kwargs) -> list[NotebookRun]:
    """Resolve `profile` once, build what its notebooks share (`prepare_profile`), then run every
    notebook under `paths`, `jobs` kernels at a time (default `jobs_for(profile)`).

    Returns one NotebookRun per notebook in sorted notebook order, whatever order they finished in;
    kwargs go to `run_notebook` (out_dir, root, kernel, timeout, workdir). With more than one job each
    kernel is driven by its own worker process (so its peak RSS is its own); with one, in this process.
    `expected_seconds` ({notebook: seconds}, e.g. the last summary) only orders the starts, longest first.
    """
    resolved = resolve_profile(profile)
    notebooks = find_notebooks(paths, kwargs.get("root"))
    prepare_profile(resolved)
    jobs = min(jobs_for(resolved, jobs), max(1, len(notebooks)))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(notebooks), desc=f"notebooks ({resolved}, {jobs} at a time)", unit="nb", file=sys.stderr)
    done: dict[Path, NotebookRun] = {}
    if jobs == 1:
        for nb in notebooks:
            if bar is not None:
                bar.set_postfix_str(nb.name)
            done[nb] = run_notebook(nb, resolved, **kwargs)
            if bar is not None:
                bar.update()
    else:
        import concurrent.futures
        import multiprocessing

        # spawn: a fresh interpreter per worker, nothing inherited from this (possibly threaded) process
        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_run_one, (nb, resolved, kwargs)): nb
                       for nb in schedule(notebooks, expected_seconds, kwargs.get("root"))}
            for future in concurrent.futures.as_completed(futures):
                done[futures[future]] = future.result()
                if bar is not None:
                    bar.set_postfix_str(futures[future].name)
                    bar.update()
    if bar is not None:
        bar.close()
    return [done[nb] for nb in notebooks]


def summary(rows: list[NotebookRun], profile: str, wall_seconds: float | None = None, jobs: int = 1) -> dict:
    """The JSON-ready summary written to build/run-summary.json. `total_seconds` sums the notebooks;
    `wall_seconds` is start to end of the whole run (less than the sum when kernels ran in parallel)."""
    return {
        "profile": profile,
        "python": sys.executable,
        "jobs": jobs,
        "total_seconds": round(sum(r.seconds for r in rows), 1),
        "wall_seconds": None if wall_seconds is None else round(wall_seconds, 1),
        "peak_memory": "peak RSS of the kernel process tree, GiB",
        "notebooks": [dataclasses.asdict(r) for r in rows],
    }


def format_table(rows: list[NotebookRun]) -> str:
    """Fixed-width table: notebook, status, seconds, peak RSS (GiB), and a total line."""
    width = max([len("notebook"), *(len(r.notebook) for r in rows)]) + 2
    lines = [f"{'notebook':<{width}}{'status':<8}{'seconds':>7}  {'peak RSS (GiB)':>14}"]
    for r in rows:
        lines.append(f"{r.notebook:<{width}}{r.status:<8}{r.seconds:>7.1f}  {r.peak_rss_gib:>14.2f}")
    total = sum(r.seconds for r in rows)
    peak = max((r.peak_rss_gib for r in rows), default=0.0)
    lines.append(f"{'total':<{width}}{'':<8}{total:>7.1f}  {peak:>14.2f}")
    return "\n".join(lines)


def previous_seconds(summary_path: Path) -> dict[str, float]:
    """{notebook: seconds} from an earlier summary file, {} when there is none or it is unreadable."""
    try:
        return {r["notebook"]: float(r["seconds"]) for r in json.loads(summary_path.read_text())["notebooks"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course run", description="Run course notebooks headless.")
    parser.add_argument("paths", nargs="*", default=["lectures"], help="folders or .ipynb files (default: lectures)")
    parser.add_argument("--profile", default="auto", help="auto (default), tiny or full")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one cell may run (default 600)")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel (default python3 = this interpreter)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where executed copies go")
    parser.add_argument("--summary", type=Path, default=DEFAULT_SUMMARY, help="where the JSON summary goes")
    parser.add_argument("--jobs", "-j", type=int, default=None,
                        help=f"kernels at once (default: in tiny the CPU cores available, here {default_jobs()}; "
                             "in full 1, the GPU's memory being the limit)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    if args.profile not in PROFILES:
        print(f"error: unknown profile {args.profile!r}: choose one of {', '.join(PROFILES)}", file=sys.stderr)
        return 2
    try:
        resolved = resolve_profile(args.profile)
        notebooks = find_notebooks(args.paths)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not notebooks:
        print(f"error: no notebooks under {' '.join(args.paths)}", file=sys.stderr)
        return 2

    if args.jobs is not None and args.jobs < 1:
        print(f"error: --jobs must be at least 1, not {args.jobs}", file=sys.stderr)
        return 2
    jobs = min(jobs_for(resolved, args.jobs), len(notebooks))
    start = time.perf_counter()
    rows = run_notebooks(
        notebooks, resolved, progress=not args.no_progress, jobs=jobs, expected_seconds=previous_seconds(args.summary),
        out_dir=args.out, kernel=args.kernel, timeout=args.timeout,
    )
    wall = time.perf_counter() - start
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(summary(rows, resolved, wall, jobs), indent=2) + "\n")

    print(format_table(rows))
    print(f"wall time: {wall:.1f} s with {jobs} kernel{'s' if jobs > 1 else ''} at a time")
    warned = [(r.notebook, w) for r in rows for w in r.warnings]
    if warned:
        print(f"deprecation warnings from the kernels ({len(warned)}):")
        for notebook, line in warned:
            print(f"  {notebook}: {line}")
    print(f"executed copies: {args.out}/   summary: {args.summary}")
    failed = [r for r in rows if r.status != "ok"]
    for r in failed:
        print(f"FAILED {r.failure_message()}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
