"""Notebook kernels that run in the sandbox, for nbgrader's Execute preprocessor.

nbclient starts each notebook's kernel through a jupyter_client kernel
manager; `SandboxedKernelManager` starts it inside a `Sandbox`
(autograder/sandbox.py): the kernel may read the notebook's folder (the
student's autograded copy, with their miniflow/) without its notebooks, and
`read_only_paths` (the MNIST folder), write only to a scratch folder of its
own, and has no network. Notebooks are left out because nbgrader writes each
graded notebook, hidden tests restored, into that folder before it runs the
next: a kernel that sees only the student's other files reads none of them.

The scratch folder (the kernel's HOME) is a private tmpfs of `disk_bytes`, so
a write past that fails with ENOSPC in the student's cell however fast it
writes, and the kernel goes on; like the sandbox's /tmp, its pages count as the
kernel's memory (`total_memory_bytes`, with control groups). The records of
test cells go to a tmpfs of their own (`records_bytes`) in it, so a student who
fills the scratch folder loses no test for it. The host's scratch folder holds
only the connection file, shown read-only in the tmpfs.

The grader reaches the kernel's folders from descriptors it holds (`held`),
opened from the sandbox's root following no link (Sandbox.open_inside) once
bubblewrap has mounted them and before the kernel starts (bwrap waits on
--block-fd until then): a path through the sandbox's root would follow a link
the kernel put in place of a folder above its scratch folder (under a TMPDIR
that is a plain folder inside, say) to anywhere on the host. The scratch and
records folders are mount points inside, which the kernel cannot move.

As sandbox.py explains, such a kernel talks over IPC sockets, which it makes
in its tmpfs and the grader reaches through the held scratch folder
(`<scratch>/sandbox`, a link to /proc/<grader pid>/fd/<its descriptor>); it is
started as an independent process (inside, its parent is the sandbox's first
process) and is interrupted by message: a SIGINT to its process group would
end bubblewrap instead.

A watchdog thread looks at each kernel every half second: more than
`max_files` files and folders in its writable places (even empty, each costs
kernel memory that a control group may not count), or CPU time over `cpu_seconds` for all the
kernel's processes together (where the sandbox has a control group), ends the
kernel, and `breach` says why. Unsandboxed, the scratch folder is a plain
folder, and the watchdog also ends a kernel that keeps more than `disk_bytes`
in it.

Where bubblewrap cannot sandbox, starting a kernel raises SandboxUnavailableError,
unless `sandboxed` is False (`miniflow-course grade --no-sandbox`): then it runs
with the resource limits only. Either way, when its manager cleans up, nothing
the kernel started survives it and its scratch folder is removed.
"""

import asyncio
import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from stat import S_ISDIR

from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Integer, List, Unicode

from . import recording
from .sandbox import GIB, MIB, Limits, Sandbox, kill_group, unwrapped_returncode
from .testcells import read_record_file

