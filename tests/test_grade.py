"""`miniflow-course grade`: nbgrader's pipeline with sandboxed kernels, trusted checks and hardened repairs.

Fast tests cover taking submissions in, the preprocessors one cell at a time,
the check table and the fixture recipes. Slow tests grade for real, in a
scratch copy of the course (its own gradebook, built by build-release):

- the bundled samples: the reference gets full marks, the untouched starter zero,
  typical mistakes lose the tests that catch them, and nbgrader's own export and
  the formgrader's API read the same gradebook;
- the robustness fixtures (autograder/fixtures): each costs exactly its points;
- a batch graded twice, with two workers and with one, gives the same files;
- a Worker process or the child grading a student, killed outright (SIGKILL):
  that student's row says grading failed, the batch's other students get their
  usual scores, earlier grades stay in the gradebook and nothing keeps running.
"""

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT
from nbformat.v4 import new_code_cell, new_notebook, new_output
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.apps.api import NbGraderAPI
from nbgrader.utils import determine_grade

from autograder import cli, fixtures, release
from autograder.grade import Settings, Worker, grade
from autograder.preprocessors import HideHiddenTests, RecordedTests, StderrIsNotFailure
from autograder.sandbox import bubblewrap_problem
from autograder.submissions import copy_into_course, find_submissions, materialise_sample
from autograder.testcells import read_events

ASSIGNMENT = ROOT / "assignments" / release.ASSIGNMENT
NOTEBOOKS = sorted(path.stem for path in ASSIGNMENT.glob("*.ipynb"))
REGION = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.DOTALL)


@pytest.fixture(scope="session")
def course(samples_course):
    """The samples run's scratch course (conftest), its release built and recorded in its own gradebook."""
    return samples_course


def folders(course):
    return (
        course.folder(course.coursedir.release_directory, "."),
        course.folder(course.coursedir.source_directory, "."),
    )


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def scores(out):
    return {
        (row["student_id"], row["notebook"], row["test"]): float(row["score"])
        for row in read_csv(out / "tests.csv")
    }


def grade_cell(source, outputs, grade_id="some_test", points=1.0):
    cell = new_code_cell(source, outputs=outputs)
    cell.metadata["nbgrader"] = {
        "grade": True,
        "grade_id": grade_id,
        "locked": True,
        "points": points,
        "schema_version": 3,
        "solution": False,
        "task": False,
    }
    return cell


def hidden_lines(notebook_text):
    lines = set()
    for region in REGION.findall(notebook_text):
        lines |= {line.strip() for line in region.splitlines() if len(line.strip()) >= 12}
    return lines


def given_lines():
    """Lines students see anyway: everything outside hidden-test regions, and the reference package."""
    given = set()
    for path in ASSIGNMENT.glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            given |= {line.strip() for line in REGION.sub("", cell.source).splitlines()}
    for path in (ROOT / "solutions" / "miniflow").rglob("*.py"):
        given |= {line.strip() for line in path.read_text().splitlines()}
    return given


def assert_no_hidden_tests(feedback_folder):
    secret = (
        set().union(*(hidden_lines(path.read_text()) for path in ASSIGNMENT.glob("*.ipynb"))) - given_lines()
    )
    for page in feedback_folder.rglob("*.html"):
        text = page.read_text()
        shown = [line for line in secret if line in text or line.replace('"', "&quot;") in text]
        assert not shown, f"{page} shows hidden tests: {shown[:3]}"


# Taking submissions in


def notebook_file(path, source="x = 1"):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=[new_code_cell(source)]), path)


def test_both_layouts_are_found_and_bad_folders_get_a_reason(tmp_path):
    notebook_file(tmp_path / "alice" / "miniflow-lab" / "01-chain-rule.ipynb")
    notebook_file(tmp_path / "bob" / "01-chain-rule.ipynb")
    notebook_file(tmp_path / "bob smith" / "01-chain-rule.ipynb")
    (tmp_path / "carol.zip").write_bytes(b"PK")
    (tmp_path / ".git").mkdir()
    (tmp_path / "__MACOSX").mkdir()

    found = {submission.student_id: submission for submission in find_submissions(tmp_path, "miniflow-lab")}

    assert sorted(found) == ["alice", "bob", "bob smith", "carol.zip"]
    assert found["alice"].folder == tmp_path / "alice" / "miniflow-lab"
    assert found["bob"].folder == tmp_path / "bob"
    assert not found["alice"].problem and not found["bob"].problem
    assert not found["bob smith"].problem and found["bob smith"].nbgrader_id.startswith("bob_smith-")
    assert "Not a folder" in found["carol.zip"].problem


