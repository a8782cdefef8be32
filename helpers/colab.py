"""Colab support: detect the runtime, and the install step the notebooks' Colab cell runs.

The install cell (cell 2 of every notebook) clones the student repository and then runs this file
*as a script* — before any course module is imported, so nothing stale is cached in the kernel:

    python helpers/colab.py install /content/course/requirements.txt

It installs every pin of that file (following ``-r`` includes) **except torch**: Colab's own torch
is built for the runtime's CUDA driver, and replacing it with the registry's build can make CUDA
disappear. The torch & co already installed are also passed to pip as constraints, so no other pin
can pull a different build in as a dependency: pip then fails with a message instead. The cell puts the clone on ``sys.path`` (a path entry, not ``pip install -e``: an
editable install is a ``.pth`` file, read only when Python starts, so the running kernel could not
import it). Only the standard library is used here.

>>> keep_pin("torch==2.13.0"), keep_pin("transformers==5.17.0"), keep_pin("# torch==1")
(False, True, True)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# The runtime's builds of these match its driver: keep them (lowercase distribution names).
RUNTIME_PACKAGES = ("torch", "torchvision", "torchaudio", "triton")


def in_colab() -> bool:
    """True inside a Google Colab runtime (the `google.colab` module is importable there only)."""
    if "google.colab" in sys.modules:
        return True
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


def keep_pin(line: str) -> bool:
    """False for a requirement line that pins one of RUNTIME_PACKAGES."""
    name = re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
    return name not in RUNTIME_PACKAGES


def pins_without_runtime(requirements: str | os.PathLike) -> list[str]:
    """Every requirement line of `requirements` and the files it includes with ``-r``, minus torch & co."""
    path = Path(requirements)
    lines: list[str] = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            lines += pins_without_runtime(path.parent / line.split(None, 1)[1])
        elif keep_pin(line):
            lines.append(line)
    return lines


def runtime_constraints() -> list[str]:
    """``name==version`` of each RUNTIME_PACKAGES distribution installed here (pip may not replace them).

    >>> all(line.split("==")[0] in RUNTIME_PACKAGES for line in runtime_constraints())
    True
    """
    from importlib import metadata

    found = []
    for name in RUNTIME_PACKAGES:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return found


def install(requirements: str | os.PathLike, pip_args: tuple[str, ...] = ("-q",)) -> int:
    """pip-install the pins of `requirements`, keeping the runtime's torch & co; returns pip's exit code."""
    with tempfile.TemporaryDirectory(prefix="course-pins-") as tmp:
        pins, constraints = Path(tmp, "pins.txt"), Path(tmp, "constraints.txt")
        pins.write_text("\n".join(pins_without_runtime(requirements)) + "\n")
        constraints.write_text("\n".join(runtime_constraints()) + "\n")
        command = [sys.executable, "-m", "pip", "install", *pip_args, "-r", str(pins), "-c", str(constraints)]
        return subprocess.call(command)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "install":
        sys.exit("usage: python helpers/colab.py install REQUIREMENTS_FILE")
    sys.exit(install(sys.argv[2]))
