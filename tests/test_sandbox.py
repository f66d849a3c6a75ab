"""The sandbox: what a student's code can and cannot reach, and the limits that stop it.

Each test runs a small Python program in a sandbox and asserts from its
output, and checks the same access from the grader, outside, where it works.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REFERENCE, ROOT

from autograder.sandbox import (
    GRADER_LEAF,
    MIB,
    ControlGroup,
    Limits,
    Sandbox,
    SandboxUnavailableError,
    bubblewrap_problem,
    cgroup_mounts,
    control_group_problem,
    own_groups,
)

requires_bubblewrap = pytest.mark.skipif(
    bubblewrap_problem(shutil.which("bwrap")) is not None,
    reason=f"no working bubblewrap: {bubblewrap_problem(shutil.which('bwrap'))}",
)


@pytest.fixture
def folders(tmp_path):
    """A submission (alice's), another student's (bob's, with a secret) and a scratch folder."""
    alice, bob, scratch = tmp_path / "alice", tmp_path / "bob", tmp_path / "scratch"
    for folder in (alice, bob, scratch):
        folder.mkdir()
    (alice / "notebook.ipynb").write_text("{}")
    (bob / "secret.txt").write_text("bob's answers")
    return alice, bob, scratch


def run_python(sandbox, code):
    return sandbox.run([sys.executable, "-I", "-c", textwrap.dedent(code)])


def attempts(sandbox, code):
    """Run `code`, which prints a JSON dict of what each `attempt(action)` gave; return that dict."""
    run = run_python(sandbox, TRY + textwrap.dedent(code))
    assert run.returncode == 0, run.output
    return json.loads(run.output.strip().splitlines()[-1])


TRY = """
import json, os
def attempt(action):
    try:
        action()
        return "allowed"
    except OSError as error:
        return type(error).__name__
"""


@requires_bubblewrap
def test_sandboxed_code_cannot_read_the_course_or_other_students(folders):
    alice, bob, scratch = folders
    targets = [REFERENCE / "layers.py", ROOT / "pyproject.toml", bob / "secret.txt"]
    for target in targets:  # they are there, and the grader can read them
        target.read_bytes()
    code = f"""
    targets = {[str(t) for t in targets]!r}
    results = {{t: attempt(lambda t=t: open(t).read()) for t in targets}}
    results["own notebook"] = attempt(lambda: open({str(alice / "notebook.ipynb")!r}).read())
    results["course root lists"] = sorted(os.listdir({str(ROOT)!r}))
    print(json.dumps(results))
    """
    results = attempts(Sandbox(alice, scratch), code)
    assert all(results[str(t)] == "FileNotFoundError" for t in targets), results
    assert results["own notebook"] == "allowed"
    # Only the environment that runs Python, never solutions/ or assignments/.
    assert results["course root lists"] == [".venv"]


@requires_bubblewrap
def test_sandboxed_code_can_write_only_to_its_scratch_folder(folders):
    alice, bob, scratch = folders
    places = [scratch / "out.txt", alice / "out.txt", bob / "out.txt", ROOT / ".venv" / "out.txt"]
    places += ["/out.txt", "/usr/out.txt", "/dev/out.txt"]
    code = f"""
    places = {[str(p) for p in places]!r}
    print(json.dumps({{p: attempt(lambda p=p: open(p, "w").write("x")) for p in places}}))
    """
    results = attempts(Sandbox(alice, scratch), code)
    assert results.pop(str(scratch / "out.txt")) == "allowed"
    assert (scratch / "out.txt").read_text() == "x"
    assert set(results.values()) <= {"OSError", "FileNotFoundError"}, results
    assert not (alice / "out.txt").exists() and not (bob / "out.txt").exists()


@requires_bubblewrap
def test_sandboxed_code_has_no_network(folders):
    alice, _, scratch = folders
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # open from the grader
        code = f"""
        import socket
        results = {{
            "grader's port": attempt(lambda: socket.create_connection(("127.0.0.1", {port}), timeout=5)),
            "internet": attempt(lambda: socket.create_connection(("1.1.1.1", 53), timeout=5)),
        }}
        print(json.dumps(results))
        """
        results = attempts(Sandbox(alice, scratch), code)
    assert results == {"grader's port": "ConnectionRefusedError", "internet": "OSError"}


@requires_bubblewrap
def test_a_process_started_with_the_launcher_api_is_sandboxed(folders):
    """What a kernel launcher does: Popen with command, environment and set_limits."""
    alice, _, scratch = folders
    sandbox = Sandbox(alice, scratch)
    code = f"import os; print(sorted(os.listdir({str(ROOT)!r})))"
    done = subprocess.run(
        sandbox.command([sys.executable, "-I", "-c", code], cwd=alice),
        env=sandbox.environment(),
        preexec_fn=sandbox.set_limits,
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "['.venv']"


@pytest.mark.parametrize(
    "new_session", [False, pytest.param(True, marks=requires_bubblewrap, id="escaping-its-process-group")]
)
def test_the_wall_clock_limit_ends_the_command_and_what_it_started(folders, new_session):
    alice, _, scratch = folders
    heartbeat = scratch / "heartbeat"
    code = f"""
    import os, subprocess, sys, time
    beat = (
        "import time\\nwhile True:\\n"
        "    open({str(heartbeat)!r}, 'w').write(repr(time.time()))\\n    time.sleep(0.05)"
    )
    subprocess.Popen([sys.executable, "-c", beat], start_new_session={new_session})
    while not os.path.exists({str(heartbeat)!r}):
        time.sleep(0.01)
    while True:
        pass
    """
    run = run_python(Sandbox(alice, scratch, Limits(wall_seconds=3)), code)
    assert run.timed_out
    last = heartbeat.read_text()
    time.sleep(0.5)
    assert heartbeat.read_text() == last, "the background process outlived the time limit"


def test_the_cpu_limit_kills_a_busy_loop(folders):
    alice, _, scratch = folders
    run = run_python(Sandbox(alice, scratch, Limits(cpu_seconds=1, wall_seconds=30)), "while True: pass")
    assert not run.timed_out
    assert run.returncode in (-signal.SIGXCPU, -signal.SIGKILL)


def test_the_memory_limit_stops_a_large_allocation(folders):
    alice, _, scratch = folders
    code = "import numpy as np\ntry:\n    np.ones(2**28)\nexcept MemoryError:\n    print('MemoryError')"
    run = run_python(Sandbox(alice, scratch, Limits(memory_bytes=1024 * MIB)), code)
    assert run.output.strip() == "MemoryError"


def test_output_is_kept_only_up_to_its_limit(folders):
    alice, _, scratch = folders
    code = "import sys\nprint('x' * 100_000)\nprint('y' * 100_000, file=sys.stderr)"
    run = run_python(Sandbox(alice, scratch, Limits(output_bytes=1000)), code)
    assert run.returncode == 0 and run.output == "x" * 1000


def test_writing_a_huge_file_is_stopped(folders):
    alice, _, scratch = folders
    code = f"open({str(scratch / 'big')!r}, 'wb').write(b'x' * {4 * MIB})"
    run = run_python(Sandbox(alice, scratch, Limits(file_bytes=MIB)), code)
    assert "OSError: [Errno 27] File too large" in run.output  # Python ignores SIGXFSZ
    assert (scratch / "big").stat().st_size <= MIB


@requires_bubblewrap
def test_a_private_scratch_folder_stops_a_writer_at_its_size_and_leaves_the_hosts_alone(folders):
    alice, _, scratch = folders
    (scratch / "given.txt").write_text("from the grader")
    code = f"""
    import os
    scratch = {str(scratch)!r}
    print(open(os.path.join(scratch, "given.txt")).read())
    try:
        open(os.path.join(scratch, "given.txt"), "w")
    except OSError as error:
        print("given:", error.strerror)
    written = 0
    try:
        with open(os.path.join(scratch, "big"), "wb") as big:
            for _ in range(64):
                big.write(b"x" * 2**20)
                big.flush()
                written += 2**20
    except OSError as error:
        print("big:", error.strerror)
    print("kept:", os.stat(os.path.join(scratch, "big")).st_blocks * 512)
    """
    run = run_python(Sandbox(alice, scratch, Limits(scratch_bytes=4 * MIB)), code)
    lines = run.output.splitlines()
    assert lines[:3] == ["from the grader", "given: Read-only file system", "big: No space left on device"]
    assert 3 * MIB <= int(lines[3].removeprefix("kept: ")) <= 4 * MIB  # stopped at the size, not before
    assert sorted(path.name for path in scratch.iterdir()) == ["given.txt"]  # the host's folder got nothing


def test_a_sandbox_that_cannot_start_is_an_error(folders, tmp_path):
    alice, _, scratch = folders
    with pytest.raises(SandboxUnavailableError, match=r"bubblewrap \(bwrap\) is not installed"):
        Sandbox(alice, scratch, bwrap="no-such-bwrap")
    broken = tmp_path / "broken-bwrap"  # as bwrap fails without user namespaces
    broken.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    broken.chmod(0o755)
    with pytest.raises(SandboxUnavailableError, match="No permissions to create new namespace"):
        Sandbox(alice, scratch, bwrap=str(broken))


def test_asked_for_no_sandbox_only_the_resource_limits_hold(folders):
    alice, _, scratch = folders
    sandbox = Sandbox(alice, scratch, Limits(memory_bytes=1024 * MIB), bwrap=None)
    code = "import numpy as np\ntry:\n    np.ones(2**28)\nexcept MemoryError:\n    print('limited')"
    run = run_python(sandbox, code)
    assert run.isolated is False
    assert run.output.strip() == "limited"


def test_it_refuses_to_show_the_course_repository(tmp_path):
    with pytest.raises(ValueError, match="course repository"):
        Sandbox(ROOT, tmp_path)
    with pytest.raises(ValueError, match="course repository"):
        Sandbox(tmp_path, tmp_path, read_only=[ROOT.parent])


@requires_bubblewrap
def test_sandboxed_code_cannot_make_namespaces_of_its_own(folders):
    """A user namespace would let it mount file systems: more of the kernel to attack."""
    alice, _, scratch = folders
    unshare = ["/usr/bin/unshare", "--user", "--map-root-user", "true"]
    if subprocess.run(unshare, check=False).returncode != 0:
        pytest.skip("user namespaces are not available here at all")
    run = Sandbox(alice, scratch).run(unshare)
    assert run.returncode != 0 and "unshare failed" in run.output


KERNEL_IN_A_TMP_ENVIRONMENT = """
import json, os, sys
import nbformat
from nbclient import NotebookClient
from autograder.kernels import SandboxedKernelManager

folder, course = sys.argv[1:]
code = f"import os, sys, numpy; print(sys.executable); print(os.listdir({course!r}))"
cell = nbformat.v4.new_code_cell(code)
client = NotebookClient(nbformat.v4.new_notebook(cells=[cell]), kernel_manager_class=SandboxedKernelManager)
client.execute(cwd=folder)
print(json.dumps(cell.outputs[0].text.splitlines()))
"""


@requires_bubblewrap
def test_a_python_environment_under_tmp_runs_kernels_in_the_sandbox(folders):
    """The sandbox's private /tmp must not hide the grader's own Python when it lives under /tmp."""
    alice, _, _ = folders
    with tempfile.TemporaryDirectory(dir="/tmp") as home:
        environment = Path(home) / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", environment], check=True)
        python = environment / "bin" / "python"
        # It imports the course's packages from the course's environment, as a .pth file says.
        site = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        )
        (Path(site.stdout.strip()) / "course.pth").write_text(sysconfig.get_path("purelib") + "\n")
        done = subprocess.run(
            [python, "-c", KERNEL_IN_A_TMP_ENVIRONMENT, alice, ROOT],
            cwd=ROOT,  # where `autograder` is found
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        kernel_python, course_root_shows = json.loads(done.stdout.strip().splitlines()[-1])
    assert kernel_python == str(python)
    assert course_root_shows == "['.venv']"  # sandboxed: only the environment, no solutions/


requires_control_groups = pytest.mark.skipif(
    control_group_problem() is not None, reason=f"no control groups: {control_group_problem()}"
)


@requires_bubblewrap
@requires_control_groups
def test_a_sandbox_caps_its_processes_together_and_ends_them_all(folders):
    alice, _, scratch = folders
    sandbox = Sandbox(alice, scratch, Limits(processes=16))
    run = run_python(
        sandbox,
        """
        import os, time
        forked = 0
        try:
            while forked < 1000:
                if os.fork() == 0:
                    os.setsid()  # out of the process group: only the control group finds it
                    time.sleep(1000)
                    os._exit(0)
                forked += 1
        except BlockingIOError:
            print("refused after", forked)
        """,
    )
    forked = int(run.output.split()[-1])
    assert run.output.startswith("refused after") and 0 < forked < 16
    assert sandbox.group is None  # run() ended the detached sleepers and removed their group
    # This process's groups only: other grading runs on the machine have their own.
    parents = {parent for _, parent in own_groups().values()}
    assert not [path for parent in parents for path in parent.glob(f"miniflow-{os.getpid()}-*")]


@requires_bubblewrap
@requires_control_groups
def test_a_sandbox_counts_the_cpu_time_of_all_its_processes(folders):
    alice, _, scratch = folders
    run = run_python(
        Sandbox(alice, scratch),
        """
        import os, time
        def spin(seconds):
            end = time.process_time() + seconds
            while time.process_time() < end:
                pass
        children = []
        for _ in range(2):
            child = os.fork()
            if child == 0:
                spin(0.5)
                os._exit(0)
            children.append(child)
        spin(0.5)
        for child in children:
            os.waitpid(child, 0)
        """,
    )
    # Each of the three processes spins for 0.5 s of CPU time.
    assert run.cpu_seconds >= 1.2


# --- cgroup v2 ------------------------------------------------------------------------------------
# The machines this course is tested on give pids, memory and cpuacct to cgroup v1, so the grader's
# own v2 path (a delegated group: `systemd-run --user --scope -p Delegate=yes`) is tried on the v2
# hierarchy they mount beside v1, with a controller that v1 leaves to it (hugetlb, say).
HARMLESS_CONTROLLERS = ("hugetlb", "misc", "rdma", "pids")  # no limit unless one is written


def cgroup_v2_trial_problem():
    """Why the v2 tests cannot run here, or None."""
    _, v2 = cgroup_mounts()
    if v2 is None:
        return "no cgroup v2 hierarchy"
    if not os.access(v2 / "cgroup.subtree_control", os.W_OK):
        return f"{v2} is not writable (root only)"
    if not set(HARMLESS_CONTROLLERS) & set((v2 / "cgroup.controllers").read_text().split()):
        return f"cgroup v2 has none of {HARMLESS_CONTROLLERS} to hand on"
    return None


requires_cgroup_v2_trial = pytest.mark.skipif(
    cgroup_v2_trial_problem() is not None, reason=f"cgroup v2: {cgroup_v2_trial_problem()}"
)


@pytest.fixture
def delegated_group():
    """A cgroup v2 group given one controller by its parent, as systemd gives a delegated scope; its name."""
    _, v2 = cgroup_mounts()
    available = (v2 / "cgroup.controllers").read_text().split()
    controller = next(name for name in HARMLESS_CONTROLLERS if name in available)
    enabled_before = controller in (v2 / "cgroup.subtree_control").read_text().split()
    if not enabled_before:
        (v2 / "cgroup.subtree_control").write_text(f"+{controller}")
    group = v2 / f"miniflow-test-{os.getpid()}"
    group.mkdir()
    yield group, controller
    children = sorted(group.rglob("cgroup.procs"), key=lambda path: len(path.parts), reverse=True)
    for procs in children:
        for pid in procs.read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    for procs in children:  # the deepest first
        for _ in range(100):
            try:
                procs.parent.rmdir()
                break
            except OSError:
                time.sleep(0.01)
    if not enabled_before:
        (v2 / "cgroup.subtree_control").write_text(f"-{controller}")


# A grader in a delegated group, with a process it forked: v2 refuses to hand on a controller while
# they are in it; `delegate` moves them to a leaf, then hands it on.
GRADER_IN_A_DELEGATED_GROUP = """
import errno, json, os, sys, time
from pathlib import Path
from autograder.sandbox import delegate
group, controller = Path(sys.argv[1]), sys.argv[2]
if os.fork() == 0:
    os.close(1), os.close(2)  # the test reads the grader's output to its end
    time.sleep(60)
    os._exit(0)
try:
    (group / "cgroup.subtree_control").write_text("+" + controller)
    refused = None
except OSError as error:
    refused = errno.errorcode[error.errno]
delegate(group, [controller])
delegate(group, [controller])  # a second time (another grading process, say) finds it done
print(json.dumps({"refused": refused, "own": open("/proc/self/cgroup").read().splitlines()[-1]}))
"""


@requires_cgroup_v2_trial
def test_on_cgroup_v2_the_grader_moves_to_a_leaf_so_its_group_can_hand_controllers_on(delegated_group):
    group, controller = delegated_group
    grader = subprocess.run(
        [sys.executable, "-c", GRADER_IN_A_DELEGATED_GROUP, str(group), controller],
        preexec_fn=lambda: (group / "cgroup.procs").write_text(str(os.getpid())),
        cwd=ROOT,  # where `autograder` is found
        capture_output=True,
        text=True,
        check=False,
    )
    assert grader.returncode == 0, grader.stderr[-2000:]
    said = json.loads(grader.stdout)
    assert said["refused"] == "EBUSY"  # what v2 says while processes are in the group
    assert said["own"].endswith(f"/{group.name}/{GRADER_LEAF}")
    assert controller in (group / "cgroup.subtree_control").read_text().split()
    assert (group / "cgroup.procs").read_text() == ""
    assert len((group / GRADER_LEAF / "cgroup.procs").read_text().split()) == 1  # the forked sleeper, left
    sandbox_group = group / "miniflow-1-0"
    sandbox_group.mkdir()
    assert controller in (sandbox_group / "cgroup.controllers").read_text().split()


@requires_cgroup_v2_trial
def test_a_cgroup_v2_group_counts_cpu_time_and_ends_every_process_in_it(delegated_group):
    group, _ = delegated_group
    folder = group / "miniflow-1-0"
    folder.mkdir()
    sandbox_group = ControlGroup(dict.fromkeys(("pids", "memory", "cpu"), (2, folder)))
    spinner = textwrap.dedent(
        """
        import os, time
        for _ in range(3):
            if os.fork() == 0:
                os.setsid()  # out of the session: only the control group finds them
                break
        end = time.process_time() + 0.5
        while time.process_time() < end:
            pass
        print("spun", flush=True)
        time.sleep(1000)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-I", "-c", spinner],
        preexec_fn=lambda: sandbox_group.add(os.getpid()),
        stdout=subprocess.PIPE,
        text=True,
    )
    for _ in range(4):  # the first process and three forks, each spins then sleeps
        process.stdout.readline()
    assert len(sandbox_group.pids()) == 4
    assert sandbox_group.cpu_seconds() >= 1.8
    sandbox_group.remove()
    process.wait(timeout=10)
    process.stdout.close()
    assert not folder.exists()
