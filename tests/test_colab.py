"""The Colab path, simulated at the lowest layers a CPU box reaches: a real kernel, real git, real pip.

For every notebook of the student tree (lectures and assignments) a fresh "Colab runtime" is built:
  - a new Python environment (`venv --without-pip`) that sees the course's dependencies through a
    `.pth` line naming the shared `.venv`'s site-packages, but not the course package: a directory
    named in a `.pth` file joins `sys.path`, its own `.pth` files (the editable install) are not read;
  - an IPython kernel started from that environment's python, whose startup has already *imported* a
    stub `google.colab` (the install cell tests `sys.modules`);
  - a private HOME, cwd `<tmp>/content`, COURSE_DIR `<tmp>/content/course`, and COURSE_REPO a
    file:// URL of a git repository made from the published student tree (what Colab clones);
  - `PIP_NO_INDEX=1`: real pip runs offline; every pin of requirements.txt is already satisfied, so it
    installs nothing (lecture 04's Unsloth pins come from a local wheelhouse of stand-in wheels, the
    only thing pip may install; torch never).
The title cell, the install cell, the parameters cell (then PROFILE = "tiny", as papermill injects
it) and the notebook's first code cell after the parameters run in one kernel; then `helpers` must be
the clone's, in the same kernel, and a second run of the install cell must change nothing.
The previous install cell (`%pip install -e`) is kept below: in the same simulation it must fail with
ModuleNotFoundError although its pip succeeded, which is last round's Colab bug.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import sysconfig
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from course import publish
from course.links import clone_url
from course.notebook_header import INSTALL_TAG, PARAMETERS_TAG, has_tag
from helpers.colab import pins_without_runtime

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SHARED_SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"]).resolve()
NOTEBOOKS = sorted([*(p.relative_to(ROOT).as_posix() for p in (ROOT / "lectures").glob("*.ipynb")),
                    *(p.relative_to(ROOT).as_posix() for p in (ROOT / "assignments").glob("*/*.ipynb"))])
RUNTIME_PACKAGES = ("torch", "torchvision", "torchaudio", "triton", "nvidia")
WORKERS = 2
# The install cell's text is one of two (tested below); re-running it is checked once for each.
REINSTALL = ("lectures/00_environment_check.ipynb", "lectures/04_unsloth_llama31.ipynb")
CELL_TIMEOUT = 240

# The install cell of the previous round (a7027c4), kept verbatim but for the two places the
# simulation moves: the clone URL and /content/course.
OLD_INSTALL_CELL = """\
# Colab only: fetch the course and install its pinned environment (does nothing elsewhere).
import sys

