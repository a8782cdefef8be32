"""One pinned set: requirements*.txt, environment.yml, pyproject.toml and the .venv agree.

Each checker returns a list of problems (empty: fine) for the files under a root directory, so it
is tested on broken copies in tmp_path before it is trusted on the repository.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ("requirements.txt", "requirements-dev.txt", "requirements-gpu.txt")
INCLUDES_RUNTIME = ("requirements-dev.txt", "requirements-gpu.txt")
OPTIONAL = ("unsloth", "unsloth-zoo")  # GPU extra: checked against the venv only when installed
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$")
ENV_FILES = (*REQUIREMENTS, "environment.yml", "pyproject.toml")


def parse_requirements(text: str) -> tuple[dict[str, str], list[str], list[str]]:
    """(pins {canonical name: version}, included files, problems) of one requirements file.

    >>> parse_requirements("-r requirements.txt\\ntorch==2.13.0  # cpu\\nnumpy>=1")
    ({'torch': '2.13.0'}, ['requirements.txt'], ["'numpy>=1' is not pinned with =="])
    """
    pins, includes, problems = {}, [], []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            includes.append(line.split(maxsplit=1)[1])
        elif m := PIN.match(line):
            name = canonicalize_name(m.group(1))
            if name in pins:
                problems.append(f"{name} pinned twice")
            pins[name] = m.group(2)
        else:
            problems.append(f"{line!r} is not pinned with ==")
    return pins, includes, problems


def all_pins(root: Path) -> dict[str, dict[str, str]]:
    """{file name: pins} for every requirements file under root."""
    return {name: parse_requirements((root / name).read_text())[0] for name in REQUIREMENTS}


def requirements_problems(root: Path) -> list[str]:
    problems, owner = [], {}
    for name in REQUIREMENTS:
        pins, includes, own = parse_requirements((root / name).read_text())
        problems += [f"{name}: {p}" for p in own]
        for pkg in pins:
            if pkg in owner:
                problems.append(f"{pkg} pinned in both {owner[pkg]} and {name}")
            owner.setdefault(pkg, name)
        if name in INCLUDES_RUNTIME and "requirements.txt" not in includes:
            problems.append(f"{name} does not include -r requirements.txt")
    return problems


def environment_yml_problems(root: Path) -> list[str]:
    """environment.yml: conda gives python and pip; pip gets `-r requirements-dev.txt` and nothing else."""
    env = yaml.safe_load((root / "environment.yml").read_text())
    problems = []
    conda, pip = [], []
    for dep in env.get("dependencies", []):
        if isinstance(dep, dict):
            pip += dep.get("pip", [])
        else:
            conda.append(dep)
    names = [re.split(r"[=<>!]", d, maxsplit=1)[0].strip() for d in conda]
    if sorted(names) != ["pip", "python"]:
        problems.append(f"conda dependencies should be python and pip only, not {conda}")
    if pip != ["-r requirements-dev.txt"]:
        problems.append(f"the pip section should be exactly ['-r requirements-dev.txt'], not {pip}")
    return problems


def pyproject_problems(root: Path) -> list[str]:
    """pyproject.toml declares no pins of its own: requirements*.txt are the one pinned set."""
    project = tomllib.loads((root / "pyproject.toml").read_text()).get("project", {})
    deps = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        deps += extra
    return [f"pyproject.toml pins {d!r} (pins live in requirements*.txt)" for d in deps if re.search(r"[=<>~]", d)]


def installed_problems(root: Path) -> list[str]:
    """Versions installed in this interpreter's environment that differ from the pins."""
    problems = []
    for name, pins in all_pins(root).items():
        for pkg, version in pins.items():
            try:
                installed = importlib.metadata.version(pkg)
            except importlib.metadata.PackageNotFoundError:
                if pkg not in OPTIONAL:
                    problems.append(f"{pkg}=={version} ({name}) is not installed")
                continue
            if installed not in SpecifierSet(f"=={version}"):  # 2.13.0+cpu satisfies ==2.13.0, as in pip
                problems.append(f"{pkg}: installed {installed}, pinned {version} in {name}")
    return problems


# ---- the checkers catch what they should -------------------------------------------------------

