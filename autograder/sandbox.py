"""Run a command for one submission in a sandbox.

The sandbox is bubblewrap (`bwrap`): new namespaces (no network, no view of
other processes) and a file system holding only the system's programs and
libraries, the Python install and environment that run this grader, the
submission (read-only) and one scratch folder (the only place it may write,
besides a small private /tmp). With `Limits.scratch_bytes`, the scratch folder
is a private tmpfs of that size, at the scratch folder's path: a write past it
fails with ENOSPC (no more "disk" than that, however fast it writes), the files
the host's scratch folder holds when the command starts appear in it
read-only, and the host reaches it from `sandbox.open_inside(path)` while the
sandbox runs; `Limits.scratch_parts` are folders in it with sizes of their own.
Without it, the host's scratch folder itself is bound, writable. The course repository,
and with it solutions/, assignments/, the gradebook and the other students'
folders, is not in it.
Resource limits (CPU time, address space, file size) are set on each process
before it starts, and a wall-clock limit kills its whole process group.
Where the machine lets the grader make control groups (cgroup v1 as root, or a
delegated cgroup v2 subtree), all the processes of a sandbox share one: it caps
their number (a fork bomb gets EAGAIN) and their memory together, counts their
CPU time together, and ends every one of them however detached. Elsewhere
`control_group_problem()` says why, and the per-process limits are all there is.

Where bwrap is missing or fails its self-test (say, in a container without
user namespaces), making a Sandbox raises SandboxUnavailableError: grading without
isolation is never a silent fallback. `Sandbox(..., bwrap=None)` asks for no
sandbox (`miniflow-course grade --no-sandbox`): commands run with the resource
limits only, and every result says `isolated=False`.

    sandbox = Sandbox(submission, scratch, Limits(wall_seconds=30))
    run = sandbox.run([sys.executable, "-I", "script.py"])

Paths are the same inside and outside, so file names in argv (a kernel's
connection file in the scratch folder, say) need no translation. To start a
long-lived process such as a notebook kernel in the sandbox, pass
`sandbox.command(argv, cwd, info_fd)` to Popen with `env=sandbox.environment()`,
`preexec_fn=sandbox.set_limits` and `pass_fds=(info_fd,)`, then
`sandbox.started(info_read)` with the pipe's other end. For a Jupyter kernel
(tried with jupyter_client's KernelManager and ipykernel): the kernel has no
network, so use `transport="ipc"` with the connection file and sockets in the
scratch folder (with a private scratch folder, the grader connects to the
sockets through a descriptor from `sandbox.open_inside(...)`, opened while bwrap
waits on `block_fd`, before the kernel can move a folder); start it with
`independent=True`, because inside, its parent is the sandbox's pid 1, which
ipykernel takes for a dead parent (--die-with-parent does that job instead);
and interrupt it with `interrupt_mode = "message"`, as a SIGINT to its process
group ends bwrap and with it the kernel.
"""

import contextlib
import ctypes
import errno
import functools
import itertools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

KIB, MIB, GIB = 2**10, 2**20, 2**30
COURSE_ROOT = Path(__file__).resolve().parents[1]
# Programs in the sandbox may need these; the rest of /etc stays out.
ETC_FILES = (
    "/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
    "/etc/fonts",  # matplotlib's fonts, or Fontconfig complains on stderr in every notebook
)
SHM_BYTES = 16 * MIB  # a small /dev/shm: multiprocessing's locks (joblib's, say) need one, or warn
PRIVATE_TMPFS = ("/tmp", "/dev/shm")  # writable in the sandbox, besides its scratch folder
TOP_LEVEL_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


@dataclass(frozen=True)
class Limits:
    """What one sandboxed command may use (CPU time and memory: each of its processes)."""

    cpu_seconds: int = 60
    wall_seconds: float = 120.0
    memory_bytes: int = 2 * GIB  # address space of each process
    file_bytes: int = 64 * MIB  # largest file it may write, its captured output included
    tmp_bytes: int = 64 * MIB  # size of its private /tmp
    # Size of a private scratch folder (a tmpfs, in memory), or None to bind the host's writable.
    scratch_bytes: int | None = None
    # (name, size) of its folders that are tmpfs of their own: a full scratch folder leaves them room.
    scratch_parts: tuple[tuple[str, int], ...] = ()
    processes: int = 64  # processes and threads at once, all together (control groups only)
    total_memory_bytes: int = 3 * GIB  # memory of all its processes together (control groups only)
    output_bytes: int = 16 * KIB  # how much of its stdout and stderr is kept


