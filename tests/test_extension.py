"""The students' JupyterLab extension (miniflow_starter/jupyterlab-miniflow): installed, endpoints, assets.

The endpoints run against copies of the release folder: the untouched starter (every exercise not
implemented), the reference (every exercise passes), a planted bug (its exercise fails with the
test's message), and Prepare submission, whose zip `miniflow-course grade` grades (slow). The
committed, prebuilt assets are checked against a fresh build in a scratch copy (slow).
"""

import asyncio
import filecmp
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from conftest import MNIST, REFERENCE, ROOT, scratch_course
from jupyter_server.config_manager import BaseJSONConfigManager

from autograder import release
from autograder.submissions import answered_notebook

pytest_plugins = ["pytest_jupyter.jupyter_server"]

EXTENSION = ROOT / "miniflow_starter" / "jupyterlab-miniflow"
# The server extension under test is the working tree's, not the copy pip installed into the environment.
sys.path.insert(0, str(EXTENSION))
RELEASE = ROOT / "release" / release.ASSIGNMENT
SOURCE = ROOT / "assignments" / release.ASSIGNMENT
BIN = Path(sys.executable).parent
INSTRUCTOR_PLUGINS = ["@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment"]
NBGRADER_LABEXTENSION = Path("share", "jupyter", "labextensions", "@jupyter", "nbgrader")
NOTEBOOKS = sorted(path.name for path in RELEASE.glob("*.ipynb"))


def lab_folder(root, package=None, answered=False):
    """A student's folder in `root`: the release, with `package` as miniflow/ and the answers filled in."""
    folder = root / release.ASSIGNMENT
    shutil.copytree(RELEASE, folder, ignore=shutil.ignore_patterns("jupyterlab-miniflow"))
    if package is not None:
        shutil.rmtree(folder / "miniflow")
        shutil.copytree(package, folder / "miniflow", ignore=shutil.ignore_patterns("__pycache__"))
    if answered:
        for name in NOTEBOOKS:
            nbformat.write(answered_notebook(folder / name, SOURCE / name), folder / name)
    return folder


def exercises(listing):
    return {exercise["grade_id"]: exercise for nb in listing["notebooks"] for exercise in nb["exercises"]}


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"jupyterlab_miniflow": True}}}


@pytest.fixture
def jp_env_vars():
    return {"MINIFLOW_DATA": str(MNIST)}


async def call(jp_fetch, endpoint, **body):
    reply = await jp_fetch("miniflow", endpoint, method="POST", body=json.dumps(body))
    return json.loads(reply.body)


async def test_the_listing_has_every_notebook_exercise_and_the_points(jp_fetch, jp_root_dir):
    lab_folder(jp_root_dir)
    reply = await jp_fetch("miniflow", "exercises", params={"path": f"{release.ASSIGNMENT}/miniflow"})
    listing = json.loads(reply.body)
    assert listing["folder"] == release.ASSIGNMENT  # found from a folder inside the lab's
    assert [notebook["path"] for notebook in listing["notebooks"]] == NOTEBOOKS
    assert listing["points"] == 61
    assert [notebook["points"] for notebook in listing["notebooks"]] == [11, 16, 12, 9, 13]
    mul = exercises(listing)["exercise_mul"]
    assert mul["package_file"] == "miniflow/arithmetic.py"
    assert mul["cell"] == "mul_lab_f"  # no answer cell: the first visible test
    assert exercises(listing)["exercise_by_hand_f"]["cell"] == "by_hand_f_answer"
    assert {"name": "Mul.backward", "file": "miniflow/arithmetic.py"}.items() <= listing["stubs"][1].items()


async def test_a_folder_that_is_not_the_lab_is_a_clear_404(jp_fetch, jp_root_dir):
    with pytest.raises(Exception, match="404"):
        await jp_fetch("miniflow", "exercises", params={"path": ""})


async def test_the_starter_has_every_exercise_not_implemented(jp_fetch, jp_root_dir):
    lab_folder(jp_root_dir)
    listing = await call(jp_fetch, "check", path=release.ASSIGNMENT)
    assert listing["problem"] == ""
    statuses = {grade_id: exercise["status"] for grade_id, exercise in exercises(listing).items()}
    assert set(statuses.values()) == {"not implemented"}, statuses
    assert "Mul.forward" in exercises(listing)["exercise_mul"]["message"]