def test_what_cannot_be_graded_is_left_out_and_noted(tmp_path):
    student = tmp_path / "submissions" / "dan"
    notebook_file(student / "01-chain-rule.ipynb")
    (student / "02-linear-and-sigmoid.ipynb").write_text('{"cells": [')
    notebook_file(student / "01-chain-rule-Copy1.ipynb")
    (student / "miniflow").mkdir()
    (student / "miniflow" / "layers.py").write_text("answer = 42\n")
    secret = tmp_path / "solutions.py"
    secret.write_text("the reference\n")
    (student / "miniflow" / "graph.py").symlink_to(secret)
    os.mkfifo(student / "pipe")
    [submission] = find_submissions(tmp_path / "submissions", "miniflow-lab")
    destination = tmp_path / "course" / "submitted" / "dan" / "miniflow-lab"

    copy_into_course(
        submission, destination, ["01-chain-rule", "02-linear-and-sigmoid", "03-softmax-and-losses"]
    )

    assert sorted(path.name for path in destination.iterdir()) == ["01-chain-rule.ipynb", "miniflow"]
    assert (destination / "miniflow" / "layers.py").read_text() == "answer = 42\n"
    assert not (destination / "miniflow" / "graph.py").exists()
    assert submission.notebooks == ["01-chain-rule"]
    notes = " ".join(submission.notes)
    for expected in (
        "01-chain-rule-Copy1.ipynb is not one of the assignment's notebooks",
        "miniflow/graph.py is a symbolic link: left out",
        "pipe is not a regular file",
        "02-linear-and-sigmoid.ipynb is not a notebook that can be graded (not valid JSON)",
        "03-softmax-and-losses.ipynb is missing",
    ):
        assert expected in notes


# The preprocessors, one cell at a time


def test_a_test_cell_that_writes_to_stderr_keeps_its_points():
    cell = grade_cell("check()", [new_output("stream", name="stderr", text="UserWarning: slow\n")])
    assert determine_grade(cell)[0] == 0  # nbgrader alone

    StderrIsNotFailure().preprocess_cell(cell, {}, 0)

    assert determine_grade(cell)[0] == 1
    assert "UserWarning: slow" in cell.outputs[0].text


def test_feedback_shows_a_hidden_tests_message_but_never_its_code():
    source = "# Hidden tests: Mul.forward\n### BEGIN HIDDEN TESTS\nsecret_value = compute_secret(42)\n"
    source += "assert answer() == secret_value, 'answer() is wrong'\n### END HIDDEN TESTS"
    leaked = "secret_value = compute_secret(42)"
    cell = grade_cell(
        source,
        [
            new_output("stream", name="stdout", text=f"the caller's code: {leaked}\n"),
            new_output(
                "error",
                ename="AssertionError",
                evalue=f"answer() is wrong; by the way: {leaked}",
                traceback=[f"----> 3 {leaked}", "AssertionError"],
            ),
        ],
        grade_id="a_test_an_instructor_added",  # graded in the kernel: neither checked nor probed
    )

    HideHiddenTests().preprocess_cell(cell, {}, 0)

    assert cell.source.strip() == "# Hidden tests: Mul.forward"
    assert [output.output_type for output in cell.outputs] == ["error"]
    assert "answer() is wrong" in cell.outputs[0].evalue
    assert leaked not in json.dumps(cell)


