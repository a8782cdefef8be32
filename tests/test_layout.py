"""The two trees stay apart: `helpers` (what a notebook imports) needs only requirements.txt, never
imports the course tooling, has no import cycles, and each shared constant has one home."""

from __future__ import annotations

import ast
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import helpers

ROOT = Path(__file__).resolve().parents[1]
HELPERS = ROOT / "helpers"
TOOLING = ("course", "benchmarks", "nbgrader", "papermill", "nbclient", "nbconvert", "pytest")
MODULES = sorted(m.name for m in pkgutil.iter_modules(helpers.__path__) if not m.name.startswith("_"))

# Imports of these are refused inside the child process: helpers must work with requirements.txt alone.
BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked: {{name}} is not in requirements.txt")
        return None
sys.meta_path.insert(0, Block())
import importlib
for name in {modules!r}:
    importlib.import_module("helpers." + name)
print("imported", len({modules!r}))
"""


def test_every_helpers_module_imports_without_the_tooling():
    code = BLOCKER.format(blocked=TOOLING, modules=MODULES)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"imported {len(MODULES)}" in done.stdout


def test_the_blocker_really_blocks():
    """The check above can fail: a module that imports nbgrader is refused."""
    code = BLOCKER.format(blocked=TOOLING, modules=[]) + "\nimport nbgrader\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode != 0 and "blocked: nbgrader" in done.stderr


def _imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in `path`, outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text(), str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside helpers
                base = "helpers" + (("." + node.module) if node.module else "")
                if node.module is None:
                    found += [(f"helpers.{a.name}", node.lineno) for a in node.names]
                else:
                    found.append((base, node.lineno))
            elif node.module:
                found.append((node.module, node.lineno))
                if node.module == "helpers":
                    found += [(f"helpers.{a.name}", node.lineno) for a in node.names]
    return found


def test_helpers_never_imports_tooling():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}"
           for p in sorted(HELPERS.glob("*.py")) for name, line in _imports(p)
           if name.split(".")[0] in TOOLING]
    assert not bad, bad


def _graph() -> dict[str, set[str]]:
    graph = {}
    for p in sorted(HELPERS.glob("*.py")):
        if p.stem == "__init__":
            continue
        deps = {name.split(".")[1] for name, _ in _imports(p) if name.startswith("helpers.")}
        graph[p.stem] = {d for d in deps if d != p.stem and (HELPERS / f"{d}.py").exists()}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles_in_helpers():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()))


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


# A literal that belongs in helpers/constants.py, and the pattern that finds a second copy of it.
CONSTANT_COPIES = {
    "GiB (2**30)": re.compile(r"2\s*\*\*\s*30|1073741824|1024\s*\*\*\s*3"),
    "offline variables": re.compile(r"""["']HF_HUB_OFFLINE["']\s*[:,)]"""),
    "profile names": re.compile(r"""\(\s*["']auto["']\s*,\s*["']tiny["']\s*,\s*["']full["']\s*\)"""),
    "token variables": re.compile(r"""["']HUGGING_FACE_HUB_TOKEN["']"""),
}


@pytest.mark.parametrize("what", sorted(CONSTANT_COPIES))
def test_shared_constants_have_one_home(what):
    pattern = CONSTANT_COPIES[what]
    home = HELPERS / "constants.py"
    assert pattern.search(home.read_text()), f"{what} is not defined in helpers/constants.py"
    copies = []
    for folder in ("helpers", "course", "benchmarks"):
        for p in sorted((ROOT / folder).rglob("*.py")):
            if p == home:
                continue
            code = "\n".join(line for line in p.read_text().splitlines() if not line.lstrip().startswith("#"))
            code = re.sub(r'""".*?"""', "", code, flags=re.S)  # docstrings may mention a value
            if pattern.search(code):
                copies.append(str(p.relative_to(ROOT)))
    assert not copies, f"{what} defined again in {copies}; import it from helpers.constants"
