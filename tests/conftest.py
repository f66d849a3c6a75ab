"""Shared fixtures: the reference and starter packages, each loaded under its own module name.

Neither is installed: a grading kernel must import the student's `miniflow`, never the reference,
so tests load each from its folder.
"""

import functools
import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

from autograder import release
from autograder.grade import Course, Settings, grade_samples

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "solutions" / "miniflow"
STARTER = ROOT / "miniflow_starter" / "miniflow"
# Where miniflow.data looks for MNIST too (set MINIFLOW_DATA where MNIST cannot be downloaded).
MNIST = Path(os.environ.get("MINIFLOW_DATA", Path.home() / ".cache" / "miniflow" / "mnist"))


def load_package(folder, module_name):
    """Import the package in `folder` as `module_name` (its relative imports follow)."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(
        module_name, Path(folder) / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def mf():
    """The reference miniflow."""
    return load_package(REFERENCE, "miniflow_reference")


@pytest.fixture(scope="session")
def starter():
    """The students' starter miniflow, as committed."""
    return load_package(STARTER, "miniflow_starter_package")


SESSION = {}  # what the session's fixtures hand to plain functions: its tmp_path_factory


@pytest.fixture(scope="session", autouse=True)
def session_temp(tmp_path_factory):
    SESSION["tmp_path_factory"] = tmp_path_factory


@functools.cache
def built_course():
    """The course with its release built and recorded in its gradebook, once a session.

    Its reference records (`.miniflow-cache`) are a folder all scratch courses share: they are
    keyed by the contents of the notebook, the package and the data path, so a course whose
    notebooks are the same reads the records another one made instead of running them again.
    """
    folder = SESSION["tmp_path_factory"].mktemp("built-course")
    course, shared_records = folder / "course", folder / "reference-records"
    release.copy_sources(ROOT, course)
    release.build_release(course)
    shared_records.mkdir()
    (course / ".miniflow-cache").symlink_to(shared_records, target_is_directory=True)
    return course


def scratch_course(root):
    """A scratch copy of the course in `root`, its release built and recorded in its own gradebook."""
    shutil.copytree(built_course(), root, symlinks=True, dirs_exist_ok=True)
    return Course(root)


# A module's own scratch course: modules that grade submissions share this fixture (test_grade.py and
# test_testcells.py keep courses of their own).
@pytest.fixture(scope="module")
def course(tmp_path_factory):
    return scratch_course(tmp_path_factory.mktemp("course"))


# The samples run is shared by the whole session: test_grade.py checks it, test_attacks.py compares the
# honest students of a batch with attackers in it against it.
@pytest.fixture(scope="session")
def samples_course(tmp_path_factory):
    return scratch_course(tmp_path_factory.mktemp("samples-course"))


@pytest.fixture(scope="session")
def graded_samples(samples_course, tmp_path_factory):
    """The bundled samples (grade.DEMO_SAMPLES, honest students only), graded in one batch: (OUT, rows)."""
    out = tmp_path_factory.mktemp("samples-out")
    rows = grade_samples(out, samples_course, Settings(workers=2, data=str(MNIST)))
    return out, {row.student_id: row for row in rows}