if "google.colab" in sys.modules:
    !git clone -q --depth 1 https://github.com/llm-course/llm-finetuning-course /content/course
    %pip install -q -r /content/course/requirements.txt -e /content/course"""

# Runs in the kernel: what this kernel can see of the course, as one JSON line.
PROBE = """\
import importlib.util, json, os, sys
_spec = importlib.util.find_spec("helpers")
print("PROBE " + json.dumps({"colab": "google.colab" in sys.modules, "helpers": _spec and _spec.origin,
                             "course_dir_entries": sys.path.count(os.environ["COURSE_DIR"]),
                             "executable": sys.executable}))"""
IMPORT_HELPERS = "import helpers\nprint('HELPERS ' + helpers.__file__)"


@pytest.fixture(scope="module")
def student_repo(tmp_path_factory) -> Path:
    """A git repository holding the published student tree: the clone source Colab would use.

    The files are `publish.student_files` written by `publish.write_tree`, i.e. what `publish` writes
    once its checks pass (those refusals are tested in test_publish.py, not repeated here).
    """
    repo = tmp_path_factory.mktemp("student-repo") / "llm-finetuning-course"
    publish.write_tree(publish.student_files(ROOT), repo)
    git = ["git", "-c", "user.name=publish", "-c", "user.email=publish@example.invalid", "-C", str(repo)]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "publish"]):
        subprocess.run([*git, *args], check=True)
    return repo


def _stand_in_wheel(directory: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    """An empty wheel of `name` (with `requires` as its dependencies): what a registry would serve."""
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {f"{dist}/METADATA": metadata,
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test_colab\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{dist}/RECORD"])
    with zipfile.ZipFile(directory / f"{name.replace('-', '_')}-{version}-py3-none-any.whl", "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    """Stand-ins for the pins that requirements.txt lacks (requirements-gpu.txt's Unsloth)."""
    directory = tmp_path_factory.mktemp("wheelhouse")
    extra = (ROOT / "requirements-gpu.txt").read_text().splitlines()
    for line in extra:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match:
            _stand_in_wheel(directory, *match.groups())
    return directory


@dataclass
class Runtime:
    """One simulated Colab runtime under `base` (a fresh environment, kernel settings, /content)."""

    base: Path
    repo: Path
    wheelhouse: Path
    env_dir: Path = field(init=False)
    content: Path = field(init=False)
    course_dir: Path = field(init=False)

    def __post_init__(self):
        self.env_dir, self.content = self.base / "env", self.base / "content"
        self.course_dir = self.content / "course"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(self.env_dir)], check=True)
        (self.site_packages / "shared-dependencies.pth").write_text(f"{SHARED_SITE_PACKAGES}\n")
        colab = self.base / "stub" / "google" / "colab"  # `google` stays a namespace package
        colab.mkdir(parents=True)
        (colab / "__init__.py").write_text('"""Stand-in for Colab\'s google.colab module."""\n')
        startup = self.base / "ipython" / "profile_default" / "startup"
        startup.mkdir(parents=True)
        (startup / "00-colab.py").write_text("import google.colab  # Colab's kernel has it imported\n")
        for path in (self.base / "home", self.content):
            path.mkdir()

    @property
    def python(self) -> Path:
        return self.env_dir / "bin" / "python"

    @property
    def site_packages(self) -> Path:
        return self.env_dir / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"

    def environ(self) -> dict[str, str]:
        """The kernel's whole environment: nothing of the test process (no PYTHONPATH to the course)."""
        return {
            "PATH": f"{self.env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.base / "home"), "LANG": "C.UTF-8",
            "PYTHONPATH": str(self.base / "stub"), "IPYTHONDIR": str(self.base / "ipython"),
            "COURSE_DIR": str(self.course_dir), "COURSE_REPO": self.repo.as_uri(),
            "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(self.wheelhouse), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_ROOT_USER_ACTION": "ignore", "PIP_CONFIG_FILE": os.devnull,  # no pip.conf of this machine
            "PIP_VERBOSE": "1",  # with the cell's -q: pip's normal messages ("Requirement already satisfied")
            "PIP_NO_BUILD_ISOLATION": "0",  # "0" *disables* isolation (the old cell builds the editable offline)
            "MPLBACKEND": "agg", "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        }

    def run_python(self, code: str) -> subprocess.CompletedProcess:
        """`code` in a new process of this environment (cwd /content), as a fresh kernel would start."""
        return subprocess.run([str(self.python), "-c", code], env=self.environ(), cwd=self.content,
                              capture_output=True, text=True)

    def installed(self) -> set[str]:
        """Distributions pip installed into this environment (names of its own site-packages)."""
        return {p.name for p in self.site_packages.iterdir() if p.name != "shared-dependencies.pth"}

    def kernel_manager(self) -> AsyncKernelManager:
        kernels = self.base / "kernels"
        spec = kernels / "colab-sim"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [str(self.python), "-m", "ipykernel_launcher", "-f", "{connection_file}",
                     "--IPKernelApp.log_level=ERROR"],  # not its TCP-without-encryption warning
            "display_name": "Colab (simulated)", "language": "python"}))
        return AsyncKernelManager(kernel_name="colab-sim", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))


@dataclass
class Outcome:
    """What one simulated "Run all" printed, cell by cell, and where it stopped."""

    outputs: dict[str, str] = field(default_factory=dict)
    error: CellExecutionError | None = None
    failed_cell: str | None = None
    seconds: float = 0.0

    def probe(self, label: str) -> dict:
        line = next(x for x in self.outputs[label].splitlines() if x.startswith("PROBE "))
        return json.loads(line.removeprefix("PROBE "))


def header_and_first_cells(rel: str, install_source: str | None = None) -> list[tuple[str, object]]:
    """(label, cell) to run: title, probe, install, parameters, PROFILE="tiny", first code cell, checks."""
    nb = nbformat.read(ROOT / rel, as_version=4)
    cells = nb.cells
    assert has_tag(cells[1], INSTALL_TAG) and has_tag(cells[2], PARAMETERS_TAG), rel
    install = nbformat.v4.new_code_cell(install_source or cells[1].source)
    first_code = next(c for c in cells[3:] if c.cell_type == "code")
    new = nbformat.v4.new_code_cell
    run = [("title", cells[0]), ("probe before install", new(PROBE)), ("install", install),
           ("parameters", cells[2]), ("injected parameters", new('PROFILE = "tiny"')),
           ("first code cell", first_code), ("import helpers", new(IMPORT_HELPERS)), ("probe after install", new(PROBE))]
    if rel in REINSTALL:
        run += [("install again", new(install.source)), ("probe after reinstall", new(PROBE))]
    return run


