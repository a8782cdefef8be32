"""`python -m course <command> [options]`: the one CLI of the course tooling (see `course/__init__.py`).

>>> main(["--help"])  # doctest: +ELLIPSIS
usage: python -m course <command> [options]
...
0
"""

from __future__ import annotations

import importlib
import sys

# command -> (module, one-line help); each module has main(argv) -> exit code.
COMMANDS = {
    "run": ("course.run", "execute notebooks headless (papermill), profile tiny|full|auto"),
    "release": ("course.grading", "regenerate assignments/ from solutions/"),
    "grade": ("course.grading", "autograde submitted/ into build/grades.csv and feedback"),
    "publish": ("course.publish", "write the student tree (build/student/)"),
    "bench": ("benchmarks.__main__", "print benchmark figures"),
    "header": ("course.notebook_header", "stamp/check notebook header cells, strip outputs"),
    "datasets": ("course.make_datasets", "regenerate the shipped tiny datasets"),
}
# Commands whose module parses the command name itself (one parser, several subcommands).
PASS_COMMAND = {"release", "grade"}


def usage() -> str:
    lines = ["usage: python -m course <command> [options]", "", "commands:"]
    lines += [f"  {name:<9} {text}" for name, (_, text) in COMMANDS.items()]
    lines.append("\n`python -m course <command> --help` for a command's options.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    code = module.main([command, *rest] if command in PASS_COMMAND else rest)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