@dataclass(frozen=True)
class SandboxRun:
    """How a sandboxed command ended.

    `returncode` follows subprocess: negative for the signal that killed the
    process. `output` is the start of its stdout and stderr, interleaved.
    """

    returncode: int
    timed_out: bool
    output: str
    isolated: bool
    seconds: float
    cpu_seconds: float | None = None  # of all its processes together; None without a control group


class SandboxUnavailableError(RuntimeError):
    """bubblewrap cannot start a sandbox here; the message says why."""


@functools.cache
def python_paths():
    """The folders the Python running this grader needs, outside /usr, shortest first.

    Its install and environment (the prefixes), and the folders its import path
    adds besides (a .pth file may point anywhere), as a fresh `python -I` sees
    it: without the current folder or PYTHONPATH. Of the course repository,
    only what is in a Python environment (its .venv) is kept: an editable
    install of this project must not show solutions/ to a sandbox.
    """
    prefixes = [Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).resolve().parents[1]]
    for prefix in prefixes:
        refuse_course_root(prefix.resolve())
    asked = [sys.executable, "-I", "-c", "import json, sys; print(json.dumps(sys.path))"]
    done = subprocess.run(asked, capture_output=True, text=True, timeout=60, check=True)
    imported = [Path(path) for path in json.loads(done.stdout) if path and os.path.isdir(path)]
    imported = [path for path in imported if within(path, prefixes) or not shows_the_course(path)]
    kept = []
    for path in sorted({*prefixes, *imported}, key=lambda path: (len(path.parts), path)):
        if not path.is_relative_to("/usr") and not within(path, kept):
            kept.append(path)
    return [str(path) for path in kept]


def within(path, folders):
    return any(path.resolve().is_relative_to(folder.resolve()) for folder in folders)


def shows_the_course(path):
    """Whether `path` holds the course repository, or a part of it that is not a Python environment."""
    path = path.resolve()
    if COURSE_ROOT.is_relative_to(path):
        return True
    inside = [folder for folder in (path, *path.parents) if folder.is_relative_to(COURSE_ROOT)]
    return bool(inside) and not any((folder / "pyvenv.cfg").is_file() for folder in inside[:-1])