RECORDS_FOLDER = "records"  # in the scratch folder: where the recorder writes what test cells record
RECORDER_FOLDER = "recorder"  # in the scratch folder: the recorder's module, read-only in the sandbox
RECORDER_MODULE = "miniflow_recording"
SETUP_SECONDS = 60  # how long bubblewrap may take to mount a sandbox's folders


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels run in a Sandbox, under resource limits."""

    cpu_seconds = Integer(
        1800, help="CPU time a kernel may use over its notebook (all its processes, with control groups)"
    ).tag(config=True)
    memory_bytes = Integer(2 * GIB, help="Address space a kernel process may use").tag(config=True)
    total_memory_bytes = Integer(
        3 * GIB, help="Memory all of a kernel's processes may use together (with control groups)"
    ).tag(config=True)
    processes = Integer(
        64, help="Processes and threads a kernel may have at once (with control groups)"
    ).tag(config=True)
    disk_bytes = Integer(
        256 * MIB, help="What a kernel may keep in its scratch folder (a tmpfs of this size, sandboxed)"
    ).tag(config=True)
    records_bytes = Integer(
        64 * MIB, help="Room for test cells' records (a tmpfs of its own: a full scratch folder leaves it)"
    ).tag(config=True)
    max_files = Integer(
        10_000, help="How many files and folders a kernel may make where it may write"
    ).tag(config=True)
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
    sandbox_info = None  # the read end of bwrap's --info-fd, until the kernel has started
    sandbox_release = None  # the write end of bwrap's --block-fd, until the kernel's folders are held
    held = None  # the kernel's writable and records folders as this process holds them: path -> descriptor
    watchdog = None
    breach = None  # why the watchdog ended the kernel, if it did

    @property
    def kernel_spec(self):
        spec = super().kernel_spec
        if spec is not None:
            spec.interrupt_mode = "message"
        return spec

    @property
    def limits(self):
        return Limits(
            cpu_seconds=self.cpu_seconds,
            memory_bytes=self.memory_bytes,
            total_memory_bytes=self.total_memory_bytes,
            processes=self.processes,
            scratch_bytes=self.disk_bytes if self.sandboxed else None,
            scratch_parts=((RECORDS_FOLDER, self.records_bytes),),
        )

    async def _async_pre_start_kernel(self, **kw):
        self.close_sandbox()  # a restarted kernel's predecessor
        self.breach = None
        # A short name: the kernel's IPC socket paths inside it must fit in 107 bytes.
        self.scratch = Path(tempfile.mkdtemp(prefix="mk"))
        self.transport = "ipc"
        self.ip = str(self.scratch / "ipc")  # as the kernel sees it, in the connection file
        self.connection_file = str(self.scratch / "kernel.json")
        # Put here before the sandbox starts: this process never writes through the sandbox's root,
        # where a link the kernel made could lead it anywhere on the host.
        (self.scratch / RECORDER_FOLDER).mkdir()
        shutil.copy(recording.__file__, self.scratch / RECORDER_FOLDER / f"{RECORDER_MODULE}.py")
        if not self.sandboxed:  # sandboxed, bwrap mounts a tmpfs there
            self.records_folder.mkdir()
        cwd = kw.get("cwd") or os.getcwd()
        bwrap = "bwrap" if self.sandboxed else None
        try:
            shown = copy_without_notebooks(cwd, self.folder_copy) if self.sandboxed else cwd
            limits, read_only = self.limits, self.read_only_paths
            self.sandbox = Sandbox(shown, self.scratch, limits, read_only, bwrap, shown_at=cwd)
            self.sandbox.open()
            kernel_cmd, kw = await super()._async_pre_start_kernel(**kw)
        except BaseException:
            self.close_sandbox()
            self.remove_scratch()
            raise
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
        info_write = block_read = None
        if self.sandbox.isolated:
            self.sandbox_info, info_write = os.pipe()
            block_read, self.sandbox_release = os.pipe()
            kw["pass_fds"] = (info_write, block_read)
        return self.sandbox.command(kernel_cmd, cwd, info_write, block_read), kw

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        info, self.sandbox_info = self.sandbox_info, None
        release, self.sandbox_release = self.sandbox_release, None
        try:
            await super()._async_launch_kernel(kernel_cmd, **kw)
        except BaseException:
            for descriptor in (info, release):
                if descriptor is not None:
                    os.close(descriptor)
            raise
        finally:
            for bwraps_end in kw.get("pass_fds", ()):
                os.close(bwraps_end)  # bwrap has its copies
        if not self.sandbox.isolated:
            self.held = open_folders(self.sandbox, self.held_folders)
            return
        self.sandbox.started(info)
        try:
            self.held = await self.hold_sandbox_folders()
            os.write(release, b"go")
        except BaseException as error:
            self.end_kernel(f"its sandbox's folders could not be reached: {error}")
            raise
        finally:
            os.close(release)  # on failure, once end_kernel has killed bwrap: at the pipe's end it goes on
        # The kernel's sockets are in its tmpfs: reached by a short link (socket paths fit in 107 bytes).
        # connect(2) still follows a link the kernel makes in place of a socket file itself.
        (self.scratch / "sandbox").symlink_to(self.held_path(self.scratch))
        self.ip = str(self.scratch / "sandbox" / "ipc")

    @property
    def held_folders(self):
        """The folders the grader holds: the kernel's writable ones (watched) and its records folder."""
        return dict.fromkeys([*self.sandbox.writable(), self.records_folder])  # each once, in order

    async def hold_sandbox_folders(self):
        """Open the kernel's folders from the sandbox's root, once bwrap has mounted them.

        bwrap names the sandbox's first process before it has set the sandbox up:
        until then, its root is the host's, or a bare tmpfs. The scratch folder held
        is a tmpfs inside, on a file system of its own. The kernel has not started
        (bwrap waits on --block-fd), so it cannot lead this anywhere.
        """
        deadline = time.monotonic() + SETUP_SECONDS
        host_device = os.stat(self.scratch).st_dev
        while True:
            try:
                held = open_folders(self.sandbox, self.held_folders)
                if os.fstat(held[self.scratch]).st_dev != host_device:
                    return held
                close_folders(held)
                problem = "its scratch folder is not mounted"
            except OSError as error:
                problem = str(error)
            if self.provisioner.process.poll() is not None:
                raise RuntimeError(f"the sandbox ended while it was set up ({problem})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox was not set up within {SETUP_SECONDS} s ({problem})")
            await asyncio.sleep(0.01)

    async def _async_post_start_kernel(self, **kw):
        await super()._async_post_start_kernel(**kw)
        self.watchdog = Watchdog(self)
        self.watchdog.start()

    async def _async_cleanup_resources(self, restart=False):
        # A kernel that died of itself was not killed: what it forked may still run in its group.
        if getattr(self.provisioner, "pgid", None):
            kill_group(self.provisioner.pgid)
        self.close_sandbox()
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            self.remove_scratch()

    # AsyncKernelManager binds cleanup_resources to its base's method, and nbclient calls that for a
    # kernel that died: without this, a dead kernel's sandbox and scratch would outlive it.
    async def cleanup_resources(self, restart=False):
        await self._async_cleanup_resources(restart=restart)

    def close_sandbox(self):
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None
        if self.held is not None:
            # First the sockets' link: a client reconnecting later would find another folder at the number.
            with contextlib.suppress(FileNotFoundError):
                (self.scratch / "sandbox").unlink()
            close_folders(self.held)
            self.held = None
        if self.sandbox is not None:
            self.sandbox.close()

    def end_kernel(self, why):
        """Called by the watchdog: SIGKILL the kernel and all it started, and say why."""
        self.breach = why
        if self.sandbox.group is not None:
            self.sandbox.group.kill()
        if getattr(self.provisioner, "pgid", None):
            kill_group(self.provisioner.pgid)

    @property
    def records_folder(self):
        return self.scratch / RECORDS_FOLDER

    def remove_record(self, grade_id):
        """Remove what the test cell `grade_id` recorded before, if anything."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{grade_id}.jsonl", dir_fd=self.held[self.records_folder])

    def read_record(self, grade_id):
        """The text of what the test cell `grade_id` recorded (None: nothing); BadRecordError when unfit."""
        return read_record_file(f"{grade_id}.jsonl", dir_fd=self.held[self.records_folder])

    def held_path(self, folder):
        """A path to the kernel's `folder` through the descriptor held: it follows no link the kernel made."""
        return f"/proc/{os.getpid()}/fd/{self.held[folder]}"

    @property
    def folder_copy(self):
        """Where the notebook's folder is copied for the kernel to see (beside its scratch folder)."""
        return self.scratch.with_name(self.scratch.name + "-folder")

    def remove_scratch(self):
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            shutil.rmtree(self.folder_copy, ignore_errors=True)
            self.scratch = None

    def exit_status(self):
        """The kernel process's return code (negative for a signal), or None while it runs."""
        process = getattr(self.provisioner, "process", None)
        code = process.poll() if process is not None else None
        return unwrapped_returncode(code, self.sandbox.isolated)


