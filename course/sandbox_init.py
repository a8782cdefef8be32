"""The inside half of the `unshare` sandbox: run by `course/sandbox.py` as
`python -I -S sandbox_init.py --inside CONFIG` in fresh mount, network and PID namespaces.

It builds the kernel's root (a tmpfs with read-only binds and one writable scratch folder), chroots,
stays as the namespace's PID 1 (so the whole namespace dies with it), and starts the kernel as its
child with rlimits, another uid and no capabilities. Standard library only: nothing of the course is
importable here, on purpose. Not a module to import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def _bind(src: str, dst: str, read_only: bool, device: bool = False) -> None:
    if os.path.isdir(src):
        os.makedirs(dst, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        open(dst, "a").close()
    _run("mount", "--bind", src, dst)
    _run("mount", "-o", "remount,bind,nosuid" + ("" if device else ",nodev") + (",ro" if read_only else ""), dst)


def _drop_capabilities() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP (fails harmlessly past the last capability)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")


def _inside(config: dict) -> None:
    new, scratch = config["newroot"], config["scratch"]
    _run("mount", "--make-rprivate", "/")  # nothing below propagates back to the host
    _run("mount", "-t", "tmpfs", "-o", "mode=755,size=16m", "tmpfs", new)
    for sub in ("proc", "dev", "tmp"):
        os.makedirs(f"{new}/{sub}", exist_ok=True)
    _run("mount", "-t", "proc", "-o", "nosuid,nodev,noexec", "proc", f"{new}/proc")
    _run("mount", "-t", "tmpfs", "-o", "mode=755,size=1m,nosuid", "tmpfs", f"{new}/dev")
    for node in ("null", "zero", "full", "random", "urandom"):
        _bind(f"/dev/{node}", f"{new}/dev/{node}", read_only=False, device=True)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{new}/dev/{name}")
    os.makedirs(f"{new}/dev/shm")
    size = config["tmp_bytes"]
    _run("mount", "-t", "tmpfs", "-o", f"mode=1777,size={size},nosuid,nodev", "tmpfs", f"{new}/tmp")
    _run("mount", "-t", "tmpfs", "-o", f"mode=1777,size={size},nosuid,nodev", "tmpfs", f"{new}/dev/shm")
    for src, dst in config["read_only"]:  # after /tmp: a scratch folder under /tmp must stay visible
        _bind(src, new + dst, read_only=True)
    _bind(scratch, new + scratch, read_only=False)
    if not config["sockets"].startswith(scratch + "/"):
        _bind(config["sockets"], new + config["sockets"], read_only=False)
    _run("mount", "-o", "remount,ro,bind", new)  # the root itself: read-only
    os.chroot(new)
    os.chdir(scratch)
    home = config["env"]["HOME"]
    os.makedirs(home, mode=0o700, exist_ok=True)
    uid = config["uid"]
    if uid is not None:
        os.chown(home, uid, uid)
    # This process is PID 1 of the namespace and stays, unprivileged changes aside, as it is: it keeps
    # the parent-death signal unshare gave it (a change of uid would clear it), so if the grader or
    # unshare dies, it dies, and with it every process in the namespace. The kernel is its child.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are for the kernel (same process group)
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _become_kernel(config, scratch, uid)
    while True:  # reap every orphan; leave (killing the namespace) when the kernel is gone
        pid, status = os.wait()
        if pid == child:
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _become_kernel(config: dict, scratch: str, uid: int | None) -> None:
    import resource

    try:
        for name, value in config["rlimits"].items():
            resource.setrlimit(getattr(resource, name), tuple(value))
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        _drop_capabilities()
        log = os.open(os.path.join(scratch, ".kernel.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(log, 1)  # the kernel's own stdout/stderr never reach the grader's console
        os.dup2(log, 2)
        os.execve(config["argv"][0], config["argv"], config["env"])
    finally:
        os._exit(127)


if __name__ == "__main__" and sys.argv[1:2] == ["--inside"]:
    _inside(json.loads(sys.argv[2]))