def test_a_test_cells_verdict_replaces_what_the_kernel_showed_and_survives_feedback():
    source = "# Hidden tests: Mul.forward\n### BEGIN HIDDEN TESTS\nassert secret() == 3, 'Mul is wrong'\n"
    source += "### END HIDDEN TESTS"
    reference = '{"assert": 0, "leaves": {"0": 3}, "passed": true}\n'
    student = '{"assert": 0, "leaves": {"0": 4}, "passed": true}\n'  # the kernel's own assert "passed"
    shown = [new_output("stream", name="stdout", text="all good!\n")]
    cell = grade_cell(source, shown, grade_id="mul_forward")

    right = RecordedTests.verdict_outputs(cell, reference, {"mul_forward": read_events(reference)})
    cell.outputs = RecordedTests.verdict_outputs(cell, student, {"mul_forward": read_events(reference)})
    assert determine_grade(cell)[0] == 0
    HideHiddenTests().preprocess_cell(cell, {}, 0)

    assert "Mul is wrong" in cell.outputs[0].evalue and "secret()" in cell.outputs[0].evalue
    assert "all good" not in json.dumps(cell.outputs)
    cell.outputs = right
    assert determine_grade(cell)[0] == 1
    HideHiddenTests().preprocess_cell(cell, {}, 0)
    assert cell.outputs == right


# Fixtures and the command line


def test_every_fixture_recipe_applies_to_the_current_release(course, tmp_path):
    release_folder, source_folder = folders(course)
    for name in fixtures.names():
        folder = fixtures.materialise(name, tmp_path / name, release_folder, source_folder)
        recipe = fixtures.RECIPES[name]
        assert {path.stem for path in folder.glob("*.ipynb")} <= set(recipe["notebooks"])
        assert set(recipe["lost"]) - {"*"} <= {test for tests in course.tests.values() for test, _ in tests}


def test_grade_needs_the_assignment_in_the_gradebook(tmp_path, capsys):
    shutil.copy2(ROOT / "nbgrader_config.py", tmp_path)

    assert cli.main(["--root", str(tmp_path), "grade", "--samples", "--out", str(tmp_path / "out")]) == 1
    assert "run `miniflow-course build-release` first" in capsys.readouterr().err


def test_grade_takes_either_a_folder_or_the_samples(tmp_path, capsys):
    assert cli.main(["grade", str(tmp_path), "--samples", "--out", str(tmp_path / "out")]) == 2
    assert cli.main(["grade", "--out", str(tmp_path / "out")]) == 2


# Grading for real


@pytest.mark.slow
def test_the_reference_gets_full_marks_and_the_starter_zero(course, graded_samples):
    out, rows = graded_samples
    assert rows["reference"].score == rows["reference"].max_score == course.max_score
    assert rows["reference"].reason == ""
    graded = scores(out)
    assert all(
        graded[("starter", notebook, test)] == 0
        for notebook, tests in course.tests.items()
        for test, _ in tests
    )
    assert rows["starter"].status == "graded"


@pytest.mark.slow
def test_the_references_graded_notebooks_show_no_error_and_nothing_on_stderr(course, graded_samples):
    autograded = course.folder(course.coursedir.autograded_directory, "reference")
    shown = [
        (path.stem, cell.source[:60], output.get("ename") or output.text[:200])
        for path in sorted(autograded.glob("*.ipynb"))
        for cell in nbformat.read(path, as_version=4).cells
        for output in cell.get("outputs", [])
        if output.output_type == "error" or output.get("name") == "stderr"
    ]
    assert shown == []


@pytest.mark.slow
def test_typical_mistakes_lose_the_tests_that_catch_them(graded_samples):
    out, rows = graded_samples
    graded = scores(out)
    assert graded[("ce_summed", "03-softmax-and-losses", "cross_entropy_forward")] == 0
    # its own gradient disagrees with finite differences of its loss
    assert graded[("ce_summed", "03-softmax-and-losses", "cross_entropy_backward")] == 0
    assert graded[("bias_grad_wrong_axis", "02-linear-and-sigmoid", "linear_backward_db")] == 0
    assert graded[("bias_grad_wrong_axis", "02-linear-and-sigmoid", "linear_forward")] == 1
    assert graded[("sigmoid_naive", "02-linear-and-sigmoid", "sigmoid_stability")] == 0  # right, but warns
    assert graded[("sigmoid_naive", "02-linear-and-sigmoid", "sigmoid_backward")] == 1
    for name in ("ce_summed", "bias_grad_wrong_axis", "sigmoid_naive"):
        assert 0 < rows[name].score < rows[name].max_score


