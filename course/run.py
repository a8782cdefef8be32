"""Run course notebooks headless with papermill, one profile for all: the engine behind `make run`.

    python -m course run --profile tiny lectures          # every lecture, offline stand-ins
    python -m course run --profile full lectures/05_dpo.ipynb

Each notebook gets ``PROFILE=<resolved profile>`` injected into its `parameters` cell, runs in the
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
    status: str  # "ok" or "failed"
    seconds: float
    peak_rss_gib: float
    output: str = ""
    failed_cell_index: int | None = None  # index in the source notebook (0-based, as nbformat counts)
    failed_cell_first_line: str = ""
    error: str = ""

    def failure_message(self) -> str:
        """'lectures/x.ipynb: cell 5 (`model = load()`) failed: ValueError: bad'."""
        where = "" if self.failed_cell_index is None else f" cell {self.failed_cell_index} (`{self.failed_cell_first_line}`)"
        return f"{self.notebook}:{where} failed: {self.error}"


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


def run_notebook(
    path: Path,
    profile: str,
    out_dir: Path = DEFAULT_OUT,
    root: Path | None = None,
    kernel: str = "python3",
    timeout: float | None = 600,
    start_timeout: float = 120,
) -> NotebookRun:
    """Execute one notebook in an already-resolved profile ('tiny' or 'full'); never raises on cell errors."""
    import papermill as pm

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
                cwd=str(path.parent),
                progress_bar=False,
                execution_timeout=timeout,
                start_timeout=start_timeout,
                **engine_kwargs,
            )
        except pm.PapermillExecutionError as exc:
            status = "failed"
            error = f"{exc.ename}: {exc.evalue}"
        except Exception as exc:  # timeout, dead kernel, unreadable notebook, missing kernel ...
            status = "failed"
            error = f"{type(exc).__name__}: {exc}".strip()
    seconds = time.perf_counter() - start

    row = NotebookRun(rel.as_posix(), status, round(seconds, 1), round(meter.peak, 2), output.as_posix())
    if status == "failed":
        row.error = error.splitlines()[0] if error else "unknown error"
        row.failed_cell_index, row.failed_cell_first_line = _locate_failed_cell(output)
    return row


def run_notebooks(paths, profile: str, progress: bool = True, **kwargs) -> list[NotebookRun]:
    """Resolve `profile` once, then run every notebook under `paths` in sorted order.

    Returns one NotebookRun per notebook; kwargs go to `run_notebook` (out_dir, root, kernel, timeout).
    """
    resolved = resolve_profile(profile)
    notebooks = find_notebooks(paths, kwargs.get("root"))
    rows = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(notebooks, desc=f"notebooks ({resolved})", unit="nb", file=sys.stderr)
    for nb in bar if bar is not None else notebooks:
        if bar is not None:
            bar.set_postfix_str(nb.name)
        rows.append(run_notebook(nb, resolved, **kwargs))
    return rows


def summary(rows: list[NotebookRun], profile: str) -> dict:
    """The JSON-ready summary written to build/run-summary.json."""
    return {
        "profile": profile,
        "python": sys.executable,
        "total_seconds": round(sum(r.seconds for r in rows), 1),
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course run", description="Run course notebooks headless.")
    parser.add_argument("paths", nargs="*", default=["lectures"], help="folders or .ipynb files (default: lectures)")
    parser.add_argument("--profile", default="auto", help="auto (default), tiny or full")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one cell may run (default 600)")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel (default python3 = this interpreter)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where executed copies go")
    parser.add_argument("--summary", type=Path, default=DEFAULT_SUMMARY, help="where the JSON summary goes")
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

    rows = run_notebooks(
        notebooks, resolved, progress=not args.no_progress, out_dir=args.out, kernel=args.kernel, timeout=args.timeout
    )
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(summary(rows, resolved), indent=2) + "\n")

    print(format_table(rows))
    print(f"executed copies: {args.out}/   summary: {args.summary}")
    failed = [r for r in rows if r.status != "ok"]
    for r in failed:
        print(f"FAILED {r.failure_message()}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
