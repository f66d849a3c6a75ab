"""The sandbox: what a student's code can and cannot reach, and the limits that stop it.

Each test runs a small Python program in a sandbox and asserts from its
output, and checks the same access from the grader, outside, where it works.
"""

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
    MIB,
    Limits,
    Sandbox,
    SandboxUnavailableError,
    bubblewrap_problem,
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
    _, parents = own_groups()
    # This process's groups only: other grading runs on the machine have their own.
    assert not [path for parent in set(parents.values()) for path in parent.glob(f"miniflow-{os.getpid()}-*")]


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
