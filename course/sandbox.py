"""Run one submission's Jupyter kernel in a sandbox: the only place student code ever runs.

Contract (every backend): the kernel sees a scratch folder (read-write: the student's notebook, the
kernel's sockets) and, read-only, the Python it runs on, the venv, `helpers` and the tiny-model cache;
its own HOME and /tmp (size-capped tmpfs); no network (the kernel talks to the grader over Unix
sockets, ZeroMQ's `ipc` transport, so not even loopback is up); capped address space, processes, file
size, CPU time and open files; and everything it starts dies with it (a PID namespace: when the
kernel, PID 1 there, goes, the kernel kills every process left in it, `setsid` or not).

Backends, best first:
- `unshare` (Linux, util-linux): mount + network + PID namespaces (+ a user namespace when not root),
  a fresh tmpfs root with read-only binds, chroot, rlimits, then the privileges are dropped (as root:
  an unused uid/gid of its own; in a user namespace: no capabilities) and `no_new_privs` is set
  before the kernel runs. A tiny init (PID 1, grader code) stays in the namespace: it dies with
  the grader, and the namespace (every process in it) with it.
- `docker` / `podman`: the same contract with `--network none --read-only --pids-limit --memory ...`.

`backend()` picks the first that works on this machine, or None (then grading refuses unless
`--no-sandbox`). What the sandbox does NOT protect against is listed in README "For instructors".

>>> Limits().rlimits()["RLIMIT_CORE"]
(0, 0)
>>> sorted(kernel_env("/course", "/cache"))[:3]
['COURSE_CACHE_DIR', 'HF_DATASETS_OFFLINE', 'HF_HUB_OFFLINE']
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers.constants import GIB, OFFLINE_ENV

# Run inside the namespaces (stdlib only): builds the root, stays PID 1, starts the kernel.
INIT_SCRIPT = str(Path(__file__).with_name("sandbox_init.py"))
MIB = GIB // 1024

BACKENDS = ("unshare", "docker", "podman")
UID_BASE, UID_RANGE = 200_000, 100_000  # as root: each sandbox runs as its own unused uid (own process cap)
COURSE_MOUNT = "/course"  # helpers/ is bound at /course/helpers, the tiny-model cache at /course/cache
SANDBOX_ENV = "COURSE_SANDBOX"  # set in the kernel: which backend runs it


@dataclasses.dataclass(frozen=True)
class Limits:
    """Caps for one kernel and everything it starts."""

    memory_bytes: int = 6 * GIB  # address space (torch maps a lot it never touches)
    processes: int = 256  # threads count too (torch, tokenizers)
    file_bytes: int = 64 * MIB  # largest file it may write
    cpu_seconds: int = 600
    open_files: int = 1024
    tmp_bytes: int = 256 * MIB  # /tmp and /dev/shm (tmpfs)

    def rlimits(self) -> dict[str, tuple[int, int]]:
        return {"RLIMIT_AS": (self.memory_bytes,) * 2, "RLIMIT_NPROC": (self.processes,) * 2,
                "RLIMIT_FSIZE": (self.file_bytes,) * 2, "RLIMIT_CPU": (self.cpu_seconds,) * 2,
                "RLIMIT_NOFILE": (self.open_files,) * 2, "RLIMIT_CORE": (0, 0)}


def kernel_env(course: str, cache: str) -> dict[str, str]:
    """The whole environment of a sandboxed kernel: nothing inherited from the grader."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp/home", "LANG": "C.UTF-8",
            "PYTHONPATH": course, "COURSE_CACHE_DIR": cache, "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg",
            **OFFLINE_ENV,
            "NBGRADER_EXECUTION": "autograde", "PYTHONDONTWRITEBYTECODE": "1", "IPYTHONDIR": "/tmp/home/.ipython"}