@pytest.fixture
def copy_root(tmp_path):
    for name in ENV_FILES:
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_parse_requirements_known_answer():
    pins, includes, problems = parse_requirements("# c\n-r requirements.txt\nTorch==2.13.0  # why\nfoo\n")
    assert (pins, includes, problems) == ({"torch": "2.13.0"}, ["requirements.txt"], ["'foo' is not pinned with =="])


def test_checkers_pass_on_a_copy(copy_root):
    assert requirements_problems(copy_root) == []
    assert environment_yml_problems(copy_root) == []
    assert pyproject_problems(copy_root) == []


def test_checker_catches_a_loose_pin(copy_root):
    _append(copy_root / "requirements.txt", "numpy>=1.26\n")
    assert any("'numpy>=1.26' is not pinned" in p for p in requirements_problems(copy_root))


def test_checker_catches_a_pin_repeated_in_another_file(copy_root):
    _append(copy_root / "requirements-dev.txt", "Torch==2.13.0\n")
    assert "torch pinned in both requirements.txt and requirements-dev.txt" in requirements_problems(copy_root)


def test_checker_catches_a_missing_include(copy_root):
    gpu = copy_root / "requirements-gpu.txt"
    gpu.write_text(gpu.read_text().replace("-r requirements.txt", ""))
    assert "requirements-gpu.txt does not include -r requirements.txt" in requirements_problems(copy_root)


def test_checker_catches_a_pip_package_in_environment_yml(copy_root):
    env = copy_root / "environment.yml"
    env.write_text(env.read_text().replace("- -r requirements-dev.txt", "- -r requirements-dev.txt\n      - numpy==2.0.0"))
    assert environment_yml_problems(copy_root)
    env.write_text(env.read_text().replace("  - pip\n", "  - pip\n  - numpy=2.0\n", 1))
    assert any("python and pip only" in p for p in environment_yml_problems(copy_root))


def test_checker_catches_a_pin_in_pyproject(copy_root):
    pp = copy_root / "pyproject.toml"
    pp.write_text(pp.read_text().replace("dependencies = []", 'dependencies = ["torch==2.13.0"]'))
    assert pyproject_problems(copy_root) == ["pyproject.toml pins 'torch==2.13.0' (pins live in requirements*.txt)"]


def test_checker_catches_a_version_not_installed(copy_root):
    req = copy_root / "requirements.txt"
    req.write_text(re.sub(r"tqdm==\S+", "tqdm==0.0.1", req.read_text()))
    assert [p for p in installed_problems(copy_root) if p.startswith("tqdm")] == [
        f"tqdm: installed {importlib.metadata.version('tqdm')}, pinned 0.0.1 in requirements.txt"
    ]


# ---- the repository ---------------------------------------------------------------------------

def test_requirements_agree():
    assert requirements_problems(ROOT) == []


def test_environment_yml_repeats_no_pin():
    assert environment_yml_problems(ROOT) == []


def test_pyproject_has_no_pins():
    assert pyproject_problems(ROOT) == []


NEWEST_ENV = "COURSE_NEWEST"  # set to 1 by `make test-newest` and the newest-versions workflow


@pytest.mark.skipif(os.environ.get(NEWEST_ENV) == "1",
                    reason=f"{NEWEST_ENV}=1: the newest-versions job installs newer releases than the pins on purpose")
def test_installed_versions_equal_the_pins():
    assert installed_problems(ROOT) == []


# ---- CI runs what the README tells people to run -----------------------------------------------

def readme_quickstart_commands(readme: str) -> list[str]:
    """Commands of the first fenced block after the '## Quickstart' heading (comments dropped).

    >>> readme_quickstart_commands("## Quickstart\\n```bash\\nmake run   # all\\nmake test\\n```\\n")
    ['make run', 'make test']
    """
    section = readme.split("## Quickstart", 1)[1]
    block = re.search(r"```[a-z]*\n(.*?)```", section, re.DOTALL).group(1)
    return [c for c in (line.split("#", 1)[0].strip() for line in block.splitlines()) if c]


def script_commands(script: str) -> list[str]:
    """Non-comment, non-empty lines of a shell script."""
    return [c for c in (line.split("#", 1)[0].strip() for line in script.splitlines()) if c]


def test_readme_quickstart_parser_known_answer():
    text = "intro\n## Quickstart\n\n```bash\nmake run    # every lecture\nmake test   # the tests\n```\nmore ```x```"
    assert readme_quickstart_commands(text) == ["make run", "make test"]


