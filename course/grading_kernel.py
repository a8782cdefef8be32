"""The kernel manager the autograder uses: this venv's `python3` kernel, started inside the sandbox.

The grader (outside) and the kernel (inside, no network at all) talk over ZeroMQ's `ipc` transport:
Unix sockets in the sandbox's scratch folder, the only folder both can see. The grader process sets
`ACTIVE` (one submission per grader process) before nbgrader starts the kernel; with `ACTIVE = None`
(`--no-sandbox`) the kernel is a plain local one.

>>> ACTIVE is None
True
"""

from __future__ import annotations

import os

from .sandbox import Sandbox

ACTIVE: Sandbox | None = None  # set by the grading worker for the submission it grades


def kernel_manager_class():
    """The AsyncKernelManager class RobustExecute starts kernels with."""
    from traitlets import default

    from course.run import venv_kernel_manager_class

    base = venv_kernel_manager_class()

    class SandboxKernelManager(base):
        @default("transport")
        def _ipc_when_sandboxed(self):
            return "ipc" if ACTIVE is not None else "tcp"

        @default("ip")
        def _socket_prefix(self):
            if ACTIVE is None:
                return "127.0.0.1"
            return str(ACTIVE.socket_dir() / "k")

        @default("connection_file")
        def _connection_in_scratch(self):
            if ACTIVE is None:
                return super()._connection_file_default() if hasattr(super(), "_connection_file_default") else ""
            ACTIVE.socket_dir().mkdir(parents=True, exist_ok=True)
            return str(ACTIVE.socket_dir() / "connection.json")

        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            if ACTIVE is None:
                return cmd
            return ACTIVE.command(cmd)

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            if ACTIVE is not None:  # the sandbox sets the whole environment itself; start in scratch
                kw["cwd"] = str(ACTIVE.scratch)
                if os.geteuid() == 0:
                    from .sandbox import sandbox_uid

                    uid = sandbox_uid(ACTIVE.scratch)
                    for path in [ACTIVE.scratch, *ACTIVE.scratch.rglob("*"), *ACTIVE.socket_dir().rglob("*")]:
                        os.chown(path, uid, uid)
            return await super()._async_launch_kernel(kernel_cmd, **kw)

    return SandboxKernelManager
