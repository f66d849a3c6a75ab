"""Per-student limits, end to end: attacks on the grading machine cost the attacker only.

One batch holds honest students (the reference, the untouched starter, a typical
mistake) beside attackers: one student's notebook gets cells that attack the
machine between honest answers (a fork bomb, a disk filler, and a hook that
prints every cell's source, hidden tests included, after it runs); another's
second notebook looks for the first one, graded with its hidden tests back in,
in the folder its kernel runs in; and the attacking samples and fixtures forge
the grader's replies, look for the solutions on disk, exhaust memory and end
their kernel. The honest students' rows must equal those of the session's
samples run (conftest's graded_samples, honest students alone); each attacker
gets exactly its expected score and no point over its honest baseline (the
reference or the starter it starts from), each attack is stopped (the disk
filler by its full scratch folder, in its own cell; a kernel ended with a
reason in the student's row), no feedback page shows a hidden line, and the run
leaves no process, scratch folder or control group.
"""

import contextlib
import html
import os
from pathlib import Path

import nbformat
import psutil
import pytest
from conftest import MNIST
from test_grade import assert_no_hidden_tests, read_csv, scores
from test_nothing_left_behind import (
    NOTEBOOK,
    control_groups_left,
    private_scratch_root,
    processes_of_the_run,
    requires_bubblewrap,
    write_submission,
)

from autograder import fixtures
from autograder.grade import Settings, grade
from autograder.samples import manifest
from autograder.sandbox import MIB, control_group_problem
from autograder.submissions import materialise_sample

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
# What the filler's folder (its HOME, the kernel's scratch folder: a tmpfs of 256 MiB) holds, and its size.
DISK_USED = """\
import os
disk = os.statvfs(os.path.expanduser('~'))
print('kept', (disk.f_blocks - disk.f_bfree) * disk.f_frsize, 'of', disk.f_blocks * disk.f_frsize)
"""
# A hidden test's source reaches the kernel as it runs; printed later, it must not reach the feedback.
SOURCE_PRINTER = """\
get_ipython().events.register('post_run_cell', lambda result: print(result.info.raw_cell))
"""
ATTACKS = [FORK_BOMB, DISK_FILLER, DISK_USED, SOURCE_PRINTER]

# nbgrader writes 01-chain-rule.ipynb, graded, hidden tests restored, before it runs 02-...
LOOKER = """\
import glob
seen = {path: open(path).read() for path in glob.glob('*.ipynb') + glob.glob('../*/*.ipynb')}
print('notebooks seen:', sorted(seen))
print('hidden tests seen:', any('BEGIN HIDDEN' in text for text in seen.values()))
"""

requires_control_groups = pytest.mark.skipif(
    control_group_problem() is not None and not os.environ.get("CI"),
    reason=f"no control groups here: {control_group_problem()}",
)


# Notebooks as the honest samples answer them, with cells added (test_nothing_left_behind.write_submission).
WRITTEN = {
    "attacker": {"cells": ATTACKS},
    "looker": {
        "cells": [LOOKER],
        "notebook": "02-linear-and-sigmoid",
        "keep": (NOTEBOOK, "02-linear-and-sigmoid"),
    },
}
HONEST = ("reference", "starter", "ce_summed")
ATTACKING_SAMPLES = ("forger", "reads_solutions")  # graded nowhere else
# Attacks that test_grade.py also grades beside robustness fixtures, here beside honest students.
ATTACKING_FIXTURES = ("memory_bomb_in_package", "os_exit_in_package")


def baseline(student):
    """The honest sample an attacker starts from, and the notebooks it hands in."""
    if student in WRITTEN:
        return "reference", WRITTEN[student].get("keep", (NOTEBOOK,))
    if student in ATTACKING_FIXTURES:
        recipe = fixtures.RECIPES[student]
        return manifest(recipe["sample"])["base"], tuple(recipe["notebooks"])
    return manifest(student)["base"], None  # every notebook