@pytest.mark.slow
def test_feedback_names_failed_tests_with_a_message_and_hides_hidden_tests(graded_samples):
    out, _ = graded_samples
    page = (out / "feedback" / "ce_summed" / "03-softmax-and-losses.html").read_text()
    assert "cross_entropy_forward" in page
    assert "(a mean)" in " ".join(page.split())  # the assert's own message (wrapped on the page)
    for student in ("reference", "starter", "ce_summed"):
        assert sorted(path.stem for path in (out / "feedback" / student).glob("*.html")) == NOTEBOOKS
    assert_no_hidden_tests(out / "feedback")


@pytest.mark.slow
def test_nbgraders_export_and_formgrader_read_the_same_gradebook(course, graded_samples):
    _, rows = graded_samples
    exported = course.root / "nbgrader-export.csv"
    release.run_nbgrader(course.root, "export", "--to", str(exported))
    by_student = {row["student_id"]: float(row["score"]) for row in read_csv(exported)}
    submissions = NbGraderAPI(course.coursedir).get_submissions(course.assignment)
    listed = {submission["student"]: submission["score"] for submission in submissions}
    for name, row in rows.items():
        assert by_student[name] == pytest.approx(row.score)
        assert listed[name] == pytest.approx(row.score)


# Honest students graded beside the fixtures, with the notebooks whose cells take seconds, not minutes.
HONEST = ("reference", "starter")
HONEST_NOTEBOOKS = ("01-chain-rule", "02-linear-and-sigmoid", "03-softmax-and-losses")


@pytest.mark.slow
def test_each_fixture_costs_only_its_points(course, graded_samples, tmp_path):
    submissions, out = tmp_path / "submissions", tmp_path / "out"
    release_folder, source_folder = folders(course)
    for name in fixtures.names():
        fixtures.materialise(name, submissions / name, release_folder, source_folder)
    for name in HONEST:
        folder = materialise_sample(name, submissions / name, release_folder, source_folder)
        for path in folder.glob("*.ipynb"):
            if path.stem not in HONEST_NOTEBOOKS:
                path.unlink()
    (submissions / "no notebooks").mkdir()
    (submissions / "empty").mkdir()

    rows = {
        row.student_id: row for row in grade(submissions, out, course, Settings(workers=2, cell_timeout=20))
    }

    graded = scores(out)
    isolated = bubblewrap_problem(shutil.which("bwrap")) is None
    for name in fixtures.names():
        recipe = fixtures.RECIPES[name]
        if recipe.get("needs_isolation") and not isolated:
            continue
        expected = fixtures.expected_scores(name, course.tests)
        wrong = {
            key: (graded[(name, *key)], score)
            for key, score in expected.items()
            if graded[(name, *key)] != score
        }
        assert not wrong, f"{name}: (got, expected) {wrong}"
        assert recipe["reason"] in rows[name].reason
        assert rows[name].score == pytest.approx(sum(expected.values()))
    assert rows["no notebooks"].status == rows["empty"].status == "not graded"
    assert "not a valid student id" in rows["no notebooks"].reason
    assert "None of the assignment's notebooks" in rows["empty"].reason
    assert not list(course.root.rglob("breach.txt"))
    for name in fixtures.names():
        for page in (out / "feedback" / name).glob("*.html"):
            assert page.stat().st_size < 1_000_000, page
    page = (out / "feedback" / "html_and_script_in_outputs" / "01-chain-rule.html").read_text()
    assert "steal(1)" in page  # shown as text, if at all: no script, no handler in a tag
    assert not re.search(r"<script>steal|<[^<>]*\son(error|load)=", page)
    page = (out / "feedback" / "hidden_markers_in_own_cells" / "01-chain-rule.html").read_text()
    assert "BEGIN HIDDEN TESTS" in page  # the student's own cell and what it printed, shown as they are
    assert_no_hidden_tests(out / "feedback")
    # The honest students' rows are those of the clean samples run, notebook by notebook.
    clean = read_csv(graded_samples[0] / "tests.csv")
    honest = {(student, notebook) for student in HONEST for notebook in HONEST_NOTEBOOKS}
    assert [row for row in read_csv(out / "tests.csv") if (row["student_id"], row["notebook"]) in honest] == [
        row for row in clean if (row["student_id"], row["notebook"]) in honest
    ]


