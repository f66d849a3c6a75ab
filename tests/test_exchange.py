"""Handing in through nbgrader's exchange: release, fetch, Submit, collect, autograde, feedback.

A scratch copy of the course and a scratch exchange folder, configured as README's "Start here" tells
instructors: `c.Exchange.root` and `c.CourseDirectory.course_id` in an nbgrader_config.py that both the
instructor's commands and the students' servers read (here a folder on JUPYTER_CONFIG_PATH, where a
JupyterHub would have /etc/jupyter). The instructor uses nbgrader's commands in the course root. One
student works in a running JupyterLab and presses the Assignment List's *Fetch*, *Submit* and *Fetch
Feedback*: the test calls the endpoints those buttons call. Another fetches and submits the untouched
starter with nbgrader's commands in a terminal. What comes back through the exchange is graded.
"""

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from browser.jupyter_driver import JupyterServer
from conftest import ROOT
from nbgrader.api import Gradebook
from nbgrader.utils import get_username

from autograder import release
from autograder.submissions import materialise_sample

pytestmark = pytest.mark.slow

COURSE_ID = "miniflow-course"  # the course's nbgrader_config.py says so
ASSIGNMENT = release.ASSIGNMENT
FULL_MARKS = 61
# The student in the JupyterLab: nbgrader's Submit names the submission as get_username says (the
# server's Unix user, or JUPYTERHUB_USER for jovyan).
LAB_STUDENT = get_username()
TERMINAL_STUDENT = "bob"


def make_exchange(scratch):
    """An exchange in `scratch`; return a config folder holding its settings, as /etc/jupyter on a hub."""
    root = scratch / "exchange"
    root.mkdir()
    root.chmod(0o777)  # nbgrader wants the exchange writable by every student
    config = scratch / "etc-jupyter"
    config.mkdir()
    (config / "nbgrader_config.py").write_text(
        "c = get_config()  # noqa\n"
        f"c.Exchange.root = {str(root)!r}\n"
        f"c.CourseDirectory.course_id = {COURSE_ID!r}\n"
    )
    return config


@pytest.fixture(scope="module")
def exchange_config(tmp_path_factory):
    return make_exchange(tmp_path_factory.mktemp("exchange"))


def user_environment(home, exchange_config):
    """The environment of a user with home `home` who reads the exchange settings; nbgrader on PATH."""
    return {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
        "JUPYTER_DATA_DIR": str(home / ".local" / "share" / "jupyter"),  # nbgrader's submission cache
        "JUPYTER_CONFIG_PATH": str(exchange_config),
        "PATH": os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", ""))),
    }


def nbgrader(folder, environment, *args):
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=folder, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def post(server, path, body):
    request = urllib.request.Request(
        f"{server.base}/{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"token {server.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.load(response)


def answer_with_the_reference(folder, scratch):
    """Write the reference's answers into the fetched `folder`: answered notebooks, solutions' package."""
    answered = materialise_sample(
        "reference", scratch, ROOT / "release" / ASSIGNMENT, ROOT / "assignments" / ASSIGNMENT
    )
    shutil.rmtree(folder / "miniflow")
    shutil.copytree(answered, folder, dirs_exist_ok=True)


@pytest.fixture(scope="module")
def instructor(course, exchange_config, tmp_path_factory):
    """The instructor's environment, after releasing the assignment to the exchange."""
    environment = user_environment(tmp_path_factory.mktemp("instructor"), exchange_config)
    nbgrader(course.root, environment, "release_assignment", ASSIGNMENT)
    return environment


@pytest.fixture(scope="module")
def student_lab(instructor, exchange_config, tmp_path_factory):
    """The JupyterLab of a student, started in their home, as a JupyterHub starts it."""
    home = tmp_path_factory.mktemp("student-home")
    environment = user_environment(home, exchange_config)
    server = JupyterServer(home, tmp_path_factory.mktemp("student-jupyter-state"), env=environment)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def handed_in(course, instructor, student_lab, exchange_config, tmp_path_factory):
    """Both students fetch and submit; the instructor collects and autogrades what came in."""
    body = {"course_id": COURSE_ID, "assignment_id": ASSIGNMENT}
    listed = post(student_lab, "assignments/fetch", body)
    assert [(entry["assignment_id"], entry["status"]) for entry in listed["value"]] == [
        (ASSIGNMENT, "fetched")
    ]
    answer_with_the_reference(student_lab.root / ASSIGNMENT, tmp_path_factory.mktemp("answers") / "reference")
    submitted = post(student_lab, "assignments/submit", body)
    assert submitted["success"], submitted.get("value")

    terminal_home = tmp_path_factory.mktemp("terminal-student-home")
    terminal = user_environment(terminal_home, exchange_config)
    nbgrader(terminal_home, terminal, "fetch_assignment", ASSIGNMENT)
    nbgrader(terminal_home, terminal, "submit", ASSIGNMENT, f"--student={TERMINAL_STUDENT}")

    nbgrader(course.root, instructor, "collect", ASSIGNMENT)
    nbgrader(course.root, instructor, "autograde", ASSIGNMENT)
    return course


def scores(course):
    with Gradebook(course.coursedir.db_url) as gradebook:
        return {
            submission.student_id: (submission.score, submission.max_score)
            for submission in gradebook.assignment_submissions(ASSIGNMENT)
        }


def test_submissions_travel_through_the_exchange_and_are_graded(handed_in):
    collected = handed_in.root / "submitted"
    assert sorted(path.name for path in collected.iterdir()) == sorted((LAB_STUDENT, TERMINAL_STUDENT))
    package = collected / LAB_STUDENT / ASSIGNMENT / "miniflow" / "layers.py"
    assert package.read_text() == (ROOT / "solutions" / "miniflow" / "layers.py").read_text()
    assert scores(handed_in) == {LAB_STUDENT: (FULL_MARKS, FULL_MARKS), TERMINAL_STUDENT: (0, FULL_MARKS)}


def test_feedback_comes_back_to_the_students_jupyterlab(handed_in, instructor, student_lab):
    nbgrader(handed_in.root, instructor, "generate_feedback", ASSIGNMENT)
    nbgrader(handed_in.root, instructor, "release_feedback", ASSIGNMENT)
    body = {"course_id": COURSE_ID, "assignment_id": ASSIGNMENT}
    listed = post(student_lab, "assignments/fetch_feedback", body)
    submissions = [entry["submissions"] for entry in listed["value"] if entry["status"] == "submitted"]
    assert [[submission["has_local_feedback"] for submission in each] for each in submissions] == [[True]]
    pages = sorted((student_lab.root / ASSIGNMENT / "feedback").glob("*/*.html"))
    notebooks = sorted(path.stem for path in (ROOT / "release" / ASSIGNMENT).glob("*.ipynb"))
    assert [page.stem for page in pages] == notebooks
