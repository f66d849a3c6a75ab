"""Shards and resumed runs.

- `grade --shard I/N` grades every N-th student into its own OUT and gradebook;
  `merge` combines the shards into the course's gradebook and an OUT equal to a
  local run's, refuses a student graded twice or a shard given twice, and names
  the students no shard graded.
- A run killed outright (SIGKILL, as a lost machine) and started again grades only
  the students it had not finished, and a student whose files changed; the result
  equals an uninterrupted run's, and the killed run leaves no process running.
"""

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time

import nbformat
import psutil
import pytest
from conftest import MNIST
from nbgrader.api import Gradebook

from autograder import cli
from autograder.grade import Settings, Shard, grade
from autograder.submissions import Submission, materialise_sample

SAMPLES = ("reference", "starter", "ce_summed", "bias_grad_wrong_axis", "sigmoid_naive")
NOTEBOOKS = ("01-chain-rule", "03-softmax-and-losses")  # enough to tell the samples apart, quickly


def write_samples(course, folder, samples=SAMPLES):
    release_folder = course.folder(course.coursedir.release_directory, ".")
    source_folder = course.folder(course.coursedir.source_directory, ".")
    for name in samples:
        student = materialise_sample(name, folder / name, release_folder, source_folder)
        for path in student.glob("*.ipynb"):
            if path.stem not in NOTEBOOKS:
                path.unlink()
    return folder


def settings():
    return Settings(workers=2, cell_timeout=60, data=str(MNIST))


def grade_locally(course, tmp_path_factory):
    """The samples graded by the local pool: OUT, what other runs must equal."""
    folder = tmp_path_factory.mktemp("local")
    grade(write_samples(course, folder / "submissions"), folder / "out", course, settings())
    return folder / "out"


@pytest.fixture(scope="module")
def local_run(course, tmp_path_factory):
    return grade_locally(course, tmp_path_factory)


def full_marks(course):
    return sum(map(course.notebook_max, NOTEBOOKS))


def same_files(first, second):
    for name in ("grades.csv", "tests.csv"):
        assert (first / name).read_text() == (second / name).read_text(), name
    pages = sorted(path.relative_to(first) for path in (first / "feedback").rglob("*.html"))
    assert pages == sorted(path.relative_to(second) for path in (second / "feedback").rglob("*.html"))


def test_shards_share_the_students_out_once_each_in_a_fixed_order():
    found = [Submission(f"s{index:02d}", None) for index in range(11)]
    shares = [Shard(index, 3).share(found) for index in (1, 2, 3)]
    together = [submission for share in shares for submission in share]
    assert sorted(together, key=lambda submission: submission.name) == found
    assert [len(share) for share in shares] == [4, 4, 3]
    assert Shard.parse("2/3") == Shard(2, 3)
    for wrong in ("0/3", "4/3", "2", "a/b"):
        with pytest.raises(ValueError, match="--shard"):
            Shard.parse(wrong)


# Shards and merge