@pytest.mark.slow
def test_grading_again_serially_gives_the_same_files(course, tmp_path):
    submissions = tmp_path / "submissions"
    release_folder, source_folder = folders(course)
    for name in ("os_exit_cell", "changed_cell_metadata", "warning_on_stderr", "memory_bomb_in_package"):
        fixtures.materialise(name, submissions / f"again_{name}", release_folder, source_folder)

    grade(submissions, tmp_path / "parallel", course, Settings(workers=2, cell_timeout=20))
    grade(submissions, tmp_path / "serial", course, Settings(workers=1, cell_timeout=20))

    for name in ("grades.csv", "tests.csv"):
        assert (tmp_path / "parallel" / name).read_text() == (tmp_path / "serial" / name).read_text()


@pytest.mark.slow
def test_a_student_over_the_time_limit_gets_a_row_and_the_batch_goes_on(course, tmp_path):
    submissions = tmp_path / "submissions"
    release_folder, source_folder = folders(course)
    for name in ("sleeping_cell", "sys_exit_cell"):
        fixtures.materialise(name, submissions / f"late_{name}", release_folder, source_folder)

    rows = grade(
        submissions, tmp_path / "out", course, Settings(workers=1, cell_timeout=300, student_timeout=20)
    )

    assert [(row.student_id, row.status) for row in rows] == [
        ("late_sleeping_cell", "not graded"),
        ("late_sys_exit_cell", "graded"),
    ]
    assert rows[0].reason.startswith("Grading took longer than 20 s.")
    assert rows[1].score == course.notebook_max("01-chain-rule")


# A grading process killed outright

WHY = {"worker": "the grading worker died", "child": "the grading process was killed by SIGKILL"}
BATCH = {"a_graded_first": "warning_on_stderr", "z_graded_last": "changed_cell_metadata"}  # student: fixture
EARLIER = {"graded_earlier": "sys_exit_cell"}  # graded before, not in the batch


def write_fixtures(course, submissions, students):
    release_folder, source_folder = folders(course)
    for student_id, name in students.items():
        fixtures.materialise(name, submissions / student_id, release_folder, source_folder)


def recorded_grades(course, students):
    """(student, notebook, test) -> the score the course's gradebook holds."""
    with Gradebook(course.coursedir.db_url) as gb:
        return {
            (student, notebook, test): gb.find_grade(test, notebook, course.assignment, student).score
            for student in students
            for notebook, tests in course.tests.items()
            for test, _ in tests
        }