async def test_a_planted_bug_fails_its_exercise_with_the_tests_message(jp_fetch, jp_root_dir, tmp_path):
    package = shutil.copytree(REFERENCE, tmp_path / "buggy")
    arithmetic = package / "arithmetic.py"
    arithmetic.write_text(
        arithmetic.read_text().replace("product = product * value", "product = product + value")
    )
    lab_folder(jp_root_dir, package, answered=True)
    listing = await call(jp_fetch, "check", path=release.ASSIGNMENT)
    mul = exercises(listing)["exercise_mul"]
    assert mul["status"] == "failing"
    assert mul["message"].startswith("f = x*y + x*z built from nodes")
    assert exercises(listing)["exercise_by_hand_f"]["status"] == "passed"


async def test_a_check_of_some_notebooks_gives_statuses_for_theirs_only(jp_fetch, jp_root_dir):
    lab_folder(jp_root_dir)
    listing = await call(jp_fetch, "check", path=release.ASSIGNMENT, notebooks=["01-chain-rule"])
    checked = {
        notebook["path"]: [exercise.get("status") for exercise in notebook["exercises"]]
        for notebook in listing["notebooks"]
    }
    assert set(checked.pop("01-chain-rule.ipynb")) == {"not implemented"}
    assert {status for statuses in checked.values() for status in statuses} == {None}


async def checking(jp_fetch):
    reply = await jp_fetch("miniflow", "exercises", params={"path": release.ASSIGNMENT})
    return json.loads(reply.body)["checking"]


async def test_a_newer_check_of_the_folder_supersedes_a_running_one(jp_fetch, jp_root_dir):
    lab_folder(jp_root_dir)
    first = asyncio.ensure_future(call(jp_fetch, "check", path=release.ASSIGNMENT))
    while not await checking(jp_fetch):  # until the first check's process runs
        await asyncio.sleep(0.05)
    second = await call(jp_fetch, "check", path=release.ASSIGNMENT)
    assert await first == {"superseded": True}
    assert {exercise["status"] for exercise in exercises(second).values()} == {"not implemented"}


async def test_a_check_started_by_a_save_never_supersedes_a_submission(jp_fetch, jp_root_dir):
    lab_folder(jp_root_dir)
    submission = asyncio.ensure_future(call(jp_fetch, "submission", path=release.ASSIGNMENT))
    check = await call(jp_fetch, "check", path=release.ASSIGNMENT)
    assert (await submission)["zip"].endswith(".zip")
    assert "superseded" not in check


async def test_a_package_that_does_not_import_is_reported(jp_fetch, jp_root_dir):
    folder = lab_folder(jp_root_dir)
    (folder / "miniflow" / "graph.py").write_text("this is not python\n")
    listing = await call(jp_fetch, "check", path=release.ASSIGNMENT)
    assert "does not import" in listing["problem"]
    assert {exercise["status"] for exercise in exercises(listing).values()} == {"not started"}


@pytest.mark.slow
async def test_the_reference_passes_every_exercise(jp_fetch, jp_root_dir):
    lab_folder(jp_root_dir, REFERENCE, answered=True)
    listing = await call(jp_fetch, "check", path=release.ASSIGNMENT)
    statuses = {grade_id: exercise["status"] for grade_id, exercise in exercises(listing).items()}
    # The exercise with hidden tests only is never called passed by the visible tests.
    assert statuses.pop("exercise_softmax_settings") == "not started"
    assert set(statuses.values()) == {"passed"}, statuses


async def test_prepare_submission_writes_a_zip_with_a_receipt(jp_fetch, jp_root_dir):
    folder = lab_folder(jp_root_dir)
    (folder / "miniflow" / "__pycache__").mkdir()
    (folder / "miniflow" / "__pycache__" / "graph.cpython-311.pyc").write_bytes(b"\0")
    (folder / "notes.txt").write_text("not graded")
    receipt = await call(jp_fetch, "submission", path=release.ASSIGNMENT)
    assert receipt["zip"] == f"{release.ASSIGNMENT}/miniflow-lab-submission.zip"
    with zipfile.ZipFile(jp_root_dir / receipt["zip"]) as archive:
        names = archive.namelist()
        inside = json.loads(archive.read(f"{release.ASSIGNMENT}/RECEIPT.json"))
    assert all(name.startswith(f"{release.ASSIGNMENT}/") for name in names)
    assert {f"{release.ASSIGNMENT}/{name}" for name in NOTEBOOKS} <= set(names)
    assert f"{release.ASSIGNMENT}/miniflow/arithmetic.py" in names
    assert not [name for name in names if "__pycache__" in name or "notes.txt" in name]
    assert inside["files"] == receipt["files"]
    assert inside["visible_tests"]["passed"] == 0
    assert inside["visible_tests"]["exercises"] == 14