@dataclasses.dataclass
class Sandbox:
    """Where one kernel runs: `scratch` (read-write) plus read-only `helpers` and `cache`."""

    backend: str
    scratch: Path
    helpers: Path
    cache: Path | None = None
    limits: Limits = Limits()
    sockets: Path | None = None  # the kernel's Unix sockets (a short path: at most ~100 characters)

    def socket_dir(self) -> Path:
        return self.sockets if self.sockets is not None else self.scratch / ".kernel"

    def read_only(self) -> list[tuple[str, str]]:
        """(host path, sandbox path) bound read-only: the interpreter, the venv, helpers, the cache."""
        binds = [(p, p) for p in ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc") if os.path.exists(p)]
        for prefix in {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}:
            if not any(prefix == b or prefix.startswith(b + "/") for b, _ in binds):
                binds.append((prefix, prefix))
        binds.append((str(self.helpers), f"{COURSE_MOUNT}/helpers"))
        if self.cache is not None and self.cache.is_dir():
            binds.append((str(self.cache), f"{COURSE_MOUNT}/cache"))
        return binds

    def command(self, argv: list[str]) -> list[str]:
        """`argv` (the kernel's command line; paths in `scratch` keep their names) run in the sandbox."""
        if argv and os.path.realpath(argv[0]) == os.path.realpath(sys.executable):
            # the venv as bound in the sandbox (its real path), so that Python still finds pyvenv.cfg
            argv = [os.path.join(os.path.realpath(sys.prefix), "bin", os.path.basename(sys.executable)), *argv[1:]]
        if self.backend == "unshare":
            return self._unshare(argv)
        if self.backend in ("docker", "podman"):
            return self._container(argv)
        raise ValueError(f"unknown sandbox backend {self.backend!r}")

    def _unshare(self, argv: list[str]) -> list[str]:
        root = os.geteuid() == 0
        uid = sandbox_uid(self.scratch) if root else None
        config = {"newroot": str(self.scratch.parent / (self.scratch.name + ".root")), "scratch": str(self.scratch),
                  "read_only": self.read_only(), "sockets": str(self.socket_dir()), "rlimits": self.limits.rlimits(), "tmp_bytes": self.limits.tmp_bytes,
                  "uid": uid,
                  "env": {**kernel_env(COURSE_MOUNT, f"{COURSE_MOUNT}/cache"), SANDBOX_ENV: "unshare"}, "argv": argv}
        Path(config["newroot"]).mkdir(exist_ok=True)
        self.socket_dir().mkdir(parents=True, exist_ok=True)
        if root:  # the kernel runs as `uid`: give it its scratch folder
            for path in [self.scratch, *self.scratch.rglob("*"), self.socket_dir()]:
                os.chown(path, uid, uid)
        # setpriv: if the grader dies, so does unshare; --kill-child: then so does the namespace's PID 1.
        return ["setpriv", "--pdeathsig", "KILL", "--", "unshare", "--mount", "--net", "--pid", "--fork",
                "--kill-child", *([] if root else ["--user", "--map-root-user"]),
                os.path.realpath(sys.executable), "-I", "-S", INIT_SCRIPT, "--inside", json.dumps(config)]

    def _container(self, argv: list[str]) -> list[str]:
        lim = self.limits
        cmd = [self.backend, "run", "--rm", "-i", "--init", "--network", "none", "--read-only",
               "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--user", f"{os.getuid()}:{os.getgid()}",
               "--pids-limit", str(lim.processes), "--memory", str(lim.memory_bytes),
               "--ulimit", f"fsize={lim.file_bytes}", "--ulimit", f"cpu={lim.cpu_seconds}",
               "--ulimit", f"nofile={lim.open_files}",
               "--tmpfs", f"/tmp:size={lim.tmp_bytes},mode=1777", "--workdir", str(self.scratch),
               "-v", f"{self.scratch}:{self.scratch}:rw", "-v", f"{self.socket_dir()}:{self.socket_dir()}:rw"]
        for host, inside in self.read_only():
            if inside.startswith(COURSE_MOUNT) or inside == host and host not in ("/usr", "/lib", "/lib64", "/lib32",
                                                                                   "/bin", "/sbin", "/etc"):
                cmd += ["-v", f"{host}:{inside}:ro"]
        for key, value in {**kernel_env(COURSE_MOUNT, f"{COURSE_MOUNT}/cache"), SANDBOX_ENV: self.backend}.items():
            cmd += ["-e", f"{key}={value}"]
        return [*cmd, container_image(), *argv]


def sandbox_uid(scratch: Path) -> int:
    """The uid a sandbox's kernel runs as when the grader is root: unused, and one per scratch folder.

    Separate uids keep one submission's processes from using up another's process cap.

    >>> UID_BASE <= sandbox_uid(Path("/tmp/x")) < UID_BASE + UID_RANGE
    True
    """
    import zlib

    return UID_BASE + zlib.crc32(str(scratch).encode()) % UID_RANGE


def container_image() -> str:
    """The image for the container backends: $COURSE_SANDBOX_IMAGE, else a slim image of this Python."""
    return os.environ.get("COURSE_SANDBOX_IMAGE", f"python:{sys.version_info.major}.{sys.version_info.minor}-slim")


@functools.lru_cache(maxsize=None)
def works(name: str) -> bool:
    """Can this machine run backend `name`? (Tried for real, once per process.)"""
    try:
        if name == "unshare":
            if not sys.platform.startswith("linux") or not shutil.which("unshare") or not shutil.which("setpriv"):
                return False
            flags = ["--mount", "--net", "--pid", "--fork"] + ([] if os.geteuid() == 0 else ["--user", "--map-root-user"])
            return subprocess.run(["unshare", *flags, "true"], capture_output=True, timeout=20).returncode == 0
        if shutil.which(name) is None:
            return False
        return subprocess.run([name, "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def backend(preferred: str | None = None) -> str | None:
    """The sandbox backend to use: `preferred` if it works, else the first of BACKENDS that works."""
    names = [preferred] if preferred else list(BACKENDS)
    return next((n for n in names if works(n)), None)


class NoSandbox(RuntimeError):
    """No sandbox backend works here; the message says what to do."""


def require_backend(preferred: str | None = None) -> str:
    name = backend(preferred)
    if name is None:
        wanted = preferred or " or ".join(BACKENDS)
        raise NoSandbox(f"no sandbox backend works on this machine (tried {wanted}): student code would run with "
                        "your rights over the whole course. Install util-linux (Linux, user namespaces enabled) "
                        "or start Docker/Podman, or pass --no-sandbox to grade unprotected (trusted submissions only).")
    return name