def descendants(pid):
    """The pids of the processes below `pid`, its children first."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            children += [int(child) for child in (task / "children").read_text().split()]
    return children + [below for child in children for below in descendants(child)]


def kernel_below(pid):
    """Whether a Jupyter kernel runs below `pid`: its process, not just bwrap setting up its sandbox."""
    for below in descendants(pid):
        with contextlib.suppress(OSError):
            arguments = Path(f"/proc/{below}/cmdline").read_bytes().split(b"\0")
            if arguments[1:3] == [b"-m", b"ipykernel_launcher"]:
                return True
    return False


def running(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has ended


def kill_while_grading(monkeypatch, victim, process):
    """SIGKILL the Worker ("worker") or its child ("child") once grading `victim` is under way.

    Returns the list that receives, at the kill, the pids of the Worker and all below it.
    """
    doomed = []
    grade_in_worker = Worker.grade

    def kill(worker_pid):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if kernel_below(worker_pid):  # the child runs the student's notebook
                below = descendants(worker_pid)
                doomed.extend([worker_pid, *below])
                os.kill(worker_pid if process == "worker" else below[0], signal.SIGKILL)
                return
            time.sleep(0.05)

    def grade_and_kill(worker, job_file, log, timeout):
        if json.loads(Path(job_file).read_text())["student_id"] == victim:
            threading.Thread(target=kill, args=(worker.process.pid,), daemon=True).start()
        return grade_in_worker(worker, job_file, log, timeout)

    monkeypatch.setattr(Worker, "grade", grade_and_kill)
    return doomed


@pytest.fixture(scope="session")
def graded_before_a_kill(course, tmp_path_factory):
    """The batch and an earlier student graded, nothing killed: their rows, tests.csv scores and grades."""
    submissions, out = tmp_path_factory.mktemp("unkilled"), tmp_path_factory.mktemp("unkilled-out")
    write_fixtures(course, submissions, BATCH | EARLIER)
    rows = grade(submissions, out, course, Settings(workers=2, cell_timeout=30))
    return {row.student_id: row for row in rows}, scores(out), recorded_grades(course, BATCH | EARLIER)


@pytest.mark.slow
@pytest.mark.parametrize("process", ["worker", "child"])
def test_a_grading_process_killed_outright_costs_its_student_only(
    course, graded_before_a_kill, tmp_path, monkeypatch, process
):
    rows_before, scores_before, grades_before = graded_before_a_kill
    victim = f"killed_{process}"  # sorts between the batch's two students
    submissions, out = tmp_path / "submissions", tmp_path / "out"
    write_fixtures(course, submissions, BATCH | {victim: "sleeping_cell"})  # it sleeps until killed
    doomed = kill_while_grading(monkeypatch, victim, process)

    rows = grade(submissions, out, course, Settings(workers=1, cell_timeout=30, student_timeout=60))

    assert doomed, f"grading {victim} never got under way"
    assert [row.student_id for row in rows] == ["a_graded_first", victim, "z_graded_last"]
    killed = rows[1]
    assert (killed.status, killed.score, killed.max_score) == ("not graded", 0, course.max_score)
    assert killed.reason.startswith(f"Grading failed: {WHY[process]}."), killed.reason
    for row in (rows[0], rows[2]):  # the one before on the same worker, the one after on its replacement
        assert row == rows_before[row.student_id]
    graded = scores(out)
    assert {key: score for key, score in graded.items() if key[0] in BATCH} == {
        key: score for key, score in scores_before.items() if key[0] in BATCH
    }
    assert not any(score for (student, *_), score in graded.items() if student == victim)
    assert recorded_grades(course, BATCH | EARLIER) == grades_before
    assert course.folder(course.coursedir.autograded_directory, "graded_earlier").is_dir()
    with Gradebook(course.coursedir.db_url) as gb, pytest.raises(MissingEntry):
        gb.find_submission(course.assignment, victim)  # nothing of the killed run was merged
    for step in (course.coursedir.autograded_directory, course.coursedir.feedback_directory):
        assert not course.folder(step, victim).exists()
    deadline = time.monotonic() + 5
    while any(map(running, doomed)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in doomed if running(pid)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, "processes that graded the killed student are still running"


@pytest.mark.slow
def test_a_worker_that_died_between_students_is_replaced_before_the_next(
    course, graded_before_a_kill, tmp_path, monkeypatch
):
    rows_before, scores_before, _ = graded_before_a_kill
    submissions, out = tmp_path / "submissions", tmp_path / "out"
    write_fixtures(course, submissions, BATCH)
    grade_in_worker = Worker.grade

    def grade_then_die(worker, job_file, log, timeout):
        status = grade_in_worker(worker, job_file, log, timeout)
        worker.process.kill()  # once idle, before its next student
        worker.process.wait()
        return status

    monkeypatch.setattr(Worker, "grade", grade_then_die)
    rows = grade(submissions, out, course, Settings(workers=1, cell_timeout=30))

    assert rows == [rows_before[student] for student in BATCH]
    assert scores(out) == {key: score for key, score in scores_before.items() if key[0] in BATCH}


def test_feedback_blanks_hidden_test_lines_in_every_cell_and_sanitises_student_html():
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    from autograder.pipeline import configure

    secret = "assert gradient_of_f(7, 8, 9) == [17, 7, 7], 'at another point'"
    test = grade_cell(f"# Hidden tests\n### BEGIN HIDDEN TESTS\n{secret}\n### END HIDDEN TESTS", [])
    later = new_code_cell(
        "print(In[-2])",
        outputs=[
            new_output("stream", name="stdout", text=f"the hidden test was: {secret}\n"),
            new_output(
                "display_data", data={"text/html": '<img src=x onerror="alert(1)"><script>steal()</script>'}
            ),
            new_output(
                "display_data", data={"image/svg+xml": "<svg><text>x = 3</text></svg>", "text/html": "<svg/>"}
            ),
        ],
    )
    nb = new_notebook(cells=[test, later])

    HideHiddenTests().preprocess(nb, {})
    config = Config()
    configure(config)
    page, _ = HTMLExporter(config=config).from_notebook_node(nb)

    assert secret not in page and "[hidden test]" in page
    assert "<img src=x onerror" not in page and "<script>steal()" not in page  # shown as text, if at all
    assert 'src="data:image/svg+xml;base64,' in page  # the widget's static picture survives


def test_the_course_configuration_gives_every_grading_step_only_settings_it_knows(caplog):
    from traitlets.config import Config

    from autograder.pipeline import configure

    config = Config()
    configure(config)
    steps = [*config.Autograde.sanitize_preprocessors, *config.Autograde.autograde_preprocessors]
    for step in [*steps, *config.GenerateFeedback.preprocessors]:
        step(config=config)
    assert not [record.getMessage() for record in caplog.records if "not recognized" in record.getMessage()]


def test_every_kind_of_output_is_capped_per_cell_and_per_notebook():
    from autograder.preprocessors import SandboxedExecute

    executor = SandboxedExecute(
        max_output_bytes=10_000, max_notebook_output_bytes=25_000, max_error_chars=100
    )
    cell = new_code_cell("show()")
    executor.nb = new_notebook(cells=[cell])
    executor.reset_execution_trackers()
    executor.kept_bytes, executor.truncated, executor.notebook_bytes = 0, False, 0
    executor.clear_before_next_output = False

    def message(msg_type, content, display_id=None):
        transient = {"display_id": display_id} if display_id else {}
        return {
            "msg_type": msg_type,
            "header": {"msg_type": msg_type},
            "parent_header": {"msg_id": "m"},
            "content": {**content, "transient": transient},
        }

    big = {"data": {"text/plain": "x" * 6_000}, "metadata": {}}
    executor.output(cell.outputs, message("display_data", big, "d1"), "d1", 0)
    executor.output(cell.outputs, message("execute_result", {**big, "execution_count": 1}), None, 0)
    executor.output(
        cell.outputs,
        message("error", {"ename": "E", "evalue": "y" * 5000, "traceback": ["z" * 5000] * 99}),
        None,
        0,
    )
    executor._update_display_id(
        "d1", message("update_display_data", {"data": {"text/plain": "w" * 50_000}, "metadata": {}})
    )

    kinds = [output.output_type for output in cell.outputs]
    assert kinds == ["display_data", "stream", "error"]  # the result went over the cell's budget
    assert "[output cut at" in cell.outputs[1].text
    assert len(cell.outputs[2].evalue) == 100 and len(cell.outputs[2].traceback) == 50
    assert "display update cut" in cell.outputs[0].data["text/plain"]
    assert len(json.dumps(cell.outputs)) < 20_000


def test_hidden_test_markers_in_a_students_own_cell_do_not_stop_the_feedback():
    own = new_code_cell("# ### BEGIN HIDDEN TESTS\nprint('my notes')", outputs=[])
    nb = new_notebook(
        cells=[own, grade_cell("# Test\n### BEGIN HIDDEN TESTS\nassert x\n### END HIDDEN TESTS", [])]
    )

    HideHiddenTests().preprocess(nb, {})

    assert nb.cells[0].source.endswith("print('my notes')")
    assert nb.cells[1].source.strip() == "# Test"


@pytest.mark.slow
def test_a_timed_out_cell_honours_error_on_timeout_and_says_which_names_survive(tmp_path):
    from autograder.preprocessors import SandboxedExecute

    nb = new_notebook(
        cells=[
            new_code_cell("before = 1"),
            new_code_cell("during = 2\nwhile True: pass"),
            new_code_cell("print(before, 'during' in globals())"),
        ]
    )
    custom = {"ename": "TooSlow", "evalue": "the course's own words", "traceback": ["TooSlow"]}
    executor = SandboxedExecute(timeout=3, error_on_timeout=custom)
    executor.preprocess(nb, {"metadata": {"path": str(tmp_path)}})

    (error,) = nb.cells[1].outputs
    assert error.ename == "TooSlow" and error.evalue.startswith("the course's own words")
    assert "the names they define are back" in error.evalue
    assert nb.cells[2].outputs[0].text == "1 False\n"