@pytest.mark.slow
async def test_the_submission_zip_grades_as_it_is(jp_fetch, jp_root_dir, tmp_path):
    from autograder.grade import Settings, grade

    lab_folder(jp_root_dir, REFERENCE, answered=True)
    receipt = await call(jp_fetch, "submission", path=release.ASSIGNMENT)
    submissions = tmp_path / "submissions"
    with zipfile.ZipFile(jp_root_dir / receipt["zip"]) as archive:
        archive.extractall(submissions / "alice")  # as an instructor unpacks each student's zip
    course = scratch_course(tmp_path / "course")
    [row] = grade(submissions, tmp_path / "out", course, Settings(workers=1, data=str(MNIST)))
    assert row.reason == ""
    assert row.score == row.max_score == course.max_score


def labextension_list(config_dir):
    environment = {**os.environ, "JUPYTER_CONFIG_DIR": str(config_dir)}
    run = subprocess.run(
        [BIN / "jupyter", "labextension", "list"], env=environment, capture_output=True, text=True, check=True
    )
    return run.stdout + run.stderr


def disabled_plugins(listing):
    return {
        line.split()[0] for line in listing.partition("Disabled extensions:")[2].splitlines() if line.strip()
    }


def test_the_environment_has_the_extension_enabled_and_keeps_the_instructors_plugins(tmp_path):
    listing = labextension_list(tmp_path)
    assert any(
        line.split()[:1] == ["jupyterlab-miniflow"] and "enabled" in line and "OK" in line
        for line in listing.splitlines()
    ), listing
    assert not disabled_plugins(listing) & set(INSTRUCTOR_PLUGINS), listing


def test_a_students_jupyterlab_hides_nbgraders_instructor_plugins(tmp_path):
    """The package's labconfig, as a student's environment holds it (without the instructors' override)."""
    shipped = EXTENSION / "jupyter-config" / "labconfig" / "page_config.d" / "jupyterlab_miniflow.json"
    installed = Path(sys.prefix) / "etc" / "jupyter" / "labconfig" / "page_config.d" / shipped.name
    assert filecmp.cmp(shipped, installed, shallow=False)
    (tmp_path / "labconfig" / "page_config.d").mkdir(parents=True)
    shutil.copy(shipped, tmp_path / "labconfig" / "page_config.d")
    page_config = BaseJSONConfigManager(config_dir=str(tmp_path / "labconfig")).get("page_config")
    disabled = {name for name, off in page_config["disabledExtensions"].items() if off}
    assert set(INSTRUCTOR_PLUGINS) <= disabled
    # The ids are nbgrader's own: its lab extension defines each of them.
    nbgrader_code = "".join(
        path.read_text() for path in (Path(sys.prefix) / NBGRADER_LABEXTENSION / "static").glob("*.js")
    )
    assert all(f'"{plugin}"' in nbgrader_code or f"'{plugin}'" in nbgrader_code for plugin in disabled)


@pytest.mark.slow
def test_the_committed_assets_are_what_the_sources_build(tmp_path):
    """`make extension` rebuilt in a scratch copy gives the committed labextension/, byte for byte, twice."""
    built = EXTENSION / "jupyterlab_miniflow" / "labextension"
    scratch = shutil.copytree(
        EXTENSION,
        tmp_path / "extension",
        ignore=shutil.ignore_patterns("node_modules", ".yarn", "lib", "*.tsbuildinfo", "labextension"),
    )
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for attempt in (1, 2):
        for command in (["install", "--immutable"], ["build:prod"]):
            subprocess.run(
                [BIN / "jlpm", *command], cwd=scratch, env=environment, check=True, capture_output=True
            )
        fresh = scratch / "jupyterlab_miniflow" / "labextension"
        assert tree(fresh) == tree(built), (
            f"build {attempt}: the committed assets are stale: run `make extension`"
        )
        shutil.rmtree(fresh)


def tree(folder):
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()
    }


@pytest.mark.slow
def test_the_released_package_installs_without_node(tmp_path):
    """pip builds the release's copy with no node or jlpm anywhere on PATH: the committed assets go in."""
    environment = {**os.environ, "PATH": str(tmp_path / "empty")}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            tmp_path,
            RELEASE / EXTENSION.name,
        ],
        env=environment,
        check=True,
    )
    [wheel] = tmp_path.glob("jupyterlab_miniflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.data/data"
    committed = EXTENSION / "jupyterlab_miniflow" / "labextension"
    assert {
        f"{data}/share/jupyter/labextensions/jupyterlab-miniflow/{path}" for path in tree(committed)
    } <= names
    assert f"{data}/etc/jupyter/jupyter_server_config.d/jupyterlab_miniflow.json" in names
    assert f"{data}/etc/jupyter/labconfig/page_config.d/jupyterlab_miniflow.json" in names
