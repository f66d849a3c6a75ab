"""Notebook kernels that run in the sandbox, for nbgrader's Execute preprocessor.

nbclient starts each notebook's kernel through a jupyter_client kernel
manager; `SandboxedKernelManager` starts it inside a `Sandbox`
(autograder/sandbox.py): the kernel may read the notebook's folder (the
student's autograded copy, with their miniflow/) and `read_only_paths` (the
MNIST folder), write only to a scratch folder of its own, and has no network.

As sandbox.py explains, such a kernel talks over IPC sockets kept in its
scratch folder, is started as an independent process (inside, its parent is
the sandbox's first process) and is interrupted by message: a SIGINT to its
process group would end bubblewrap instead.

Where bubblewrap cannot sandbox, starting a kernel raises SandboxUnavailableError,
unless `sandboxed` is False (`miniflow-course grade --no-sandbox`): then it runs
with the resource limits only. Either way, when its manager cleans up, nothing
the kernel started survives it and its scratch folder is removed.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Integer, List, Unicode

from .sandbox import GIB, Limits, Sandbox, kill_group, unwrapped_returncode


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels run in a Sandbox, under resource limits."""

    cpu_seconds = Integer(1800, help="CPU time a kernel may use over its whole notebook").tag(config=True)
    memory_bytes = Integer(2 * GIB, help="Address space a kernel process may use").tag(config=True)
    read_only_paths = List(
        Unicode(), help="Folders a kernel may read besides its notebook's folder (data sets)"
    ).tag(config=True)
    passed_environment = List(
        Unicode(),
        ["NBGRADER_EXECUTION", "MINIFLOW_DATA"],
        help="Environment variables handed to the kernel; it inherits nothing else",
    ).tag(config=True)
    sandboxed = Bool(
        True, help="Run kernels in bubblewrap; False runs them with the resource limits only"
    ).tag(config=True)

    scratch = None
    sandbox = None

    @property
    def kernel_spec(self):
        spec = super().kernel_spec
        if spec is not None:
            spec.interrupt_mode = "message"
        return spec

    @property
    def limits(self):
        return Limits(cpu_seconds=self.cpu_seconds, memory_bytes=self.memory_bytes)

    async def _async_pre_start_kernel(self, **kw):
        self.scratch = Path(tempfile.mkdtemp(prefix="miniflow-kernel-"))
        self.transport = "ipc"
        self.ip = str(self.scratch / "ipc")
        self.connection_file = str(self.scratch / "kernel.json")
        cwd = kw.get("cwd") or os.getcwd()
        bwrap = "bwrap" if self.sandboxed else None
        try:
            self.sandbox = Sandbox(cwd, self.scratch, self.limits, self.read_only_paths, bwrap)
        except BaseException:
            self.remove_scratch()
            raise
        kernel_cmd, kw = await super()._async_pre_start_kernel(**kw)
        passed = {name: os.environ[name] for name in self.passed_environment if name in os.environ}
        if "MINIFLOW_DATA" in passed:  # the real path read_only_paths binds: a link may not exist inside
            passed["MINIFLOW_DATA"] = str(Path(passed["MINIFLOW_DATA"]).resolve())
        kw.update(
            env=self.sandbox.environment() | passed,
            # Unsandboxed, the kernel watches this process and ends with it.
            independent=self.sandbox.isolated,
            preexec_fn=self.sandbox.set_limits,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self.sandbox.command(kernel_cmd, cwd), kw

    async def _async_cleanup_resources(self, restart=False):
        # A kernel that died of itself was not killed: what it forked may still run in its group.
        if getattr(self.provisioner, "pgid", None):
            kill_group(self.provisioner.pgid)
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            self.remove_scratch()

    def remove_scratch(self):
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def exit_status(self):
        """The kernel process's return code (negative for a signal), or None while it runs."""
        process = getattr(self.provisioner, "process", None)
        code = process.poll() if process is not None else None
        return unwrapped_returncode(code, self.sandbox.isolated)