@pytest.fixture(scope="module")
def shard_outs(course, tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    submissions = write_samples(course, folder / "submissions")
    for index in (1, 2):
        grade(submissions, folder / f"shard{index}", course, settings(), shard=Shard(index, 2))
    return folder / "shard1", folder / "shard2"


def graded_students(out):
    with open(out / "grades.csv", newline="") as file:
        return [row["student_id"] for row in csv.DictReader(file)]


@pytest.mark.slow
def test_merged_shards_equal_a_local_run(course, local_run, shard_outs, tmp_path):
    first, second = shard_outs
    assert graded_students(first) == ["bias_grad_wrong_axis", "reference", "starter"]  # in name order
    assert graded_students(second) == ["ce_summed", "sigmoid_naive"]
    with Gradebook(f"sqlite:///{first / 'gradebook.db'}") as gb:
        assert gb.find_submission(course.assignment, "reference").score == full_marks(course)

    status = cli.main(["--root", str(course.root), "merge", str(second), str(first), "--out", str(tmp_path)])

    assert status == 0
    same_files(local_run, tmp_path)
    with Gradebook(course.coursedir.db_url) as gb:
        assert gb.find_submission(course.assignment, "reference").score == full_marks(course)


@pytest.mark.slow
def test_merge_names_what_is_missing(course, shard_outs, tmp_path, capsys):
    status = cli.main(["--root", str(course.root), "merge", str(shard_outs[0]), "--out", str(tmp_path)])

    assert status == 1
    error = capsys.readouterr().err
    assert "missing shards: 2" in error
    assert "not graded by any shard (2): ce_summed, sigmoid_naive" in error
    assert graded_students(tmp_path) == ["bias_grad_wrong_axis", "reference", "starter"]


@pytest.mark.slow
def test_merge_refuses_a_student_graded_twice_and_a_shard_given_twice(course, shard_outs, tmp_path, capsys):
    first, second = shard_outs
    twice = tmp_path / "twice"
    twice.mkdir()
    (twice / "shard.json").write_text((second / "shard.json").read_text())
    lines = (second / "grades.csv").read_text().splitlines(keepends=True)
    (twice / "grades.csv").write_text(
        "".join(lines) + (first / "grades.csv").read_text().splitlines()[1] + "\n"
    )
    out = tmp_path / "out"

    assert cli.main(["--root", str(course.root), "merge", str(first), str(twice), "--out", str(out)]) == 1
    assert "bias_grad_wrong_axis is graded both in" in capsys.readouterr().err
    assert cli.main(["--root", str(course.root), "merge", str(first), str(first), "--out", str(out)]) == 1
    assert "shard 1 of 2 is given more than once" in capsys.readouterr().err
    assert not out.exists()


# Resuming


def start_run(course, submissions, out, scratch_root, stderr):
    """`miniflow-course grade` in a process of its own, with one Worker and `scratch_root` as its TMPDIR."""
    arguments = ["--root", str(course.root), "grade", str(submissions), "--out", str(out)]
    arguments += ["--workers", "1", "--cell-timeout", "60", "--data", str(MNIST)]
    return subprocess.Popen(
        [sys.executable, "-m", "autograder", *arguments],
        env=os.environ | {"TMPDIR": str(scratch_root)},
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def processes_with(scratch_root):
    """The processes that have `scratch_root` in their environment: the run's, wherever they went."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.status() != psutil.STATUS_ZOMBIE and any(
                str(scratch_root) in value for value in process.environ().values()
            ):
                found.append(process)
    return found


def graded_at(out):
    """When each student's record was written: it changes only when the student is graded again."""
    return {path.stem: path.stat().st_mtime_ns for path in (out / "records").glob("*.json")}


@pytest.mark.slow
def test_a_killed_run_started_again_grades_only_what_is_left_and_what_changed(
    course, local_run, tmp_path, tmp_path_factory
):
    submissions, out = write_samples(course, tmp_path / "submissions"), tmp_path / "out"
    scratch_root = tmp_path_factory.mktemp("run")  # a short path: kernels' socket paths must fit
    with open(tmp_path / "run.err", "w") as stderr:
        run = start_run(course, submissions, out, scratch_root, stderr)
        deadline = time.monotonic() + 300
        while len(graded_at(out)) < 2 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)  # as a lost machine: no chance to clean up
        run.wait()
    before = graded_at(out)
    assert 2 <= len(before) < len(SAMPLES), (tmp_path / "run.err").read_text()[-2000:]
    # What the killed run started ends with it (its workers watch their parent): wait for that, boundedly.
    _, left = psutil.wait_procs(processes_with(scratch_root), timeout=60)
    assert not [process for process in left if process in processes_with(scratch_root)], left

    rerun = ["--root", str(course.root), "grade", str(submissions), "--out", str(out)]
    assert cli.main([*rerun, "--cell-timeout", "60", "--data", str(MNIST)]) == 0

    after = graded_at(out)
    assert {student: after[student] for student in before} == before  # not graded again
    assert set(after) == set(SAMPLES)
    same_files(local_run, out)

    changed = sorted(before)[0]
    path = submissions / changed / f"{NOTEBOOKS[0]}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_markdown_cell("an afterthought"))
    nbformat.write(notebook, path)
    grade(submissions, out, course, settings())
    again = graded_at(out)
    assert [student for student in SAMPLES if again[student] != after[student]] == [changed]
    same_files(local_run, out)