def system_options(limits):
    """bwrap options for everything but the submission and scratch: namespaces, system, Python."""
    options = ["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session"]
    options += ["--ro-bind", "/usr", "/usr"]
    for top in TOP_LEVEL_LINKS:
        if os.path.islink(top):
            options += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            options += ["--ro-bind", top, top]
    for name in ETC_FILES:
        options += ["--ro-bind-try", name, name]
    options += ["--proc", "/proc", "--dev", "/dev", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm"]
    options += ["--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]
    # After the private /tmp, which would hide a Python environment that lives under /tmp.
    for folder in python_paths():
        options += ["--ro-bind", folder, folder]
    return options


# The root and /dev are tmpfs that bwrap creates; read-only, they cannot hold a student's files.
FINAL_OPTIONS = ("--remount-ro", "/dev", "--remount-ro", "/")


@functools.cache
def bubblewrap_problem(bwrap):
    """Why `bwrap` cannot sandbox Python here, or None when it can (tried once per process)."""
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    probe = [bwrap, *system_options(Limits()), *FINAL_OPTIONS, "--chdir", "/", "--"]
    probe += [sys.executable, "-I", "-c", "import numpy"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bwrap failed its self-test: {error}"
    if done.returncode != 0:
        return f"bwrap failed its self-test: {done.stderr.strip()[-500:]}"
    return None


def require_bubblewrap(bwrap="bwrap"):
    """The path of the program `bwrap` names, if it can sandbox Python here; else SandboxUnavailableError."""
    path = shutil.which(bwrap)
    problem = bubblewrap_problem(path)
    if problem:
        raise SandboxUnavailableError(f"the sandbox cannot start: {problem}")
    return path


def refuse_course_root(path):
    """A bind of the course root, or a folder above it, would show solutions/ to the sandbox."""
    if COURSE_ROOT.is_relative_to(path):
        raise ValueError(f"{path} contains the course repository; it must not be visible in a sandbox")


class Sandbox:
    """Run commands for one submission: it may read `submission` and write only to `scratch`.

    `read_only` lists more folders to show, read-only (data sets, say).
    `shown_at` is where the submission appears in the sandbox (default: its own path).
    `bwrap` names the bubblewrap program; SandboxUnavailableError when it cannot
    sandbox here. With `bwrap=None`, commands run with the resource limits only.
    """

    def __init__(self, submission, scratch, limits=Limits(), read_only=(), bwrap="bwrap", shown_at=None):
        self.submission = Path(submission).resolve()
        self.shown_at = Path(shown_at or submission).resolve()
        self.scratch = Path(scratch).resolve()
        self.read_only = [Path(path).resolve() for path in read_only]
        self.limits = limits
        for path in (self.submission, self.shown_at, self.scratch, *self.read_only):
            refuse_course_root(path)
        self.bwrap = None if bwrap is None else require_bubblewrap(bwrap)
        self.group = None
        self.first_pid = None  # of the running sandbox, as the host sees it (its root is the sandbox's)

    def open(self):
        """Make the control group the processes started from now on share (where there can be one)."""
        if self.group is None and control_group_problem() is None:
            self.group = ControlGroup.create(self.limits)

    def close(self):
        """End every process still in the sandbox's control group, and remove the group."""
        if self.group is not None:
            self.group.remove()
            self.group = None

    def cpu_seconds(self):
        """CPU time used by all the sandbox's processes so far, or None without a control group."""
        return None if self.group is None else self.group.cpu_seconds()

    @property
    def isolated(self):
        return self.bwrap is not None

    def command(self, argv, cwd=None, info_fd=None, block_fd=None):
        """`argv` wrapped to run in the sandbox, in `cwd` (default: the scratch folder).

        With `info_fd`, bwrap writes the host pid of the sandbox's first process there.
        With `block_fd`, the sandbox, once set up, waits to start `argv` until a byte
        (or the end) can be read there.
        """
        if not self.isolated:
            return list(argv)
        options = [self.bwrap, *system_options(self.limits)]
        if info_fd is not None:
            options += ["--info-fd", str(info_fd)]
        if block_fd is not None:
            options += ["--block-fd", str(block_fd)]
        for path in self.read_only:
            options += ["--ro-bind", str(path), str(path)]
        options += ["--ro-bind", str(self.submission), str(self.shown_at)]
        if self.limits.scratch_bytes is None:
            options += ["--bind", str(self.scratch), str(self.scratch)]
        else:
            options += ["--size", str(self.limits.scratch_bytes), "--tmpfs", str(self.scratch)]
            for entry in sorted(self.scratch.iterdir()):
                options += ["--ro-bind", str(entry), str(entry)]
            for name, size in self.limits.scratch_parts:
                options += ["--size", str(size), "--tmpfs", str(self.scratch / name)]
        options += [*FINAL_OPTIONS, "--chdir", str(cwd or self.scratch), "--"]
        return options + list(argv)

    def writable(self):
        """The folders its commands may write to, as they see them (isolated: each a tmpfs of its own)."""
        if not self.isolated:
            return [self.scratch]
        parts = self.limits.scratch_parts if self.limits.scratch_bytes is not None else ()
        return [self.scratch, *(self.scratch / name for name, _ in parts), *PRIVATE_TMPFS]

    def started(self, info_fd):
        """Learn, from bwrap's `--info-fd` (read end; closed here), which process runs the sandbox."""
        with os.fdopen(info_fd, "rb") as info:
            self.first_pid = first_pid(info.read())

    def open_inside(self, path):
        """A descriptor (O_PATH) of folder `path` of the running sandbox, reached following no link.

        The sandbox's root is its first process's (/proc/PID/root, while it runs). A
        path through it is resolved by the host's kernel, which follows an absolute
        link met on the way from the host's root: a sandboxed process that swaps a
        folder above `path` for a link would lead it anywhere on the host. Here each
        folder is opened in the one before, never following a link: OSError naming
        the part that is a link, not a folder, or missing. Not isolated: `path`
        opened as it is. The caller closes the descriptor.
        """
        if not self.isolated:
            return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        if self.first_pid is None:
            raise RuntimeError("the sandbox has not started (Sandbox.started)")
        parts = Path(path).relative_to("/").parts
        if ".." in parts:
            raise ValueError(f"{path} is not a resolved path")
        folder = os.open(f"/proc/{self.first_pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for depth, name in enumerate(parts, 1):
                flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                try:
                    inner = os.open(name, flags, dir_fd=folder)
                except OSError as error:
                    what = {errno.ENOTDIR: "a link or not a folder", errno.ENOENT: "missing"}.get(error.errno)
                    reached = Path("/", *parts[:depth])
                    problem = f"{reached} in the sandbox: {what or error.strerror}"
                    raise OSError(error.errno, problem) from None
                os.close(folder)
                folder = inner
        except BaseException:
            os.close(folder)
            raise
        return folder

    def environment(self):
        """The whole environment of a sandboxed command: nothing is inherited from the grader's."""
        return {
            "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/bin:/bin",
            "HOME": str(self.scratch),
            "TMPDIR": "/tmp" if self.isolated else str(self.scratch),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            # One thread each: parallel grading shares the machine's cores.
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }

    def set_limits(self):
        """Apply the resource limits; runs in the new process between fork and exec (preexec_fn)."""
        limits = self.limits
        if self.group is not None:
            self.group.add(os.getpid())
        # CPU: SIGXCPU at the limit, SIGKILL a second later if it is ignored.
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        # It dies with the grader (bwrap, sandboxed, then takes the sandbox with it).
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    def run(self, argv, cwd=None):
        """Run `argv` in the sandbox to its end or its wall-clock limit; return a SandboxRun.

        When it returns, every process the command started has ended.
        """
        start = time.monotonic()
        self.open()
        with tempfile.TemporaryFile() as output, contextlib.ExitStack() as cleanup:
            info_read = info_write = None
            if self.isolated:
                info_read, info_write = os.pipe()
                cleanup.callback(os.close, info_read)
            try:
                process = subprocess.Popen(
                    self.command(argv, cwd, info_write),
                    cwd=cwd or self.scratch,
                    env=self.environment(),
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    preexec_fn=self.set_limits,
                    start_new_session=True,
                    pass_fds=() if info_write is None else (info_write,),
                )
            finally:
                if info_write is not None:
                    os.close(info_write)
            try:
                process.wait(timeout=self.limits.wall_seconds)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
                # Killing bwrap first would leave its sandbox to die a moment later, after
                # this returns; killing the sandbox's first process ends all of its processes,
                # and bwrap exits once they have.
                kill_sandbox(info_read, process)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
            finally:
                # Also ends what an unsandboxed command left running in its process group.
                kill_group(process.pid)
                cpu_seconds = self.cpu_seconds()
                self.close()
                process.wait()
            output.seek(0)
            text = output.read(self.limits.output_bytes).decode(errors="replace")
        returncode = unwrapped_returncode(process.returncode, self.isolated)
        return SandboxRun(returncode, timed_out, text, self.isolated, time.monotonic() - start, cpu_seconds)


def kill_sandbox(info_fd, bwrap_process):
    """SIGKILL the sandbox's first process, named on bwrap's `--info-fd`, if it is bwrap's child."""
    if info_fd is None:
        return
    os.set_blocking(info_fd, False)
    try:
        pid = first_pid(os.read(info_fd, 4096))
        with open(f"/proc/{pid}/status") as status:
            parent = next(int(line.split()[1]) for line in status if line.startswith("PPid:"))
    except (OSError, ValueError, StopIteration):
        return
    if parent == bwrap_process.pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def first_pid(info):
    """The host pid of the sandbox's first process, from what bwrap wrote on `--info-fd`.

    ValueError when bwrap wrote none (it failed before starting the sandbox).
    """
    try:
        return int(json.loads(info)["child-pid"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"bwrap did not say which process runs the sandbox: {info[:200]!r}") from error


def kill_group(process_group):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process_group, signal.SIGKILL)


PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36  # from <linux/prctl.h>
LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: set_limits runs between fork and exec


def prctl(option, value):
    if LIBC.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}, {value}) failed")


def become_subreaper():
    """Make the processes this one's descendants leave behind (orphans, even in new sessions) its children."""
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def end_descendants():
    """SIGKILL every process below this one and reap them, until none is left.

    In a subreaper, this ends all that its children started, however detached.
    """
    while children := child_pids(os.getpid()):
        for pid in children:  # their own children come back here as orphans, for the next round
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def child_pids(pid):
    pids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            pids += [int(child) for child in (task / "children").read_text().split()]
    return pids


def unwrapped_returncode(code, isolated):
    """A sandboxed process's return code as Popen gives it unsandboxed: negative for a signal.

    bwrap reports its child's death by signal N as 128 + N.
    """
    return 128 - code if isolated and code is not None and code > 128 else code


def signal_name(number):
    return signal.Signals(number).name if number in signal.valid_signals() else f"signal {number}"


def describe_exit(run, limits):
    """How a sandboxed run ended, in words for a student."""
    if run.timed_out:
        return f"it was stopped at the time limit of {limits.wall_seconds:g} s"
    if run.returncode >= 0:
        return f"it exited with status {run.returncode}"
    number = -run.returncode
    causes = {
        signal.SIGXCPU: f"the CPU time limit of {limits.cpu_seconds} s",
        signal.SIGKILL: "often for using too much memory or time",
        signal.SIGSEGV: "a crash",
    }
    return f"it was killed by {signal_name(number)}" + (f" ({causes[number]})" if number in causes else "")


class ControlGroup:
    """One control group per sandbox, in each hierarchy that has a controller we need.

    cgroup v1 has a hierarchy per controller (pids, memory, cpuacct); v2 has
    one. Either way the group is made below the grader's own group, where it
    may write (see `own_groups`).
    """

    def __init__(self, groups):
        self.groups = groups  # "pids"|"memory"|"cpu" -> (cgroup version, the group's folder there)

    @property
    def folders(self):
        return {folder for _, folder in self.groups.values()}

    @classmethod
    def create(cls, limits):
        parents = own_groups()
        handed_on = {}  # v2 group -> the controllers its children need
        for key, (version, parent) in parents.items():
            if version == 2 and CONTROLLERS[key][1] is not None:
                handed_on.setdefault(parent, set()).add(CONTROLLERS[key][1])
        for parent, controllers in handed_on.items():
            delegate(parent, sorted(controllers))
        name = f"miniflow-{os.getpid()}-{next(GROUP_NUMBERS)}"
        group = cls({key: (version, parent / name) for key, (version, parent) in parents.items()})
        try:
            for folder in group.folders:
                folder.mkdir(exist_ok=True)  # v2: one folder for all three
            group.set_limits(limits)
        except OSError:
            for folder in group.folders:
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        return group

    def set_limits(self, limits):
        _, pids = self.groups["pids"]
        pids.joinpath("pids.max").write_text(str(limits.processes))
        version, memory = self.groups["memory"]
        memory.joinpath("memory.max" if version == 2 else "memory.limit_in_bytes").write_text(
            str(limits.total_memory_bytes)
        )

    def add(self, pid):
        for folder in self.folders:
            folder.joinpath("cgroup.procs").write_text(str(pid))

    def pids(self):
        found = set()
        for folder in self.folders:
            with contextlib.suppress(OSError):
                found.update(int(pid) for pid in folder.joinpath("cgroup.procs").read_text().split())
        return found

    def cpu_seconds(self):
        version, folder = self.groups["cpu"]
        try:
            if version == 2:
                stat = folder.joinpath("cpu.stat").read_text().split()
                return int(stat[stat.index("usage_usec") + 1]) / 1e6
            return int(folder.joinpath("cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            return None

    def kill(self):
        """SIGKILL every process of the group until none is left (new ones may be forked meanwhile)."""
        for version, folder in set(self.groups.values()):
            if version == 2:  # all at once, forks in flight included (Linux 5.14 and later)
                with contextlib.suppress(OSError):
                    folder.joinpath("cgroup.kill").write_text("1")
        for _ in range(1000):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self):
        self.kill()
        for folder in self.folders:
            for _ in range(100):  # a killed process leaves its group a moment after it dies
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)


def remove_groups_made_by(pid):
    """End the processes in the control groups that process `pid` made and left (killed, say); remove them."""
    if control_group_problem() is None:
        remove_groups(lambda maker: maker == pid)


def remove_groups(made_by):
    """Remove the control groups whose maker's pid `made_by` accepts, ending their processes."""
    parents = own_groups()
    names = {path.name for _, parent in parents.values() for path in parent.glob("miniflow-*-*")}
    for name in names:
        maker = name.split("-")[1]
        if maker.isdigit() and made_by(int(maker)):
            groups = {key: (version, parent / name) for key, (version, parent) in parents.items()}
            ControlGroup(groups).remove()


GROUP_NUMBERS = itertools.count()
# What each limit needs: the cgroup v1 controller that has it, and the v2 one (None: every v2 group
# counts its CPU time, in cpu.stat).
CONTROLLERS = {"pids": ("pids", "pids"), "memory": ("memory", "memory"), "cpu": ("cpuacct", None)}
# On cgroup v2, the child group the grader's own processes move to, so that their group may give
# controllers to the sandboxes' groups: v2 lets a group do that only while no process is in it.
GRADER_LEAF = "miniflow-grader"


def cgroup_mounts():
    """({cgroup v1 controller: the mount point of its hierarchy}, the cgroup v2 mount point or None)."""
    v1, v2 = {}, None
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mount_point, kind, options, *_ = line.split()
        if kind == "cgroup":
            for option in options.split(","):
                v1[option] = Path(mount_point)
        elif kind == "cgroup2" and v2 is None:
            v2 = Path(mount_point)
    return v1, v2


def own_groups():
    """{"pids"|"memory"|"cpu": (cgroup version, the folder the sandboxes' groups are made in)}.

    Each comes from the v1 hierarchy of its controller where one is mounted, else
    from cgroup v2. There it is the grader's own group (a delegated one, say
    `systemd-run --user --scope -p Delegate=yes`), or that group's parent once
    the grader has moved into its GRADER_LEAF (see `delegate`).
    """
    lines = [line.split(":", 2) for line in Path("/proc/self/cgroup").read_text().splitlines()]
    v1, v2 = cgroup_mounts()
    groups = {}
    for key, (v1_controller, _) in CONTROLLERS.items():
        if v1_controller in v1:
            path = next(path for _, names, path in lines if v1_controller in names.split(","))
            groups[key] = (1, v1[v1_controller] / path.lstrip("/"))
        elif v2 is not None:
            own = v2 / next(path for number, _, path in lines if number == "0").lstrip("/")
            groups[key] = (2, own.parent if own.name == GRADER_LEAF else own)
        else:
            raise LookupError(f"no control group hierarchy has the {v1_controller} controller")
    return groups


def delegate(group, controllers):
    """Let cgroup v2 `group` give `controllers` to its children (their limits need them).

    v2 refuses that while a process is in `group` (its root excepted), so the
    processes there, the grader's own, first move to its child GRADER_LEAF.
    """
    enabled = group.joinpath("cgroup.subtree_control").read_text().split()
    wanted = [name for name in controllers if name not in enabled]
    if not wanted:
        return
    missing = set(wanted) - set(group.joinpath("cgroup.controllers").read_text().split())
    if missing:
        raise LookupError(
            f"cgroup v2: the grader's group {group} was given no {', '.join(sorted(missing))} controller "
            "to hand on (start the grader in a delegated group, as README says)"
        )
    leaf = group / GRADER_LEAF
    for _ in range(100):  # a process forked meanwhile lands in `group`: move it too, and try again
        try:
            group.joinpath("cgroup.subtree_control").write_text(" ".join(f"+{name}" for name in wanted))
            return
        except OSError as error:
            if error.errno != errno.EBUSY:
                raise
        leaf.mkdir(exist_ok=True)
        for pid in group.joinpath("cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                leaf.joinpath("cgroup.procs").write_text(pid)
    raise OSError(errno.EBUSY, f"cgroup v2: processes keep appearing in {group}")


@functools.cache
def control_group_problem():
    """Why sandboxes get no control group here, or None when they do (tried once per process)."""
    try:
        ControlGroup.create(Limits()).remove()
        # Groups whose maker died without removing them (a grading process killed outright, say).
        remove_groups(lambda maker: not Path(f"/proc/{maker}").exists())
    except (OSError, StopIteration, LookupError, ValueError) as error:
        return f"no control group could be made ({type(error).__name__}: {error})"
    return None
