"""What students get wrong loses points, and correct alternatives keep them: graded end to end.

autograder/fixtures/mistakes.json holds planted bugs (each an edit of the reference
submission, with the tests it must lose) and correct alternatives (which must keep full
marks). All of them, and the reference, are graded in one batch by `miniflow-course grade`.
"""

import csv

import nbformat
import pytest
from conftest import MNIST, scratch_course

from autograder import fixtures
from autograder.grade import Settings, grade
from autograder.submissions import materialise_sample


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = scratch_course(tmp_path_factory.mktemp("course"))
    released = course.folder(course.coursedir.release_directory, ".")
    source = course.folder(course.coursedir.source_directory, ".")
    submissions = tmp_path_factory.mktemp("submissions")
    for name in fixtures.MISTAKES:
        fixtures.materialise_mistake(name, submissions / name, released, source)
    materialise_sample("reference", submissions / "reference", released, source)
    out = tmp_path_factory.mktemp("out")
    grade(submissions, out, course, Settings(workers=2, data=str(MNIST)))
    with open(out / "tests.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    scores = {
        (row["student_id"], row["test"]): (float(row["score"]), float(row["max_score"])) for row in rows
    }
    return course, scores


def lost(scores, student, notebooks, course):
    return sorted(
        test
        for notebook in notebooks
        for test, _ in course.tests[notebook]
        if scores[(student, test)][0] < scores[(student, test)][1]
    )


def test_the_set_covers_forty_bugs_and_ten_alternatives():
    expectations = [recipe["expect"] for recipe in fixtures.MISTAKES.values()]
    assert expectations.count("loses") >= 40 and expectations.count("full") >= 10


@pytest.mark.slow
def test_every_planted_bug_loses_the_tests_that_catch_it(graded):
    course, scores = graded
    missed = {}
    for name, recipe in fixtures.MISTAKES.items():
        if recipe["expect"] == "loses":
            lost_tests = lost(scores, name, recipe["notebooks"], course)
            if not lost_tests or not set(recipe["loses"]) <= set(lost_tests):
                missed[name] = (recipe["loses"], lost_tests)
    assert not missed, f"(must lose, lost): {missed}"


@pytest.mark.slow
def test_every_correct_alternative_and_the_reference_keep_full_marks(graded):
    course, scores = graded
    unfair = {
        name: lost(scores, name, recipe["notebooks"], course)
        for name, recipe in fixtures.MISTAKES.items()
        if recipe["expect"] == "full" and lost(scores, name, recipe["notebooks"], course)
    }
    assert not unfair, unfair
    assert lost(scores, "reference", list(course.tests), course) == []


@pytest.mark.slow
def test_the_references_graded_notebooks_hold_no_error(graded):
    course, _ = graded
    autograded = course.folder(course.coursedir.autograded_directory, "reference")
    errors = [
        (path.stem, cell.source[:60])
        for path in sorted(autograded.glob("*.ipynb"))
        for cell in nbformat.read(path, as_version=4).cells
        if any(output.output_type == "error" for output in cell.get("outputs", []))
    ]
    assert errors == []
