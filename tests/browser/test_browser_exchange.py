"""A student fetches and submits the lab with the buttons of *Nbgrader → Assignment List* in Chromium;
the instructor collects and autogrades what came through the exchange.

The exchange and the users are set up as in tests/test_exchange.py (which also checks the feedback's
way back and a submission from a terminal); this is the same round through the real page.
"""

import pytest
from conftest import scratch_course
from test_exchange import (
    ASSIGNMENT,
    FULL_MARKS,
    LAB_STUDENT,
    answer_with_the_reference,
    make_exchange,
    nbgrader,
    scores,
    user_environment,
)

from .jupyter_driver import JupyterServer

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def exchange_config(tmp_path_factory):
    return make_exchange(tmp_path_factory.mktemp("exchange"))


@pytest.fixture(scope="module")
def released(tmp_path_factory, exchange_config):
    """A scratch course, its assignment released to the exchange; the instructor's environment."""
    course = scratch_course(tmp_path_factory.mktemp("course"))
    environment = user_environment(tmp_path_factory.mktemp("instructor"), exchange_config)
    nbgrader(course.root, environment, "release_assignment", ASSIGNMENT)
    return course, environment


@pytest.fixture(scope="module")
def student_lab(released, exchange_config, tmp_path_factory):
    home = tmp_path_factory.mktemp("student-home")
    environment = user_environment(home, exchange_config)
    server = JupyterServer(home, tmp_path_factory.mktemp("student-jupyter-state"), env=environment)
    yield server
    server.stop()


def open_assignment_list(page, server):
    page.goto(server.url("lab"))
    page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click()
    page.locator(".lm-Menu-itemLabel", has_text="Assignment List").click()


def button_in(page, section, label):
    return page.locator(f"#{section} button", has_text=label)


def test_submit_in_the_assignment_list_reaches_the_instructor_graded(
    page, screenshot, released, student_lab, tmp_path
):
    course, instructor = released
    open_assignment_list(page, student_lab)
    button_in(page, "released_assignments_list", "Fetch").click(timeout=60_000)
    button_in(page, "fetched_assignments_list", "Submit").wait_for(timeout=60_000)
    answer_with_the_reference(student_lab.root / ASSIGNMENT, tmp_path / "reference")
    screenshot("-fetched")
    button_in(page, "fetched_assignments_list", "Submit").click()
    page.locator("#submitted_assignments_list", has_text=ASSIGNMENT).wait_for(timeout=120_000)
    screenshot("-submitted")

    nbgrader(course.root, instructor, "collect", ASSIGNMENT)
    nbgrader(course.root, instructor, "autograde", ASSIGNMENT)
    assert scores(course) == {LAB_STUDENT: (FULL_MARKS, FULL_MARKS)}
