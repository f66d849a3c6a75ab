"""The grader reaches a sandboxed kernel's folders without following a link the kernel made.

Under a TMPDIR in /tmp, the folders above a kernel's scratch folder are plain
folders of the sandbox's private /tmp: the kernel may move one and put a link
to a host folder in its place. A path through the sandbox's root
(/proc/PID/root/...) would then lead the grader into that host folder, to read
records there and remove them; the grader holds the kernel's folders instead.
"""

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from test_kernel_limits import kernel_of
from test_nothing_left_behind import private_scratch_root

from autograder.kernels import RECORDS_FOLDER, SandboxedKernelManager
from autograder.sandbox import MIB, Limits, Sandbox, bubblewrap_problem

pytestmark = pytest.mark.skipif(
    bubblewrap_problem(shutil.which("bwrap")) is not None, reason="no working bubblewrap"
)

SWAP_PARENT = """\
import os
scratch = os.path.expanduser('~')
parent = os.path.dirname(scratch)
os.rename(parent, parent + '-moved')
os.symlink({host!r}, parent)
print('swapped')
"""
WRITE_OWN_RECORD = """\
with open(os.path.join(parent + '-moved', os.path.basename(scratch), 'records', 'a_test.jsonl'), 'w') as f:
    f.write('{"own": true}')
"""


@pytest.fixture
def under_tmp():
    """A folder under /tmp: inside a sandbox, its folders are plain folders of the sandbox's own /tmp."""
    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    yield folder
    shutil.rmtree(folder)


def test_a_kernel_that_swaps_a_folder_above_its_scratch_for_a_link_leads_the_grader_nowhere(under_tmp):
    host, student = under_tmp / "host", under_tmp / "student"
    student.mkdir()
    manager = SandboxedKernelManager(kernel_name="python3")

    async def swap_then_grade():
        async with kernel_of(manager, student) as run:
            # Where the link leads the grader's old paths: a record and a socket name of the host's.
            planted = host / manager.scratch.name / RECORDS_FOLDER / "a_test.jsonl"
            planted.parent.mkdir(parents=True)
            planted.write_text('{"planted": true}')
            printed = await run(SWAP_PARENT.format(host=str(host)))
            manager.remove_record("a_test")  # as the grader does before a test cell
            await run(WRITE_OWN_RECORD)
            record = manager.read_record("a_test")  # and after it
            late = manager.client()  # connects now, past the link
            late.start_channels()
            try:
                late_printed = await run("print('here')", client=late)
            finally:
                late.stop_channels()
            return printed, planted.read_text(), record, late_printed

    with private_scratch_root(under_tmp / "grader-tmp"):
        printed, planted, record, late_printed = asyncio.run(swap_then_grade())

    lines = printed.splitlines()  # with IPython's complaint that its history database moved away
    assert lines[0] == "swapped"  # the kernel did move the folder and put the link there
    assert planted == '{"planted": true}'  # not removed
    assert record == '{"own": true}'  # the kernel's own records folder, moved with its parent
    assert late_printed == "here\n"  # a client connecting after the swap reaches the kernel


def test_a_link_on_the_way_into_a_sandbox_is_refused_and_named(under_tmp):
    submission, scratch = under_tmp / "submission", under_tmp / "nested" / "scratch"
    submission.mkdir()
    scratch.mkdir(parents=True)
    sandbox = Sandbox(submission, scratch, Limits(scratch_bytes=MIB))
    parent = scratch.parent
    swap = f"mv {parent} {parent}-moved && ln -s / {parent} && echo swapped && sleep 60"
    info_read, info_write = os.pipe()
    process = subprocess.Popen(
        sandbox.command(["sh", "-c", swap], info_fd=info_write),
        env=sandbox.environment(),
        stdout=subprocess.PIPE,
        pass_fds=(info_write,),
    )
    os.close(info_write)
    try:
        sandbox.started(info_read)
        assert process.stdout.readline() == b"swapped\n"
        with pytest.raises(OSError, match=f"{parent} in the sandbox: a link or not a folder"):
            sandbox.open_inside(scratch)
        moved = sandbox.open_inside(f"{parent}-moved/scratch")
        try:
            assert os.fstat(moved).st_dev != os.stat(scratch).st_dev  # the sandbox's tmpfs, not the host's
        finally:
            os.close(moved)
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
