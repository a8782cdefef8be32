"""Test-session settings: the tiny profile's models are small enough that one thread is fastest,
tests never reach the Hub, and the tests are safe to run in parallel (`make test` uses pytest-xdist).

Parallel safety:
- every run gets its own stand-in cache (`COURSE_CACHE_DIR` under the run's pytest temp directory),
  built once per run before any test needs it, by whichever worker gets there first (a file lock
  makes the others wait and then reuse it), so no test shares or races on the checkout's build/;
- tests that share a module- or class-scoped fixture (e.g. the graded class in test_grading.py) are
  put in one xdist group, so `--dist loadgroup` sends them to one worker and the fixture runs once;
  every other test, the heavy notebook runs included, is spread over the workers one by one, the
  `slow` ones first.
"""

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_SCOPES = {"module", "class", "package"}


def run_shared_dir(tmp_path_factory) -> "os.PathLike":
    """A directory shared by every xdist worker of this run (the run's own temp dir without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session", autouse=True)
def tiny_model_cache(tmp_path_factory):
    """This run's stand-in cache, every stand-in built once (what `course run` does before its kernels
    start); kernels started by the notebook tests inherit COURSE_CACHE_DIR and find them built."""
    from filelock import FileLock

    from course.run import prepare_profile

    cache = run_shared_dir(tmp_path_factory) / "tiny-models"
    saved = os.environ.get("COURSE_CACHE_DIR")
    os.environ["COURSE_CACHE_DIR"] = str(cache)
    with FileLock(str(cache) + ".lock"):
        prepare_profile("tiny")
    yield cache
    if saved is None:
        os.environ.pop("COURSE_CACHE_DIR", None)
    else:
        os.environ["COURSE_CACHE_DIR"] = saved


def xdist_group_of(item) -> str | None:
    """The module's path when the test uses a module/class/package-scoped fixture, else None.

    Such a fixture is built once per worker that runs one of its tests: keeping its tests together
    builds it once.
    """
    info = getattr(item, "_fixtureinfo", None)
    if info is None:  # doctest items and other non-function items
        return None
    scopes = {d.scope for defs in info.name2fixturedefs.values() for d in defs}
    return item.nodeid.split("::", 1)[0] if scopes & SHARED_SCOPES else None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the marks into groups
def pytest_collection_modifyitems(config, items):
    """Group tests that share a module/class fixture, and hand out the slow ones (`slow` marker:
    notebook runs, the graded class) first: the short tests then fill the gaps at the end instead of
    one worker finishing a long notebook alone. Order within each class of tests is kept."""
    for item in items:
        group = xdist_group_of(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
