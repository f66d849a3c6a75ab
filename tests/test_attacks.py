"""Per-student limits, end to end: attacks on the grading machine cost the attacker only.

One student's notebook gets cells that attack the machine between honest
answers: a fork bomb, a disk filler, and a hook that prints every cell's
source (hidden tests included) after it runs. The run must grade every honest
answer, stop each attack with a reason in the student's row, show no hidden
line in the feedback, and leave no process, scratch folder or control group.
Another student's second notebook looks for the first one, graded with its
hidden tests back in, in the folder its kernel runs in.
"""

import html
import os
from pathlib import Path

import nbformat
import pytest
from test_nothing_left_behind import NOTEBOOK, control_groups_left, grade_and_look, requires_bubblewrap

from autograder.grade import Settings, grade
from autograder.sandbox import control_group_problem

FORK_BOMB = """\
import os, time
children = 0
while children < 100_000:
    if os.fork() == 0:
        time.sleep(1000)
        os._exit(0)
    children += 1
"""
DISK_FILLER = """\
import os
for number in range(1000):
    with open(os.path.join(os.path.expanduser('~'), f'filler-{number}'), 'wb') as filler:
        filler.write(b'x' * 2**24)
"""
# A hidden test's source reaches the kernel as it runs; printed later, it must not reach the feedback.
SOURCE_PRINTER = """\
get_ipython().events.register('post_run_cell', lambda result: print(result.info.raw_cell))
"""
ATTACKS = [FORK_BOMB, DISK_FILLER, SOURCE_PRINTER]

requires_control_groups = pytest.mark.skipif(
    control_group_problem() is not None and not os.environ.get("CI"),
    reason=f"no control groups here: {control_group_problem()}",
)


@pytest.fixture(scope="module")
def attacked(course, tmp_path_factory):
    """Grade one student whose notebook carries ATTACKS; (rows, out, processes left, folders left)."""
    settings = Settings(workers=1, cell_timeout=60)
    return grade_and_look(
        course,
        tmp_path_factory.mktemp("attacked"),
        "attacker",
        lambda submissions, out: grade(submissions, out, course, settings),
        cells=ATTACKS,
    )


def hidden_lines(course):
    source = course.root / "assignments" / "miniflow-lab" / f"{NOTEBOOK}.ipynb"
    for cell in nbformat.read(source, as_version=4).cells:
        if "### BEGIN HIDDEN TESTS" in cell.source:
            region = cell.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
            yield from region.splitlines()


def graded_cells(course):
    folder = course.folder(course.coursedir.autograded_directory, "attacker")
    return nbformat.read(Path(folder) / f"{NOTEBOOK}.ipynb", as_version=4).cells[3 : 3 + len(ATTACKS)]


@pytest.mark.slow
@requires_bubblewrap
@requires_control_groups
def test_attacks_cost_no_honest_point(course, attacked):
    rows, _, _, _ = attacked
    [row] = rows
    assert row.status == "graded"
    assert row.score == course.notebook_max(NOTEBOOK), row.reason


@pytest.mark.slow
@requires_bubblewrap
@requires_control_groups
def test_a_fork_bomb_gets_no_more_processes_and_says_so(course, attacked):
    fork_bomb = graded_cells(course)[0]
    assert [output.get("ename") for output in fork_bomb.outputs] == ["BlockingIOError"]


@pytest.mark.slow
@requires_bubblewrap
@requires_control_groups
def test_a_disk_filler_is_stopped_and_the_row_says_why(course, attacked):
    rows, _, _, _ = attacked
    disk_filler = graded_cells(course)[1]
    assert [output.get("ename") for output in disk_filler.outputs] == ["DeadKernelError"]
    assert "wrote more than 256 MiB to its scratch folder" in rows[0].reason


@pytest.mark.slow
@requires_bubblewrap
@requires_control_groups
def test_printed_sources_show_no_hidden_line_in_the_feedback(course, attacked):
    _, out, _, _ = attacked
    page = html.unescape((out / "feedback" / "attacker" / f"{NOTEBOOK}.html").read_text())
    assert "get_ipython().events.register" in page  # the printer ran and printed
    assert "BEGIN HIDDEN TESTS" not in page
    hidden = [line.strip() for line in hidden_lines(course) if len(line.strip()) > 20]
    assert hidden
    assert not [line for line in hidden if line in page]


@pytest.mark.slow
@requires_bubblewrap
@requires_control_groups
def test_attacks_leave_no_process_scratch_folder_or_control_group(attacked):
    _, _, left, folders_left = attacked
    assert not left, f"still running after the run: {left}"
    assert folders_left == []
    assert control_groups_left() == []


# nbgrader writes 01-chain-rule.ipynb, graded, hidden tests restored, before it runs 02-...
LOOKER = """\
import glob
seen = {path: open(path).read() for path in glob.glob('*.ipynb') + glob.glob('../*/*.ipynb')}
print('notebooks seen:', sorted(seen))
print('hidden tests seen:', any('BEGIN HIDDEN' in text for text in seen.values()))
"""


@pytest.mark.slow
@requires_bubblewrap
def test_a_kernel_sees_no_notebook_graded_before_its_own(course, tmp_path):
    settings = Settings(workers=1, cell_timeout=60)
    rows, _, _, _ = grade_and_look(
        course,
        tmp_path,
        "looker",
        lambda submissions, out: grade(submissions, out, course, settings),
        cells=[LOOKER],
        notebook="02-linear-and-sigmoid",
        keep=(NOTEBOOK, "02-linear-and-sigmoid"),
    )
    assert rows[0].score == course.notebook_max(NOTEBOOK) + course.notebook_max("02-linear-and-sigmoid")
    folder = course.folder(course.coursedir.autograded_directory, "looker")
    graded = nbformat.read(Path(folder) / "02-linear-and-sigmoid.ipynb", as_version=4)
    printed = "".join(output.get("text", "") for output in graded.cells[3].outputs)
    assert "notebooks seen: []" in printed
    assert "hidden tests seen: False" in printed