class Watchdog(threading.Thread):
    """Ends a kernel whose writable places or CPU time grow over its manager's limits."""

    def __init__(self, manager):
        super().__init__(daemon=True, name="kernel watchdog")
        self.manager, self.stopped = manager, threading.Event()

    def stop(self):
        self.stopped.set()

    def run(self):
        manager, sandbox = self.manager, self.manager.sandbox
        watched = [manager.held_path(folder) for folder in sandbox.writable()]
        while not self.stopped.wait(0.5):
            used, files = disk_usage(watched, manager.max_files)
            cpu = sandbox.cpu_seconds()
            if not sandbox.isolated and used > manager.disk_bytes:  # else a tmpfs holds the size itself
                why = f"it wrote more than {manager.disk_bytes // MIB} MiB to its scratch folder"
            elif files > manager.max_files:
                why = f"it made more than {manager.max_files} files in the folders it may write to"
            elif cpu is not None and cpu > manager.cpu_seconds:
                why = f"its processes used more than {manager.cpu_seconds} s of CPU time together"
            else:
                continue
            manager.end_kernel(why)
            return


def disk_usage(folders, max_files):
    """(bytes on disk, files and folders) below `folders`, counting at most max_files + 1 entries.

    Like `du -x`, it stays on the file systems of `folders`: a folder bound read-only
    into a sandbox's /tmp (a Python environment that lives under /tmp, say) is the
    grader's, not the kernel's. It lists no folder elsewhere either: one the kernel
    swaps for a link while it looks leads it only to the kernel's own files.
    """
    used = files = 0
    pending = list(folders)
    devices = set()
    for folder in folders:
        with contextlib.suppress(OSError):
            devices.add(os.stat(folder).st_dev)
    while pending and files <= max_files:
        folder = pending.pop()
        try:
            entries = list_folder(folder, devices)
        except OSError:  # removed meanwhile (the sandbox ended), or unreadable: the kernel's own business
            continue
        for name, stat in entries:
            files += 1
            used += stat.st_blocks * 512  # a sparse file costs what it holds, not its length
            if S_ISDIR(stat.st_mode) and stat.st_dev in devices:
                pending.append(os.path.join(folder, name))
    return used, files