@pytest.fixture(scope="module")
def attacked(course, tmp_path_factory):
    """HONEST and every attacker graded in one batch: (rows by student, OUT, processes and folders left)."""
    folder = tmp_path_factory.mktemp("attacked")
    submissions, out = folder / "submissions", folder / "out"
    release_folder = course.folder(course.coursedir.release_directory, ".")
    source_folder = course.folder(course.coursedir.source_directory, ".")
    for name in HONEST + ATTACKING_SAMPLES:
        materialise_sample(name, submissions / name, release_folder, source_folder)
    for name in ATTACKING_FIXTURES:
        fixtures.materialise(name, submissions / name, release_folder, source_folder)
    for name, written in WRITTEN.items():
        write_submission(course, submissions / name, **written)
    with private_scratch_root(folder / "tmp") as scratch_root:
        before = processes_of_the_run(scratch_root)
        # As the samples run is graded, so that the honest students' rows can be compared.
        rows = grade(submissions, out, course, Settings(workers=2, data=str(MNIST)))
        left = processes_of_the_run(scratch_root) - before
        for pid, _, _ in left:  # the test must not leave them either
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        folders_left = sorted(path.name for path in scratch_root.iterdir())
    return {row.student_id: row for row in rows}, out, left, folders_left


def rows_of(out, students):
    """The lines of OUT's grades.csv and tests.csv for `students`, as dicts."""
    return {
        table: [row for row in read_csv(out / table) if row["student_id"] in students]
        for table in ("grades.csv", "tests.csv")
    }


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
def test_honest_students_beside_attackers_get_the_rows_of_a_clean_run(attacked, graded_samples):
    _, out, _, _ = attacked
    clean_out, _ = graded_samples
    assert rows_of(out, HONEST) == rows_of(clean_out, HONEST)
    assert len(rows_of(out, HONEST)["grades.csv"]) == len(HONEST)


@pytest.mark.slow
@requires_bubblewrap
@requires_control_groups
def test_each_attacker_gets_its_expected_score_and_no_point_over_its_honest_baseline(
    course, attacked, graded_samples
):
    rows, out, _, _ = attacked
    clean = scores(graded_samples[0])
    graded = scores(out)
    attackers = [*WRITTEN, *ATTACKING_SAMPLES, *ATTACKING_FIXTURES]
    assert set(rows) == set(HONEST) | set(attackers)
    for student in attackers:
        base, notebooks = baseline(student)
        handed_in = notebooks or course.tests
        honest = {
            (notebook, test): clean[(base, notebook, test)] if notebook in handed_in else 0
            for notebook, tests in course.tests.items()
            for test, _ in tests
        }
        expected = fixtures.expected_scores(student, course.tests) if student in fixtures.RECIPES else honest
        got = {key: graded[(student, *key)] for key in honest}
        assert {key: score for key, score in got.items() if score > honest[key]} == {}, student
        assert got == expected, student
        assert rows[student].status == "graded", (student, rows[student].reason)
        assert rows[student].score == pytest.approx(sum(expected.values())), student
        if student in fixtures.RECIPES:
            assert fixtures.RECIPES[student]["reason"] in rows[student].reason


@pytest.mark.slow
@requires_bubblewrap
@requires_control_groups
def test_no_feedback_page_of_the_batch_shows_a_hidden_line(attacked):
    _, out, _, _ = attacked
    assert_no_hidden_tests(out / "feedback")


@pytest.mark.slow
@requires_bubblewrap
@requires_control_groups
def test_a_fork_bomb_gets_no_more_processes_and_says_so(course, attacked):
    fork_bomb = graded_cells(course)[0]
    assert [output.get("ename") for output in fork_bomb.outputs] == ["BlockingIOError"]


@pytest.mark.slow
@requires_bubblewrap
@requires_control_groups
def test_a_disk_filler_gets_no_space_at_the_cap_and_keeps_its_kernel(course, attacked):
    rows, _, _, _ = attacked
    disk_filler, disk_used = graded_cells(course)[1:3]
    assert [(output.get("ename"), output.get("evalue")) for output in disk_filler.outputs] == [
        ("OSError", "[Errno 28] No space left on device")
    ]
    [printed] = [output.text for output in disk_used.outputs]  # the same kernel: it kept its files
    _, kept, _, size = printed.split()
    assert int(size) == 256 * MIB
    assert 240 * MIB <= int(kept) <= 256 * MIB  # stopped at the cap, not before and not after
    assert "scratch folder" not in rows["attacker"].reason


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


@pytest.mark.slow
@requires_bubblewrap
@requires_control_groups
def test_a_kernel_sees_no_notebook_graded_before_its_own(course, attacked):
    folder = course.folder(course.coursedir.autograded_directory, "looker")
    graded = nbformat.read(Path(folder) / "02-linear-and-sigmoid.ipynb", as_version=4)
    printed = "".join(output.get("text", "") for output in graded.cells[3].outputs)
    assert "notebooks seen: []" in printed
    assert "hidden tests seen: False" in printed
