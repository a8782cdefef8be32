"""A check that cannot fail is a defect: no test returns early, and every skip says why.

A `return` inside a test function ends it green without asserting anything (as a GPU-only test did
when it ran on a GPU); a skip without a reason hides what was not checked. Both are refused here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SKIPPERS = ("skip", "skipif", "importorskip", "xfail")


def _test_functions(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            yield node


def _own_nodes(func: ast.AST):
    """Nodes of `func` itself, not of functions or classes defined inside it."""
    todo = list(ast.iter_child_nodes(func))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def early_returns(source: str) -> list[str]:
    """'name:line' of each `return` in a test function.

    >>> early_returns("def test_a():\\n    if x:\\n        return\\n    assert x\\n")
    ['test_a:3']
    >>> early_returns("def test_b():\\n    def helper():\\n        return 1\\n    assert helper()\\n")
    []
    """
    tree = ast.parse(source)
    return [f"{f.name}:{n.lineno}" for f in _test_functions(tree) for n in _own_nodes(f) if isinstance(n, ast.Return)]


def silent_skips(source: str) -> list[int]:
    """Lines of pytest.skip / skipif / importorskip / xfail calls that give no reason.

    >>> silent_skips("import pytest\\npytest.skip()\\npytest.skip('no GPU')\\n")
    [2]
    >>> silent_skips("@pytest.mark.skipif(True)\\ndef test_x(): pass\\n")
    [1]
    >>> silent_skips("@pytest.mark.skipif(True, reason='why')\\ndef test_x(): pass\\n")
    []
    """
    bad = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name not in SKIPPERS:
            continue
        has_reason = any(k.arg in ("reason", "msg") for k in node.keywords)
        if name == "skip":
            has_reason = has_reason or bool(node.args)
        elif name == "importorskip":
            has_reason = has_reason or len(node.args) >= 3  # modname, minversion, reason
        elif name in ("skipif", "xfail"):
            has_reason = has_reason or (name == "xfail" and len(node.args) >= 2)
        if not has_reason:
            bad.append(node.lineno)
    return bad


FILES = sorted(TESTS.glob("test_*.py")) + sorted(TESTS.glob("conftest.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_test_returns_early(path):
    assert early_returns(path.read_text()) == [], f"{path.name}: a test returns before asserting"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_skip_gives_its_reason(path):
    assert silent_skips(path.read_text()) == [], f"{path.name}: skip without a reason"
