"""Run every benchmark module present: `python -m benchmarks [name ...]`.

The registry lists module names (or `module:function`), imported lazily, so a benchmark that is not
written yet (or whose optional dependencies are missing) is reported as skipped instead of breaking
the others. Benchmarks in OPT_IN run only when named (they take minutes).

    $ python -m benchmarks course
    == course: wall time of every lecture in the tiny profile, serial vs parallel ==
    ...
    $ python -m benchmarks tests      # the whole test suite twice: serial, then with pytest-xdist
"""

from __future__ import annotations

import importlib
import sys
import traceback

# (name, module, what it prints) — in the order they run
REGISTRY = [
    ("course", "benchmarks.course", "wall time of every lecture in the tiny profile, serial vs parallel"),
    ("tests", "benchmarks.course:main_tests", "wall time of the test suite, serial vs pytest-xdist (opt-in)"),
    ("autograde", "benchmarks.autograde", "time to autograde the assignments"),
    ("gpu_recipes", "benchmarks.gpu_recipes", "GPU memory fit and HF vs Unsloth (CUDA only)"),
]


OPT_IN = {"tests"}  # run only when named: `python -m course bench tests`


def load(module: str):
    """The benchmark's main function (`module:function`, default `main`), or None when the module
    does not exist (yet)."""
    module, _, function = module.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise
    return getattr(mod, function or "main")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    known = [name for name, _, _ in REGISTRY]
    unknown = [a for a in argv if a not in known]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {known}", file=sys.stderr)
        return 2
    failures = []
    for name, module, what in REGISTRY:
        if (argv and name not in argv) or (not argv and name in OPT_IN):
            continue
        print(f"\n== {name}: {what} ==", flush=True)
        try:
            run = load(module)
            if run is None:
                print(f"skipped: {module.partition(':')[0]} is not present")
                continue
            code = run()
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