async def _run(runtime: Runtime, cells) -> Outcome:
    nb = nbformat.v4.new_notebook(cells=[cell for _, cell in cells])
    client = NotebookClient(nb, km=runtime.kernel_manager(), timeout=CELL_TIMEOUT, startup_timeout=120, shutdown_kernel="immediate",
                            resources={"metadata": {"path": str(runtime.content)}})
    outcome = Outcome()
    start = time.perf_counter()
    async with client.async_setup_kernel(cleanup_kc=True, env=runtime.environ()):  # shut the kernel down after
        for index, (label, cell) in enumerate(cells):
            try:
                await client.async_execute_cell(nb.cells[index], index)
            except CellExecutionError as exc:
                outcome.error, outcome.failed_cell = exc, label
                break
            finally:
                outcome.outputs[label] = "".join(o.get("text", "") for o in nb.cells[index].get("outputs", []))
    outcome.seconds = time.perf_counter() - start
    return outcome


def simulate(rel: str, base: Path, repo: Path, wheelhouse: Path, install_source: str | None = None):
    """(runtime, outcome) of one notebook's header and first cells in a fresh simulated Colab runtime."""
    runtime = Runtime(base, repo, wheelhouse)
    before = runtime.run_python("import importlib.util as u; print(u.find_spec('helpers'), u.find_spec('torch') is not None)")
    assert before.returncode == 0, before.stderr
    assert before.stdout.split() == ["None", "True"], f"the new environment must see torch but not helpers: {before.stdout}"
    if install_source is not None:
        install_source = (install_source.replace("https://github.com/llm-course/llm-finetuning-course", runtime.repo.as_uri())
                          .replace("/content/course", str(runtime.course_dir)))
    return runtime, asyncio.run(_run(runtime, header_and_first_cells(rel, install_source)))


def _check_runtime(rel: str, runtime: Runtime, outcome: Outcome) -> list[str]:
    """Everything wrong with one simulated run of the current install cell (empty: the path works)."""
    if outcome.error is not None:
        return [f"{rel}: stopped at the {outcome.failed_cell} cell: {outcome.error.ename}: {outcome.error.evalue}"]
    problems = []
    before, after = outcome.probe("probe before install"), outcome.probe("probe after install")
    again = outcome.probe("probe after reinstall") if rel in REINSTALL else after
    helpers_init = str(runtime.course_dir / "helpers" / "__init__.py")
    if not before["colab"] or before["helpers"] is not None:
        problems.append(f"{rel}: before the install cell google.colab must be imported and helpers absent: {before}")
    if Path(before["executable"]).parent != runtime.python.parent:
        problems.append(f"{rel}: the kernel does not run the runtime's python: {before['executable']}")
    if outcome.outputs["import helpers"].split() != ["HELPERS", helpers_init]:
        problems.append(f"{rel}: helpers is not the clone's: {outcome.outputs['import helpers']!r}")
    if after["helpers"] != helpers_init or again != after or after["course_dir_entries"] != 1:
        problems.append(f"{rel}: re-running the install cell changed the kernel: {after} -> {again}")
    installed = runtime.installed()
    if [name for name in installed if name.lower().startswith(RUNTIME_PACKAGES)]:
        problems.append(f"{rel}: pip installed the runtime's own packages: {sorted(installed)}")
    gpu = "requirements-gpu.txt" in nbformat.read(ROOT / rel, as_version=4).cells[1].source
    wanted = {whl.name.split("-py3-")[0] + ".dist-info" for whl in runtime.wheelhouse.glob("*.whl")} if gpu else set()
    pip_said = outcome.outputs["install"]
    for pin in pins_without_runtime(ROOT / "requirements.txt"):
        if f"Requirement already satisfied: {pin}" not in pip_said:
            problems.append(f"{rel}: pip did not report {pin} as already satisfied")
    if re.search(r"^Requirement already satisfied: (torch|triton)==", pip_said, re.MULTILINE):
        problems.append(f"{rel}: the install cell asked pip for the runtime's torch")
    if installed != wanted:
        problems.append(f"{rel}: pip installed {sorted(installed)}, expected {sorted(wanted)}")
    return problems


