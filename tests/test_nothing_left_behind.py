"""A grading run leaves nothing behind, and runs unsandboxed only when told to (issues 12 and 13).

Each run grades one student whose notebook has cells that try to outlive
their kernel: one forks a process that sleeps (and one that also leaves the
kernel's session), one ends its kernel with os._exit, one loops until its
cell's timeout. Once the run returns, none of the processes it started may
run, and its scratch root (TMPDIR, private to the test) must be empty.

Without a working bubblewrap, grading stops with an error that names
--no-sandbox; with --no-sandbox, the run says so once, not in every row.
"""

import asyncio
import contextlib
import csv
import io
import shutil
import tempfile
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell

from autograder import cli
from autograder.grade import NO_SANDBOX, Settings, grade
from autograder.kernels import SandboxedKernelManager
from autograder.sandbox import SandboxUnavailableError, bubblewrap_problem, control_group_problem, own_groups
from autograder.submissions import materialise_sample

NOTEBOOK = "01-chain-rule"
FORKS = """\
import os, time
for detach in (False, True):
    if os.fork() == 0:
        if detach:
            os.setsid()  # out of the kernel's process group and session
        time.sleep(1000)
        os._exit(0)
print("forked")
"""
LEAVERS = [FORKS, "import os\nos._exit(1)", "while True:\n    pass"]

requires_bubblewrap = pytest.mark.skipif(
    bubblewrap_problem(shutil.which("bwrap")) is not None, reason="no working bubblewrap"
)


def write_submission(course, folder, cells=LEAVERS, notebook=NOTEBOOK, keep=(NOTEBOOK,)):
    """The reference's answers to the notebooks in `keep`; `cells` go after `notebook`'s setup cells."""
    release_folder = course.folder(course.coursedir.release_directory, ".")
    source_folder = course.folder(course.coursedir.source_directory, ".")
    materialise_sample("reference", folder, release_folder, source_folder)
    for path in folder.glob("*.ipynb"):
        if path.stem not in keep:
            path.unlink()
    path = folder / f"{notebook}.ipynb"
    changed = nbformat.read(path, as_version=4)
    changed.cells[3:3] = [new_code_cell(source) for source in cells]
    nbformat.write(changed, path)


def processes_of_the_run(scratch_root):
    """Running processes below this one, or with the run's scratch root in their environment."""
    below = {process.pid for process in psutil.Process().children(recursive=True)}
    found = set()
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.status() == psutil.STATUS_ZOMBIE:  # it has ended
                continue
            if process.pid in below or any(
                str(scratch_root) in value for value in process.environ().values()
            ):
                found.add((process.pid, process.create_time(), " ".join(process.cmdline())[:200]))
    return found


@contextlib.contextmanager
def private_scratch_root(folder):
    """TMPDIR for the run and everything it starts, so that what it leaves there is its own."""
    folder.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(folder))
        patch.setattr(tempfile, "tempdir", str(folder))
        yield folder


def grade_and_look(course, folder, student, run, **submission):
    """Grade `student`, written by write_submission(..., **submission), with `run(submissions, out)`.

    Returns what `run` returned, OUT, and the processes and folders the run left.
    """
    submissions, out = folder / "submissions", folder / "out"
    write_submission(course, submissions / student, **submission)
    with private_scratch_root(folder / "tmp") as scratch_root:
        before = processes_of_the_run(scratch_root)
        result = run(submissions, out)
        left = processes_of_the_run(scratch_root) - before
        for pid, _, _ in left:  # the test must not leave them either
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        folders_left = sorted(path.name for path in scratch_root.iterdir())
    return result, out, left, folders_left


def control_groups_left():
    """Control groups whose maker (named in the group's name) has ended: left behind."""
    if control_group_problem() is not None:
        return []
    # miniflow-<maker's pid>-<number>; on cgroup v2 the grader's own leaf, miniflow-grader, is beside them.
    names = {path.name for _, folder in own_groups().values() for path in folder.glob("miniflow-*-*")}
    return sorted(name for name in names if not Path(f"/proc/{name.split('-')[1]}").exists())


def lost_kernels(course, student):
    """The errors the leaving cells of `student`'s graded notebook show: how their kernels were lost."""
    folder = course.folder(course.coursedir.autograded_directory, student)
    graded = nbformat.read(folder / f"{NOTEBOOK}.ipynb", as_version=4)
    return {output.get("ename") for cell in graded.cells[3:6] for output in cell.get("outputs", [])}