def test_ci_runs_the_readme_test_command():
    commands = readme_quickstart_commands((ROOT / "README.md").read_text())
    assert len(commands) == 2, f"the quickstart is exactly two commands, not {commands}"
    run_cmd, test_cmd = commands
    assert "run" in run_cmd and "test" in test_cmd
    assert test_cmd in script_commands((ROOT / ".ci" / "run").read_text())


# ---- the GPU workflow never runs strangers' code ------------------------------------------------

def test_gpu_workflow_is_never_triggered_by_pull_requests():
    from course.links import INSTRUCTOR_REPO as GITHUB_REPO

    text = (ROOT / ".github" / "workflows" / "gpu.yml").read_text()
    workflow = yaml.safe_load(text)
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as True
    assert set(triggers) == {"push", "schedule", "workflow_dispatch"}
    assert triggers["push"]["branches"] == ["main"]
    [job] = workflow["jobs"].values()
    assert job["runs-on"] == ["self-hosted", "gpu"]
    assert "github.event_name != 'pull_request'" in job["if"]
    assert f"github.repository == '{GITHUB_REPO}'" in job["if"]
    assert job["env"]["HF_TOKEN"] == "${{ secrets.HF_TOKEN }}"


# ---- the newest-versions job -------------------------------------------------------------------

def _make_dry_run(*targets: str) -> str:
    """The commands `make` would run for `targets` (every prerequisite treated as out of date)."""
    proc = subprocess.run(["make", "-n", "-B", *targets], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_test_newest_uses_only_its_own_venv():
    commands = _make_dry_run("test-newest")
    venvs = set(re.findall(r"(\.venv[\w-]*)/", commands))
    assert venvs == {".venv-newest"}, f"test-newest must never touch .venv, it uses {venvs}"
    assert "--upgrade -c .venv-newest/constraints.txt" in commands  # newest releases, torch held back
    assert "grep -E '^(torch)==' requirements.txt > .venv-newest/constraints.txt" in commands
    pytest_line = next(line for line in commands.splitlines() if " -m pytest" in line)
    run_line = next(line for line in commands.splitlines() if " -m course run" in line)
    assert f"{NEWEST_ENV}=1 .venv-newest/bin/python -m pytest" in pytest_line
    assert f"{NEWEST_ENV}=1 .venv-newest/bin/python -m course run --profile tiny" in run_line


def test_newest_workflow_runs_weekly_opens_nothing_and_keeps_the_notebooks():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "newest.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))
    assert set(triggers) == {"schedule", "workflow_dispatch"} and triggers["schedule"][0]["cron"]
    assert workflow["permissions"] == {"contents": "read"}  # cannot open issues or push
    [job] = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest" and job["env"][NEWEST_ENV] == "1"
    runs = [s.get("run", "") for s in job["steps"]]
    assert "make test-newest" in runs
    assert not any("gh " in r or "curl" in r for r in runs)
    upload = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and "build/newest/executed" in upload["with"]["path"]


def test_only_the_pins_check_knows_about_the_newest_job():
    """COURSE_NEWEST=1 skips exactly one test, in this file; every other test runs in the newest job."""
    mentions = sorted(p.name for p in (ROOT / "tests").glob("*.py") if NEWEST_ENV in p.read_text())
    assert mentions == ["test_environment_files.py"]
    env = {**os.environ, NEWEST_ENV: "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:xdist", "--noconftest",
         f"{Path(__file__)}::test_installed_versions_equal_the_pins", f"{Path(__file__)}::test_requirements_agree"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert "1 passed, 1 skipped" in proc.stdout, proc.stdout
    assert "SKIPPED [1] tests/test_environment_files.py" in proc.stdout and "COURSE_NEWEST=1" in proc.stdout


def test_make_test_fails_loudly_when_pytest_collects_nothing(tmp_path):
    """pytest's exit 5 (no tests collected) fails `make test` with a message; it never passes silently."""
    (tmp_path / "empty").mkdir()
    stamp = tmp_path / "stamp"
    stamp.touch()
    proc = subprocess.run(
        ["make", "-s", "test", f"PY={sys.executable}", f"STAMP={stamp}", "JOBS=1",
         f"PYTEST_ARGS=-p no:cacheprovider --noconftest {tmp_path / 'empty'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "error: pytest collected no tests (exit 5)" in proc.stderr
