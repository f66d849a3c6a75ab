"""`miniflow-course grade` on the folders and files LMS downloads and students really hand in.

None of them stops the run: each folder costs its own student only, with a row
in grades.csv that names the file at fault. One batch holds two normal students
(the reference and the starter, notebook 01 only, as test_grade.py keeps its
fixtures) beside folders whose names nbgrader cannot use (a space, a leading
dash, letters outside ASCII, Latin-1 bytes from a Windows zip, 255 characters,
a name that another folder's safe id would take), hidden folders and archive
leftovers, a symbolic link and a FIFO in place of a folder, folders holding
links, FIFOs, names that are not UTF-8, a tree too deep, too many files and too
many bytes, notebooks that are malformed, nested too deeply, invalid, too large,
not UTF-8 or holding lone surrogates, and a folder whose taking in raises.
Names that are not UTF-8 cannot be committed to git: everything is built here.

The normal students' rows, test scores and feedback must be those of a batch of
them alone.
"""

import contextlib
import csv
import io
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from conftest import ROOT

from autograder import cli, release, submissions, trees
from autograder.grade import Course
from autograder.submissions import Limits, Submission, assign_ids, copy_into_course, printable

NOTEBOOK = "01-chain-rule"  # the only notebook a graded student here keeps: one kernel run each
NORMAL = ("reference", "starter")
LATIN1 = os.fsdecode(b"Jos\xe9")  # "José" as Python reads a Latin-1 name from a Windows zip
LONG = "x" * 255  # as long as a name can be
BROKEN = "-broken notebooks"  # a leading dash and a space; every notebook broken another way
BYTES_ALLOWED = 1_000_000  # a submission's files in all, set below with nbgrader's own knob


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A scratch copy of the course, its release built; a submission may hold 1 MB in all."""
    root = tmp_path_factory.mktemp("course")
    release.copy_sources(ROOT, root)
    with open(root / "nbgrader_config.py", "a") as config:
        config.write(f"\nc.CourseDirectory.max_dir_size = {BYTES_ALLOWED // 1000}  # kB\n")
    release.build_release(root)
    return Course(root)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def student(course, folder, sample):
    """Sample `sample` as a flat submission at `folder`, notebook 01 only."""
    release_folder = course.folder(course.coursedir.release_directory, ".")
    source_folder = course.folder(course.coursedir.source_directory, ".")
    submissions.materialise_sample(sample, folder, release_folder, source_folder)
    for path in Path(folder).glob("*.ipynb"):
        if path.stem != NOTEBOOK:
            path.unlink()
    return Path(folder)


class Logged(logging.Handler):
    """The messages logged while it is attached."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def grade_batch(course, folder, out):
    """Run `miniflow-course grade`: rows of grades.csv and tests.csv, the grade table, what it logged."""
    logged, table = Logged(), io.StringIO()
    logger = logging.getLogger("autograder.submissions")
    logger.addHandler(logged)
    try:
        arguments = ["--root", str(course.root), "grade", str(folder), "--out", str(out), "--workers", "2"]
        with contextlib.redirect_stdout(table):
            assert cli.main([*arguments, "--cell-timeout", "60"]) == 0
    finally:
        logger.removeHandler(logged)
    return read_csv(out / "grades.csv"), read_csv(out / "tests.csv"), table.getvalue(), logged.messages


@pytest.fixture(scope="module")
def clean(course, tmp_path_factory):
    """The normal students graded alone: out, grades.csv and tests.csv rows."""
    folder, out = tmp_path_factory.mktemp("clean"), tmp_path_factory.mktemp("clean-out")
    for name in NORMAL:
        student(course, folder / name, name)
    grades, tests, _, _ = grade_batch(course, folder, out)
    return out, grades, tests


def odd_files(folder, outside):
    """What an unpacked archive may hold besides the assignment, in `folder`."""
    (folder / "miniflow" / "graph_link.py").symlink_to(outside)
    os.mkfifo(folder / "pipe")
    (folder / os.fsdecode(b"caf\xe9.py")).write_text("x = 1\n")
    (folder / "notes\n.txt").write_text("a newline in the name\n")
    (folder / ("n" * 251 + ".txt")).write_text("as long a name as a file may have\n")
    deep = folder / "deep"
    for _ in range(20):
        deep = deep / "d"
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text("too deep\n")
    many = folder / "zz_many"  # after miniflow/, which must still be copied
    many.mkdir()
    for index in range(Limits().files + 1):
        (many / str(index)).touch()


