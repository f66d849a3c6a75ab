"""A sandboxed kernel's writable places: hard-capped tmpfs, and a watchdog on the number of files.

Each test starts one SandboxedKernelManager kernel with small limits, runs a
cell in it and looks at what the cell printed, what the grader reads of the
kernel's records, and why the kernel ended, if it did.
"""

import asyncio
import contextlib
import os
import shutil

import pytest
from test_nothing_left_behind import private_scratch_root

from autograder.kernels import SandboxedKernelManager
from autograder.sandbox import MIB, bubblewrap_problem

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bubblewrap_problem(shutil.which("bwrap")) is not None, reason="no working bubblewrap"),
]

FILL_HOME = """\
import os
home = os.path.expanduser('~')
try:
    with open(os.path.join(home, 'filler'), 'wb') as filler:
        for _ in range(64):
            filler.write(b'x' * 2**20)
except OSError as error:
    print('stopped:', error.strerror)
print('kept:', os.stat(os.path.join(home, 'filler')).st_blocks * 512)
with open(os.path.join(home, 'records', 'a_test.jsonl'), 'w') as record:
    record.write('{"recorded": true}')
"""
# A kernel that would redirect what the grader puts in its scratch folder: the recorder is there,
# read-only, before the kernel starts, so the grader never writes through the sandbox's root.
REDIRECT_RECORDER = """\
import os, shutil
recorder = os.path.join(os.path.expanduser('~'), 'recorder')
for attempt in (lambda: open(os.path.join(recorder, 'x.py'), 'w'), lambda: shutil.rmtree(recorder),
                lambda: os.rename(recorder, recorder + '-moved')):
    try:
        attempt()
        print('changed')
    except OSError as error:
        print('refused:', error.strerror)
print(sorted(os.listdir(recorder)))
"""
MANY_FILES = """\
for number in range(1000):
    open(f'/tmp/empty-{number}', 'w').close()
"""


@contextlib.asynccontextmanager
async def kernel_of(manager, cwd):
    """Start a kernel of `manager` in `cwd`; yield `run(code, client=None, reply=True)`: what `code` printed.

    `run` uses the kernel's first client, or `client` (one connected later, say). With `reply=False`
    it only sends `code`, for a kernel that may be ended before it replies.
    """
    await manager.start_kernel(cwd=str(cwd))
    first = manager.client()
    first.start_channels()

    async def run(code, client=None, reply=True):
        if not reply:
            (client or first).execute(code)
            return ""
        printed = []

        def keep(message):
            if message["msg_type"] == "stream":
                printed.append(message["content"]["text"])

        await (client or first).execute_interactive(code, timeout=60, output_hook=keep)
        return "".join(printed)

    try:
        await first.wait_for_ready(timeout=60)
        yield run
    finally:
        first.stop_channels()
        await manager.shutdown_kernel(now=True)


async def run_cell(manager, cwd, code, until_ended=False):
    """Run `code` in a kernel of `manager` (then, if asked, wait for its end); (printed, records, breach).

    `records` is {file name: text} of what the grader reads in the kernel's records folder.
    """
    async with kernel_of(manager, cwd) as run:
        printed = await run(code, reply=not until_ended)  # the watchdog may end the kernel mid-cell
        for _ in range(100 if until_ended else 0):  # the watchdog looks twice a second
            if not await manager.is_alive():
                break
            await asyncio.sleep(0.1)
        names = os.listdir(manager.held_path(manager.records_folder))
        records = {name: manager.read_record(name.removesuffix(".jsonl")) for name in names}
        return printed, records, manager.breach


def test_a_writer_gets_no_space_at_the_cap_and_the_records_keep_theirs(tmp_path):
    manager = SandboxedKernelManager(kernel_name="python3", disk_bytes=8 * MIB)
    with private_scratch_root(tmp_path / "tmp") as scratch_root:
        printed, records, breach = asyncio.run(run_cell(manager, tmp_path, FILL_HOME))
        assert list(scratch_root.iterdir()) == []
    lines = printed.splitlines()
    assert lines[0] == "stopped: No space left on device"
    assert 7 * MIB <= int(lines[1].removeprefix("kept: ")) <= 8 * MIB  # at the cap: not before, not past
    assert records == {"a_test.jsonl": '{"recorded": true}'}  # the grader reads it, the folder full
    assert breach is None


def test_a_kernel_that_makes_too_many_files_is_ended_and_says_why(tmp_path):
    manager = SandboxedKernelManager(kernel_name="python3", max_files=100)
    with private_scratch_root(tmp_path / "tmp") as scratch_root:
        _, _, breach = asyncio.run(run_cell(manager, tmp_path, MANY_FILES, until_ended=True))
        assert list(scratch_root.iterdir()) == []
    assert breach == "it made more than 100 files in the folders it may write to"


def test_a_kernel_cannot_move_or_change_its_recorder(tmp_path):
    manager = SandboxedKernelManager(kernel_name="python3")
    with private_scratch_root(tmp_path / "tmp"):
        printed, _, breach = asyncio.run(run_cell(manager, tmp_path, REDIRECT_RECORDER))
    lines = printed.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["refused"] * 3, printed
    assert lines[3] == "['miniflow_recording.py']"
    assert breach is None


def test_folders_bound_under_the_sandboxs_tmp_are_not_the_kernels_files(tmp_path):
    # tmp_path lives under /tmp, as a course and its Python environment may: bound read-only into the
    # sandbox's /tmp, their files are the grader's and count against no limit of the kernel's.
    data = tmp_path / "data"
    data.mkdir()
    for number in range(300):
        (data / f"file-{number}").write_text("x")
    manager = SandboxedKernelManager(kernel_name="python3", max_files=100, read_only_paths=[str(data)])
    with private_scratch_root(tmp_path / "tmp"):
        code = f"import os, time\ntime.sleep(2)\nprint(len(os.listdir({str(data)!r})))"
        printed, _, breach = asyncio.run(run_cell(manager, tmp_path, code))
    assert printed.strip() == "300"
    assert breach is None
