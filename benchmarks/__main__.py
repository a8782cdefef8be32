"""Run every benchmark module present: `python -m benchmarks [name ...]`.

The registry lists module names, imported lazily, so a benchmark that is not written yet (or
whose optional dependencies are missing) is reported as skipped instead of breaking the others.

    $ python -m benchmarks course
    == course: wall time of every lecture in the tiny profile ==
    ...
"""

from __future__ import annotations

import importlib
import sys
import traceback

# (name, module, what it prints) — in the order they run
REGISTRY = [
    ("course", "benchmarks.course", "wall time of every lecture in the tiny profile"),
    ("autograde", "benchmarks.autograde", "time to autograde the assignments"),
    ("gpu_recipes", "benchmarks.gpu_recipes", "GPU memory fit and HF vs Unsloth (CUDA only)"),
]


def load(module: str):
    """The benchmark module, or None when it does not exist (yet)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    known = [name for name, _, _ in REGISTRY]
    unknown = [a for a in argv if a not in known]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {known}", file=sys.stderr)
        return 2
    failures = []
    for name, module, what in REGISTRY:
        if argv and name not in argv:
            continue
        print(f"\n== {name}: {what} ==", flush=True)
        try:
            mod = load(module)
            if mod is None:
                print(f"skipped: {module} is not present")
                continue
            code = mod.main()
        except Exception:
            traceback.print_exc()
            code = 1
        if code:  # None or 0 is success
            failures.append(name)
    if failures:
        print(f"\nbenchmarks that failed: {', '.join(failures)}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