def list_folder(path, devices):
    """[(name, lstat)] of the entries of folder `path`; OSError unless it is on one of `devices`."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if os.fstat(descriptor).st_dev not in devices:
            raise OSError(errno.EXDEV, "not on the kernel's file systems", path)
        entries = []
        with os.scandir(descriptor) as listing:
            for entry in listing:
                with contextlib.suppress(OSError):  # removed meanwhile
                    entries.append((entry.name, entry.stat(follow_symlinks=False)))
        return entries
    finally:
        os.close(descriptor)


def open_folders(sandbox, folders):
    """{folder: a descriptor of it, from Sandbox.open_inside}; all or none."""
    held = {}
    try:
        for folder in folders:
            held[folder] = sandbox.open_inside(folder)
    except BaseException:
        close_folders(held)
        raise
    return held


def close_folders(held):
    for descriptor in held.values():
        os.close(descriptor)


def copy_without_notebooks(folder, copy):
    """Copy `folder` to `copy` without its notebooks (links stay links: bwrap shows them as such).

    Temporary folders inside `folder` (the copy itself, when a kernel starts in the
    temporary folder's parent) stay out too.
    """
    temporary = Path(tempfile.gettempdir()).resolve()

    def left_out(directory, names):
        notebooks = {name for name in names if name.endswith(".ipynb") or name == ".ipynb_checkpoints"}
        return notebooks | ({Path(copy).name} if Path(directory).resolve() == temporary else set())

    shutil.copytree(folder, copy, symlinks=True, ignore=left_out)
    return copy
