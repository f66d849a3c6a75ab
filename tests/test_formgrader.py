"""The instructor's buttons on a fresh clone: the formgrader lists, Generate builds, Validate works,
Autograde and Generate Feedback grade.

A JupyterLab server runs from the project's environment on a scratch copy of the
course (no gradebook yet, as after `git clone`), with that environment's bin NOT
on PATH, and the tests call the REST endpoints that the formgrader's and the
notebook toolbar's buttons call.
"""

import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import nbformat
import pytest
from browser.jupyter_driver import JupyterServer, free_port
from conftest import ROOT
from test_release import scratch_course

from autograder import release
from autograder.submissions import materialise_sample
from autograder.trees import differing_files

pytestmark = pytest.mark.slow

ENVIRONMENT_BIN = Path(sys.executable).parent
NOTEBOOK = f"assignments/{release.ASSIGNMENT}/01-chain-rule.ipynb"


class Server(JupyterServer):
    """`jupyter lab` from the environment's bin, started in `course` with a PATH that lacks that bin."""

    def __init__(self, course, state):
        self.root, self.port, self.token = Path(course), free_port(), secrets.token_hex(16)
        env = {
            "PATH": os.pathsep.join(("/usr/local/bin", "/usr/bin", "/bin")),
            "HOME": str(state),
            "JUPYTER_CONFIG_DIR": str(state / "config"),
            "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(state / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
            **{name: os.environ[name] for name in ("MINIFLOW_DATA",) if name in os.environ},
        }
        # No news pop-up: it would cover the notebook in the browser tests.
        announcements = state / "settings" / "@jupyterlab" / "apputils-extension"
        announcements.mkdir(parents=True, exist_ok=True)
        (announcements / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        self.log = open(state / "jupyter.log", "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [
                str(ENVIRONMENT_BIN / "jupyter-lab"),
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}",
                f"--IdentityProvider.token={self.token}",
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                *(["--allow-root"] if os.geteuid() == 0 else []),
            ],
            cwd=course,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            self.wait_until_up(timeout=90)
        except RuntimeError:
            self.stop()
            raise

    def request(self, method, path, body=None, timeout=10):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A scratch copy of the course as a fresh clone has it: sources, the committed release, no gradebook."""
    return scratch_course(tmp_path_factory.mktemp("course"))


@pytest.fixture(scope="module")
def server(course, tmp_path_factory):
    running = Server(course, tmp_path_factory.mktemp("jupyter-state"))
    yield running
    running.stop()


def test_the_formgrader_lists_the_assignment_without_the_environment_on_path(server, course):
    assignments = server.request("GET", "formgrader/api/assignments", timeout=60)
    assert [assignment["name"] for assignment in assignments] == [release.ASSIGNMENT]
    assert (course / "gradebook.db").is_file()


def test_generate_builds_the_committed_release(server, course):
    shutil.rmtree(course / "release")
    result = server.request("POST", f"formgrader/api/assignment/{release.ASSIGNMENT}/assign", timeout=120)
    assert result["success"], result
    built = course / "release" / release.ASSIGNMENT
    assert differing_files(built, ROOT / "release" / release.ASSIGNMENT) == []


def save_as_jupyterlab_does(server, path):
    """Save the notebook as JupyterLab's Validate button does before validating: with the kernel's
    language_info and the editor's view state in the metadata."""
    model = server.request("GET", f"api/contents/{urllib.parse.quote(path)}")
    notebook = nbformat.from_dict(model["content"])
    notebook.metadata.language_info = {
        "codemirror_mode": {"name": "ipython", "version": 3},
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "name": "python",
        "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3",
        "version": platform.python_version(),
    }
    for cell in notebook.cells:
        cell.metadata["jupyter"] = {"source_hidden": False}
    model = {"type": "notebook", "content": notebook}
    server.request("PUT", f"api/contents/{urllib.parse.quote(path)}", model)


def test_validating_a_source_notebook_passes_and_leaves_the_release_current(server, course, tmp_path):
    save_as_jupyterlab_does(server, NOTEBOOK)
    result = server.request("POST", f"assignments/validate?path={urllib.parse.quote(NOTEBOOK)}", timeout=300)
    assert result == {"success": True, "value": {}}, json.dumps(result)[:3000]
    assert "version" in json.loads((course / NOTEBOOK).read_text())["metadata"]["language_info"]  # saved
    assert release.stale_release_files(course, tmp_path) == []


def test_autograde_and_feedback_grade_a_collected_submission(server, course):
    student = "alice"
    generated = server.request("POST", f"formgrader/api/assignment/{release.ASSIGNMENT}/assign", timeout=120)
    assert generated["success"], generated  # autograding needs the assignment in the gradebook
    materialise_sample(
        "reference",
        course / "submitted" / student / release.ASSIGNMENT,
        course / "release" / release.ASSIGNMENT,
        course / "assignments" / release.ASSIGNMENT,
    )
    base = f"formgrader/api/submission/{release.ASSIGNMENT}/{student}"
    result = server.request("POST", f"{base}/autograde", timeout=900)
    assert result["success"], result
    submission = server.request("GET", base)
    assert submission["score"] == submission["max_score"] > 0
    feedback_endpoint = f"formgrader/api/assignment/{release.ASSIGNMENT}/{student}/generate_feedback"
    result = server.request("POST", feedback_endpoint, timeout=300)
    assert result["success"], result
    feedback = course / "feedback" / student / release.ASSIGNMENT
    assert sorted(path.stem for path in feedback.glob("*.html")) == sorted(
        path.stem for path in (course / "release" / release.ASSIGNMENT).glob("*.ipynb")
    )