def lone_surrogate_in_a_solution(path):
    """Put a JSON escape "\\ud800" (a lone surrogate, which UTF-8 cannot write) in a solution cell."""
    notebook = json.loads(path.read_text())
    cell = next(cell for cell in notebook["cells"] if cell["metadata"].get("nbgrader", {}).get("solution"))
    cell["source"] = "".join(cell["source"]) + "\n# a lone surrogate: \ud800"
    path.write_text(json.dumps(notebook))  # ensure_ascii: written as the escape


def broken_notebooks(folder, release_folder):
    """A notebook of each of the course's names, each broken another way; notebook -> what the reason says."""
    folder.mkdir()
    text = (release_folder / f"{NOTEBOOK}.ipynb").read_text()
    bogus = json.dumps(dict(json.loads(text), cells=[{"cell_type": "bogus", "metadata": {}, "source": ""}]))
    broken = [
        (text[: len(text) // 2].encode(), "not valid JSON"),
        (b"[" * 200_000, "maximum recursion depth exceeded"),  # nested deeper than a JSON parser goes
        (bogus.encode(), "is not valid under any of the given schemas"),  # JSON, not a notebook
        (None, "larger than 50 MiB"),
        (text.encode().replace(b'"metadata": {', b'"metadata": {"author": "Jos\xe9", ', 1), "can't decode"),
    ]
    notebooks = sorted(path.stem for path in release_folder.glob("*.ipynb"))
    for name, (content, _) in zip(notebooks, broken, strict=True):
        path = folder / f"{name}.ipynb"
        if content is None:
            with open(path, "wb") as file:
                file.truncate(submissions.MAX_FILE_BYTES + 1)  # sparse: no disk used
        else:
            path.write_bytes(content)
    return {name: why for name, (_, why) in zip(notebooks, broken, strict=True)}


@pytest.fixture(scope="module")
def odd(course, tmp_path_factory):
    """The odd batch, graded once: out, grades.csv rows by student_id, tests.csv rows, table, log, broken."""
    folder, out = tmp_path_factory.mktemp("odd"), tmp_path_factory.mktemp("odd-out")
    release_folder = course.folder(course.coursedir.release_directory, ".")
    secret = tmp_path_factory.mktemp("outside") / "solutions.py"
    secret.write_text("the reference\n")
    for name in NORMAL:
        student(course, folder / name, name)
    odd_files(student(course, folder / "José", "reference"), secret)
    lone_surrogate_in_a_solution(student(course, folder / LATIN1, "reference") / f"{NOTEBOOK}.ipynb")
    for part in ("zz_big_1.bin", "zz_big_2.bin"):  # after miniflow/: together over the limit
        with open(folder / LATIN1 / part, "wb") as file:
            file.truncate(BYTES_ALLOWED // 2)
    student(course, folder / "gradebook.db", "starter")  # the name of the run's scratch copy of the gradebook
    broken = broken_notebooks(folder / BROKEN, release_folder)
    (folder / LONG).mkdir()
    (folder / "bob smith").mkdir()
    (folder / alone_id("bob smith")).mkdir()  # takes the id "bob smith" would get alone
    for hidden in (".hidden", "__MACOSX"):
        student(course, folder / hidden, "reference")
    (folder / "link").symlink_to(folder / "reference")
    os.mkfifo(folder / "fifo")
    (folder / "explodes").mkdir()
    shutil.copyfile(release_folder / f"{NOTEBOOK}.ipynb", folder / "explodes" / f"{NOTEBOOK}.ipynb")
    (folder / "explodes" / "explode.py").write_text("boom\n")

    real_copyfile = shutil.copyfile

    def copyfile(source, target, *args, **kwargs):  # an error nothing expects, while taking one file in
        if Path(source).name == "explode.py":
            raise RuntimeError(f"cannot read {source}")
        return real_copyfile(source, target, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shutil, "copyfile", copyfile)
        grades, tests, table, logged = grade_batch(course, folder, out)
    return out, {row["student_id"]: row for row in grades}, tests, table, logged, broken


def alone_id(name):
    """The nbgrader id `name` gets in a batch of its own."""
    submission = Submission(name, Path(name))
    assign_ids([submission])
    return submission.nbgrader_id


def rows_of(rows, students):
    return [row for row in rows if row["student_id"] in students]


@pytest.mark.slow
def test_every_folder_gets_a_row_and_the_normal_students_theirs_of_a_clean_run(odd, clean):
    out, grades, tests, table, logged, _ = odd
    clean_out, clean_grades, clean_tests = clean

    folders = [*NORMAL, "José", "Jos\\xe9", "gradebook.db", BROKEN, LONG, "bob smith", alone_id("bob smith")]
    assert sorted(grades) == sorted([*folders, "link", "fifo", "explodes"])
    assert [grades[name] for name in NORMAL] == clean_grades
    assert rows_of(tests, NORMAL) == clean_tests
    for name in NORMAL:
        assert not trees.differing_files(clean_out / "feedback" / name, out / "feedback" / name)
    assert any(".hidden: skipped, a hidden name" in message for message in logged)
    assert any("__MACOSX: skipped" in message for message in logged)
    assert "Jos\\xe9 " in table


@pytest.mark.slow
def test_names_nbgrader_cannot_use_are_graded_under_safe_ids_of_their_own(odd, course):
    out, grades, tests, _, _, _ = odd
    ids = [row["nbgrader_id"] for row in grades.values()]

    assert len(set(ids)) == len(ids)
    assert all(submissions.STUDENT_ID.fullmatch(nbgrader_id) for nbgrader_id in ids)
    for name in (*NORMAL, "gradebook.db", "link", "fifo", "explodes", alone_id("bob smith")):
        assert grades[name]["nbgrader_id"] == name
    assert grades["José"]["nbgrader_id"].startswith("Jose-")
    assert grades["Jos\\xe9"]["nbgrader_id"].startswith("Jos-")
    assert grades[BROKEN]["nbgrader_id"].startswith("broken_notebooks-")
    assert grades[LONG]["nbgrader_id"].startswith("x" * submissions.SLUG_CHARACTERS + "-")
    # The id "bob smith" gets alone is another folder's name: its hash is longer here.
    assert grades["bob smith"]["nbgrader_id"].startswith("bob_smith-")
    for name in ("José", "Jos\\xe9", BROKEN, LONG, "bob smith"):
        row = grades[name]
        assert f"not a valid student id for nbgrader: graded as {row['nbgrader_id']}." in row["reason"]
    # Graded under their safe ids end to end: the same scores as the sample they copy.
    by_test = {(row["student_id"], row["notebook"], row["test"]): row for row in tests}
    for name, sample in (("José", "reference"), ("Jos\\xe9", "reference"), ("gradebook.db", "starter")):
        assert grades[name]["status"] == "graded"
        assert grades[name]["score"] == grades[sample]["score"]
        for (student_id, notebook, test), row in by_test.items():
            if student_id == sample:
                assert by_test[(name, notebook, test)]["score"] == row["score"]
                assert by_test[(name, notebook, test)]["nbgrader_id"] == grades[name]["nbgrader_id"]
        assert (out / "feedback" / grades[name]["nbgrader_id"] / f"{NOTEBOOK}.html").is_file()
        assert (out / "logs" / f"{grades[name]['nbgrader_id']}.log").is_file()
    assert len(tests) == len(grades) * sum(len(cells) for cells in course.tests.values())


@pytest.mark.slow
def test_what_a_folder_should_not_hold_is_left_out_with_a_reason(odd, course):
    _, grades, _, _, _, _ = odd
    reason = grades["José"]["reason"]
    many = Limits().files

    for expected in (
        "miniflow/graph_link.py is a symbolic link: left out.",
        "pipe is not a regular file: left out.",
        "caf\\xe9.py has a name that is not printable UTF-8: left out.",
        "notes\\x0a.txt has a name that is not printable UTF-8: left out.",
        "deep/" + "d/" * 15 + "d is more than 16 folders deep: left out.",
        f"The submission holds more than {many} files and folders: zz_many and all after it were left out.",
    ):
        assert expected in reason
    taken_in = course.folder(course.coursedir.submitted_directory, grades["José"]["nbgrader_id"])
    copied = [path.relative_to(taken_in) for path in taken_in.rglob("*")]
    assert Path("n" * 251 + ".txt") in copied and Path("miniflow/layers.py") in copied
    assert all(path.name.isprintable() for path in copied)
    assert not any(path.is_symlink() or path.name.startswith("zz_") for path in taken_in.rglob("*"))
    reason = grades["Jos\\xe9"]["reason"]
    assert "The submission's files pass 1 MB in all: zz_big_2.bin and all after it were left out." in reason
    assert f"{NOTEBOOK}.ipynb holds text that is not valid Unicode" in reason


@pytest.mark.slow
def test_each_broken_folder_or_notebook_costs_its_student_with_a_reason_naming_it(odd):
    _, grades, tests, _, _, broken = odd

    for name in (BROKEN, LONG, "bob smith", alone_id("bob smith"), "link", "fifo", "explodes"):
        assert (grades[name]["status"], float(grades[name]["score"])) == ("not graded", 0)
    reason = grades[BROKEN]["reason"]
    assert reason.startswith("None of the assignment's notebooks could be taken in.")
    for notebook, why in broken.items():
        assert f"{notebook}.ipynb is not a notebook that can be graded (" in reason and why in reason
    assert "None of the assignment's notebooks" in grades[LONG]["reason"]
    assert grades["link"]["reason"] == "Not a folder but a symbolic link (links are not followed)."
    assert grades["fifo"]["reason"] == "Not a folder (unpack archives before grading)."
    assert grades["explodes"]["reason"].startswith("Taking the folder in failed: RuntimeError: cannot read ")
    assert "explodes/explode.py." in grades["explodes"]["reason"]
    assert not any(float(row["score"]) for row in tests if grades[row["student_id"]]["status"] != "graded")


# Taking in, without grading


def test_a_name_is_shown_printable_and_never_like_another():
    expected = {
        "José": "José",
        LATIN1: "Jos\\xe9",
        "Jos\\xe9": "Jos\\\\xe9",  # a backslash in the name itself
        "a\nb": "a\\x0ab",
        "x\u0085": "x\\u0085",  # an unprintable character, not a byte
        os.fsdecode(b"x\x85"): "x\\x85",
        "bob smith": "bob smith",
    }

    shown = {name: printable(name) for name in expected}

    assert shown == expected
    assert len(set(shown.values())) == len(shown)


def test_safe_ids_are_the_same_in_every_run_and_never_taken_twice():
    names = ["bob smith", "-rm -rf", "张伟", "José", "Jose\u0301", LATIN1, "alice", alone_id("bob smith")]
    found = [Submission(name, Path(name)) for name in names]

    assign_ids(found)

    ids = [submission.nbgrader_id for submission in found]
    assert len(set(ids)) == len(ids)
    assert all(submissions.STUDENT_ID.fullmatch(nbgrader_id) for nbgrader_id in ids)
    assert ids[1].startswith("rm_-rf-") and ids[2].startswith("student-") and ids[6] == "alice"
    assert ids[0] != alone_id("bob smith") == ids[7]
    assert [alone_id(name) for name in names[1:6]] == ids[1:6]


def test_a_submission_is_copied_within_its_limits(tmp_path):
    folder = tmp_path / "dan"
    (folder / "a" / "b" / "c").mkdir(parents=True)
    (folder / "a" / "b" / "c" / "too_deep.py").write_text("x = 1\n")
    (folder / "a" / "kept.py").write_text("x = 1\n")
    for index in range(30):
        os.mkfifo(folder / f"a_pipe{index:02}")
    (folder / "b_big.bin").write_bytes(b"0" * 600)
    (folder / "c_after.py").write_text("left out: after the limit\n")
    submission = Submission("dan", folder)
    destination = tmp_path / "course"

    copy_into_course(submission, destination, [NOTEBOOK], Limits(files=50, total_bytes=500, depth=2))

    assert sorted(str(path.relative_to(destination)) for path in destination.rglob("*")) == [
        "a",
        "a/b",
        "a/kept.py",
    ]
    notes = submission.notes
    assert "a/b/c is more than 2 folders deep: left out." in notes
    assert "The submission's files pass 0.0005 MB in all: b_big.bin and all after it were left out." in notes
    assert notes[-1] == "11 more files or folders were left out as well."  # 30 pipes + 1 folder, 20 named
    assert submission.problem == "None of the assignment's notebooks could be taken in."
