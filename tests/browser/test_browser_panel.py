"""The Exercises panel in a real JupyterLab (Chromium): statuses, live refresh, click-to-cell, hand-in.

The server serves a copy of the student release; the panel's extension is the
one installed in this environment (`jupyterlab-miniflow`). Files are saved
through JupyterLab's own contents manager (`window.jupyterapp`, exposed with
--LabApp.expose_app_in_browser), as an editor's Save does, so the panel sees
each save as it would a student's. Screenshots go to test-artifacts/.
"""

import csv
import json
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import REFERENCE, ROOT, scratch_course

from .jupyter_driver import JupyterServer

pytestmark = pytest.mark.browser

RELEASE = ROOT / "release" / "miniflow-lab"
MUL_TESTS = ("mul_lab_f", "mul_lab_dummygrad", "mul_three_inputs")
PANEL = "#miniflow-exercises"
MARKER = re.compile(r"### (BEGIN|END) SOLUTION")


def reference_arithmetic(bug=None):
    """The reference's arithmetic.py (Add and Mul written), with `bug` = (old, new) planted if given."""
    lines = (REFERENCE / "arithmetic.py").read_text().splitlines(keepends=True)
    text = "".join(line for line in lines if not MARKER.search(line))
    if bug:
        assert bug[0] in text
        text = text.replace(*bug)
    return text


@pytest.fixture(scope="module")
def lab(tmp_path_factory, playwright):
    """A JupyterLab serving a copy of the release as `lab/`, with the app exposed to the page."""
    root = tmp_path_factory.mktemp("panel-root")
    left_out = shutil.ignore_patterns("jupyterlab-miniflow", "__pycache__")  # the extension is installed
    shutil.copytree(RELEASE, root / "lab", ignore=left_out)
    state = tmp_path_factory.mktemp("panel-state")
    server = JupyterServer(root, state, ["--LabApp.expose_app_in_browser=True"])
    yield server
    server.stop()


def open_panel(page, lab):
    page.goto(lab.url("lab/workspaces/panel/tree/lab"))
    page.locator(f".jp-SideBar .lm-TabBar-tab[data-id='{PANEL[1:]}']").click()
    page.locator(f"{PANEL} .jp-miniflow-exercise").first.wait_for(timeout=60_000)


def statuses(page):
    return page.evaluate(
        """(panel) => Object.fromEntries([...document.querySelectorAll(panel + ' .jp-miniflow-exercise')]
            .map(row => [row.dataset.gradeId, row.dataset.status]))""",
        PANEL,
    )


def wait_for_status(page, grade_id, status, timeout=120_000):
    row = f"{PANEL} .jp-miniflow-exercise[data-grade-id='{grade_id}'][data-status='{status}']"
    page.locator(row).wait_for(timeout=timeout)


def save_through_jupyterlab(page, path, text):
    """Save `text` at `path` with JupyterLab's contents manager: the panel hears it as a student's save."""
    page.evaluate(
        """([path, text]) => window.jupyterapp.serviceManager.contents.save(
            path, {type: 'file', format: 'text', content: text})""",
        [path, text],
    )


def test_the_panel_follows_the_students_saves(page, lab, screenshot):
    open_panel(page, lab)
    page.locator(f"{PANEL} .jp-miniflow-state[data-checking='false']").wait_for(timeout=120_000)
    wait_for_status(page, "mul_lab_f", "not implemented")
    shown = statuses(page)
    assert set(MUL_TESTS) <= set(shown)
    assert set(shown.values()) == {"not implemented"}, shown
    # A title's $...$ math is typeset as in the notebook, not shown raw.
    title = page.locator(f"{PANEL} [data-grade-id='exercise_by_hand_k'] .jp-miniflow-exercise-title")
    title.locator("mjx-container").wait_for(timeout=60_000)
    assert "Exercise 1.2: a second graph" in title.inner_text()
    assert "$" not in title.inner_text()
    screenshot("-starter")

    save_through_jupyterlab(page, "lab/miniflow/arithmetic.py", reference_arithmetic())
    for grade_id in MUL_TESTS:  # no reload: the save alone brings the check
        wait_for_status(page, grade_id, "passed")
    screenshot("-mul-written")

    save_through_jupyterlab(
        page, "lab/miniflow/arithmetic.py", reference_arithmetic(bug=("if j != i:", "if j == i:"))
    )
    wait_for_status(page, "mul_lab_f", "failing")
    message = page.locator(f"{PANEL} .jp-miniflow-exercise[data-grade-id='mul_lab_f'] .jp-miniflow-message")
    assert message.inner_text().strip()
    screenshot("-mul-bug")


def test_clicking_an_exercise_opens_its_notebook_at_the_cell(page, lab, screenshot):
    open_panel(page, lab)
    page.locator(f"{PANEL} .jp-miniflow-exercise[data-grade-id='mul_three_inputs']").click()
    # The panel selects, scrolls to and highlights the cell (for a few seconds).
    notebook = ".jp-NotebookPanel:not(.lm-mod-hidden)"
    active = page.locator(f"{notebook} .jp-Cell.jp-mod-active.jp-miniflow-highlight")
    active.wait_for(timeout=60_000)
    assert "three inputs at once" in active.inner_text()
    assert active.is_visible()
    screenshot()


def test_prepare_submission_writes_a_zip_that_grades_as_the_folder_does(page, lab, screenshot, tmp_path):
    open_panel(page, lab)
    save_through_jupyterlab(page, "lab/miniflow/arithmetic.py", reference_arithmetic())
    page.locator(f"{PANEL} .jp-miniflow-prepare").click()
    dialog = page.locator(".jp-Dialog", has_text="Submission prepared")
    dialog.wait_for(timeout=180_000)
    screenshot()
    archive = lab.root / "lab" / re.search(r"Wrote (\S+\.zip)", dialog.inner_text()).group(1)
    with zipfile.ZipFile(archive) as zipped:
        receipt = json.loads(zipped.read("miniflow-lab/RECEIPT.json"))
        zipped.extractall(tmp_path / "submissions" / "from_the_panel")
    assert "miniflow/arithmetic.py" in " ".join(receipt["files"])

    # The same work handed in as a folder, in nbgrader's layout: the zip must grade the same.
    by_hand = tmp_path / "submissions" / "by_hand" / "miniflow-lab"
    shutil.copytree(lab.root / "lab", by_hand, ignore=shutil.ignore_patterns("*.zip", ".ipynb_checkpoints"))
    out, course = tmp_path / "out", tmp_path / "course"
    scratch_course(course)  # a course of its own, its gradebook included: the checkout stays as it is
    grading = ["grade", str(tmp_path / "submissions"), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "autograder", "--root", str(course), *grading],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with open(out / "grades.csv") as file:
        scores = {row["student_id"]: (row["status"], float(row["score"])) for row in csv.DictReader(file)}
    # Notebook 1's Mul tests (7 points, hidden ones included) at least; the rest is the starter's.
    assert scores["from_the_panel"] == scores["by_hand"]
    assert scores["from_the_panel"][0] == "graded" and scores["from_the_panel"][1] >= 7
