"""The instructor's buttons in Chromium, on a fresh clone served with the environment's bin not on
PATH: the formgrader lists the assignment (instead of "Loading, please wait...") and its Generate
button builds the committed release; JupyterLab's Validate passes a source notebook and leaves the
release current."""

import json

import pytest
from conftest import ROOT
from test_formgrader import NOTEBOOK, Server
from test_release import scratch_course

from autograder import release
from autograder.trees import differing_files

from .jupyter_driver import open_notebook

pytestmark = pytest.mark.browser


@pytest.fixture
def served_course(tmp_path):
    """(course folder, server): a scratch copy of the course and a JupyterLab started in it."""
    course = scratch_course(tmp_path / "course")
    state = tmp_path / "state"
    state.mkdir()
    server = Server(course, state)
    yield course, server
    server.stop()


def test_the_formgrader_lists_the_assignment_and_generates_the_release(page, served_course, screenshot):
    course, server = served_course
    release_folder = course / "release" / release.ASSIGNMENT
    page.goto(server.url("formgrader"))
    row = page.locator("tr", has=page.locator("td", has_text=release.ASSIGNMENT))
    row.wait_for(timeout=60_000)
    for path in sorted(release_folder.rglob("*"), reverse=True):  # Generate must rebuild it all
        path.unlink() if path.is_file() else path.rmdir()
    row.locator(".assign a").click()
    page.locator("#success-modal").wait_for(timeout=120_000)
    screenshot()
    assert differing_files(release_folder, ROOT / "release" / release.ASSIGNMENT) == []


def test_validate_passes_a_source_notebook_and_leaves_the_release_current(
    page, served_course, screenshot, tmp_path
):
    course, server = served_course
    open_notebook(page, server, NOTEBOOK)
    page.locator(".validate-button").click()
    dialog = page.locator(".jp-Dialog", has_text="Validation Results")
    dialog.wait_for(timeout=120_000)
    screenshot()
    assert "Success! Your notebook passes all the tests." in dialog.inner_text()
    assert "version" in json.loads((course / NOTEBOOK).read_text())["metadata"]["language_info"]  # saved
    assert release.stale_release_files(course, tmp_path / "fresh") == []