def test_the_simulated_runtime_is_colab_like(student_repo, wheelhouse, tmp_path):
    """The environment has the dependencies but not the course; the clone source is the student tree."""
    runtime = Runtime(tmp_path / "rt", student_repo, wheelhouse)
    probe = runtime.run_python("import helpers")
    assert probe.returncode != 0 and "No module named 'helpers'" in probe.stderr
    shared = runtime.run_python("import nbclient, ipykernel, transformers, sys; print(sys.prefix)")
    assert shared.returncode == 0 and shared.stdout.strip() == str(runtime.env_dir), shared.stderr
    listed = subprocess.run(["git", "ls-files"], cwd=student_repo, capture_output=True, text=True, check=True).stdout
    assert "helpers/colab.py" in listed and "solutions/" not in listed and "course/" not in listed
    assert clone_url().startswith("https://github.com/")


def test_every_notebook_imports_helpers_after_the_install_cell(student_repo, wheelhouse, tmp_path):
    """All notebooks, each in its own runtime, two at a time: install, parameters, first cell, helpers."""
    def one(rel):
        base = tmp_path / rel.replace("/", "_").removesuffix(".ipynb")
        base.mkdir()
        runtime, outcome = simulate(rel, base, student_repo, wheelhouse)
        print(f"{rel}: {outcome.seconds:.1f} s in the kernel")
        return _check_runtime(rel, runtime, outcome)

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        problems = [p for found in pool.map(one, NOTEBOOKS) for p in found]
    assert len(NOTEBOOKS) >= 10
    assert problems == []


def test_the_previous_install_cell_fails_in_the_simulation(student_repo, wheelhouse, tmp_path):
    """`%pip install -e` succeeds, yet the running kernel cannot import helpers: last round's bug."""
    rel = "lectures/00_environment_check.ipynb"
    runtime, outcome = simulate(rel, tmp_path, student_repo, wheelhouse, install_source=OLD_INSTALL_CELL)
    assert outcome.failed_cell == "first code cell", outcome.outputs
    assert outcome.error.ename == "ModuleNotFoundError" and "helpers" in outcome.error.evalue
    # ... and not because pip failed: the editable install is there, and a new process imports it.
    assert any(name.startswith("__editable__") for name in runtime.installed()), runtime.installed()
    fresh = runtime.run_python("import helpers; print(helpers.__file__)")
    assert fresh.stdout.strip() == str(runtime.course_dir / "helpers" / "__init__.py"), fresh.stderr


def test_the_install_cell_text_is_what_the_simulation_ran():
    """The notebooks' cell 2 comes from course.notebook_header (so simulating it covers every notebook)."""
    from course.notebook_header import install_source

    for rel in NOTEBOOKS:
        cell = nbformat.read(ROOT / rel, as_version=4).cells[1].source
        assert cell in {install_source("requirements.txt"), install_source("requirements-gpu.txt")}, rel


def test_a_failed_install_stops_run_all_at_the_install_cell(student_repo, tmp_path):
    """`!` never raises: without a check, Run all would go on past a failed pip (here: Unsloth offline)."""
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    runtime, outcome = simulate("lectures/04_unsloth_llama31.ipynb", tmp_path / "rt", student_repo, empty)
    assert outcome.failed_cell == "install", outcome.outputs
    assert outcome.error.ename == "RuntimeError" and "installing the course failed" in outcome.error.evalue
    assert "No matching distribution found for unsloth" in outcome.outputs["install"], outcome.outputs["install"]
    assert runtime.installed() == set()


def test_install_keeps_the_runtime_torch_when_a_pin_wants_another(student_repo, tmp_path):
    """A pin whose dependency asks for a newer torch must not replace the runtime's torch: pip refuses."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _stand_in_wheel(wheels, "torch", "99.0")
    _stand_in_wheel(wheels, "needs-newer-torch", "1.0", requires=("torch>=99",))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("needs-newer-torch==1.0\ntorch==99.0\n")
    runtime = Runtime(tmp_path / "rt", student_repo, wheels)
    result = subprocess.run([str(runtime.python), str(ROOT / "helpers" / "colab.py"), "install", str(requirements)],
                            env=runtime.environ(), cwd=runtime.content, capture_output=True, text=True)
    assert result.returncode != 0, result.stdout
    assert "torch" in result.stdout + result.stderr
    assert runtime.installed() == set()  # neither the stand-in torch nor the package that wanted it