@pytest.mark.slow
@requires_bubblewrap
def test_a_sandboxed_run_leaves_no_process_and_no_scratch_folder(course, tmp_path):
    settings = Settings(workers=1, cell_timeout=10)
    rows, _, left, folders_left = grade_and_look(
        course, tmp_path, "sandboxed", lambda submissions, out: grade(submissions, out, course, settings)
    )
    assert [row.status for row in rows] == ["graded"]
    assert {"DeadKernelError", "CellTimeoutError"} <= lost_kernels(course, "sandboxed")
    assert not left, f"still running after the run: {left}"
    assert folders_left == []


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", [pytest.param(True, marks=requires_bubblewrap), False])
def test_a_student_killed_at_the_time_limit_leaves_no_process_and_no_scratch_folder(
    course, tmp_path, sandbox
):
    """The process grading the student is killed outright, with its kernel and forks running."""
    student = f"killed_{'sandboxed' if sandbox else 'unsandboxed'}"
    settings = Settings(workers=1, cell_timeout=600, student_timeout=30, sandbox=sandbox)
    rows, _, left, folders_left = grade_and_look(
        course, tmp_path, student, lambda submissions, out: grade(submissions, out, course, settings)
    )
    assert [row.status for row in rows] == ["not graded"]
    assert rows[0].reason.startswith("Grading took longer than 30 s.")
    assert not left, f"still running after the run: {left}"
    assert folders_left == []
    assert control_groups_left() == []


@pytest.fixture(scope="module")
def unsandboxed_run(course, tmp_path_factory):
    """`miniflow-course grade --no-sandbox` on a leaving submission: (exit status, stderr, out, left...)."""
    stderr = io.StringIO()

    def run(submissions, out):
        arguments = ["--root", str(course.root), "grade", str(submissions), "--out", str(out)]
        with contextlib.redirect_stderr(stderr):
            return cli.main([*arguments, "--no-sandbox", "--workers", "1", "--cell-timeout", "10"])

    status, out, left, folders_left = grade_and_look(
        course, tmp_path_factory.mktemp("unsandboxed"), "unsandboxed", run
    )
    return status, stderr.getvalue(), out, left, folders_left


@pytest.mark.slow
def test_an_unsandboxed_run_leaves_no_process_and_no_scratch_folder(course, unsandboxed_run):
    status, _, _, left, folders_left = unsandboxed_run
    assert status == 0
    assert {"DeadKernelError", "CellTimeoutError"} <= lost_kernels(course, "unsandboxed")
    assert not left, f"still running after the run: {left}"
    assert folders_left == []


@pytest.mark.slow
def test_an_unsandboxed_run_says_so_once(unsandboxed_run):
    _, stderr, out, *_ = unsandboxed_run
    assert stderr.count(NO_SANDBOX) == 1
    assert (out / "notes.txt").read_text() == NO_SANDBOX + "\n"


@pytest.mark.slow
def test_an_unsandboxed_run_does_not_repeat_it_in_each_row(unsandboxed_run):
    _, _, out, *_ = unsandboxed_run
    with open(out / "grades.csv", newline="") as file:
        reasons = [row["reason"] for row in csv.DictReader(file)]
    assert reasons and not any("sandbox" in reason.lower() for reason in reasons)


def test_grading_stops_when_the_sandbox_cannot_start(course, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    submissions, out = tmp_path / "submissions", tmp_path / "out"
    write_submission(course, submissions / "never_graded")

    status = cli.main(["--root", str(course.root), "grade", str(submissions), "--out", str(out)])

    assert status == 1
    error = capsys.readouterr().err
    assert "the sandbox cannot start: bubblewrap (bwrap) is not installed" in error
    assert "--no-sandbox" in error
    assert not out.exists()
    assert not course.folder(course.coursedir.submitted_directory, "never_graded").exists()


def test_a_kernel_whose_sandbox_cannot_start_leaves_no_scratch_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    with private_scratch_root(tmp_path / "tmp") as scratch_root:
        manager = SandboxedKernelManager(kernel_name="python3")
        with pytest.raises(SandboxUnavailableError, match="cannot start"):
            asyncio.run(manager.start_kernel(cwd=str(tmp_path)))
        assert list(scratch_root.iterdir()) == []
