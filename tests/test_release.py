"""The committed student release: current, and free of solutions and hidden tests.

The leak checks compare contents, not marker strings: every line of code that
sits in a solution region of solutions/miniflow, in a solution cell or in a
hidden-test region of a source notebook must be absent from every file of the
release, unless the same line is also given to students elsewhere.
"""

import json
import re
import shutil

import nbformat
import pytest
from conftest import REFERENCE, ROOT

from autograder import release
from autograder.trees import differing_files

SOURCE = ROOT / "assignments" / release.ASSIGNMENT
RELEASE = ROOT / "release" / release.ASSIGNMENT
REGION = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1", re.DOTALL)


def meaningful_lines(text):
    """Stripped lines long enough that finding one elsewhere is no coincidence."""
    return {line.strip() for line in text.splitlines() if len(line.strip()) >= 12}


def split_secret(text):
    """(lines inside solution/hidden-test regions, lines outside them) of one text."""
    secret = set()
    for match in REGION.finditer(text):
        secret |= meaningful_lines(match.group(2))
    return secret, meaningful_lines(REGION.sub("", text))


def secret_and_given_lines():
    secret, given = set(), set()
    for path in REFERENCE.rglob("*.py"):
        inside, outside = split_secret(path.read_text())
        secret, given = secret | inside, given | outside
    for path in SOURCE.glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            metadata = cell.metadata.get("nbgrader", {})
            if metadata.get("solution") and "### BEGIN SOLUTION" not in cell.source:
                secret |= meaningful_lines(cell.source)  # nbgrader clears the whole cell
                continue
            inside, outside = split_secret(cell.source)
            secret, given = secret | inside, given | outside
    return secret - given


def released_texts():
    """(path, text) for every file students receive; for notebooks, each cell's source."""
    for path in sorted(RELEASE.rglob("*")):
        if path.suffix == ".ipynb":
            for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
                yield f"{path.relative_to(ROOT)} cell {index}", cell.source
        elif path.is_file() and "__pycache__" not in path.parts:
            # errors="replace": a binary file (an icon beside the starter) can still hold no code line
            yield str(path.relative_to(ROOT)), path.read_text(errors="replace")


def test_the_release_is_current(tmp_path):
    assert release.stale_release_files(ROOT, tmp_path) == []


def test_the_release_holds_the_notebooks_the_readme_and_the_starter_package():
    assert sorted(p.name for p in RELEASE.glob("*.ipynb")) == sorted(p.name for p in SOURCE.glob("*.ipynb"))
    assert (RELEASE / "README.md").is_file()
    assert (RELEASE / "miniflow" / "__init__.py").is_file()


def scratch_course(folder):
    """A copy of the course's sources and committed release in `folder`."""
    release.copy_sources(ROOT, folder)
    shutil.copytree(ROOT / "release", folder / "release", ignore=release.NOT_COPIED)
    return folder


def test_nbgrader_generate_assignment_adds_every_entry_of_the_starter_folder_but_build_products(tmp_path):
    course = scratch_course(tmp_path / "course")
    extra = course / "miniflow_starter" / "extra"
    files = ["README.md", "src/index.ts", "node_modules/x/index.js", "lib/index.js", "tsconfig.tsbuildinfo"]
    for name in files:
        (extra / name).parent.mkdir(parents=True, exist_ok=True)
        (extra / name).write_text(name)
    shutil.rmtree(course / "release")
    release.run_nbgrader(course, "generate_assignment", release.ASSIGNMENT, "--no-db")  # no miniflow-course
    built = course / "release" / release.ASSIGNMENT
    copied = [path.relative_to(built / "extra") for path in (built / "extra").rglob("*") if path.is_file()]
    assert sorted(map(str, copied)) == ["README.md", "src/index.ts"]
    shutil.rmtree(built / "extra")
    assert differing_files(built, RELEASE) == []


def test_a_source_notebook_saved_by_jupyterlab_leaves_the_release_current(tmp_path):
    course = scratch_course(tmp_path / "course")
    path = course / "assignments" / release.ASSIGNMENT / "01-chain-rule.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.metadata.language_info.update(version="3.11.2", pygments_lexer="ipython3", mimetype="text/x-python")
    for cell in nb.cells:
        cell.metadata.update(scrolled=True, jupyter={"source_hidden": False}, execution={})
    nbformat.write(nb, path)
    assert release.stale_release_files(course, tmp_path / "fresh") == []


def test_a_starter_that_cannot_be_built_leaves_no_release_and_says_why(tmp_path):
    course = scratch_course(tmp_path / "course")
    layers = course / "solutions" / "miniflow" / "layers.py"
    before, _, after = layers.read_text().rpartition("### END SOLUTION")
    layers.write_text(before + after)
    with pytest.raises(release.ReleaseError, match=r"layers\.py:\d+: ### BEGIN SOLUTION is never closed"):
        release.build_release(course, use_gradebook=False)
    assert not (course / "release" / release.ASSIGNMENT).exists()


def test_no_solution_or_hidden_test_code_reaches_the_release():
    secret = secret_and_given_lines()
    assert len(secret) > 50, "the leak check found too little to look for"
    leaks = [
        f"{where}: {line}"
        for where, text in released_texts()
        for line in sorted(meaningful_lines(text) & secret)
    ]
    assert leaks == []


def test_release_notebooks_carry_no_outputs_and_declare_the_python3_kernel():
    for path in RELEASE.glob("*.ipynb"):
        notebook = json.loads(path.read_text())
        assert notebook["metadata"]["kernelspec"]["name"] == "python3", path.name
        assert all(not cell.get("outputs") for cell in notebook["cells"]), path.name


MARKERS = ["BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"]


@pytest.mark.parametrize("marker", MARKERS)
def test_no_marker_reaches_the_release(marker):
    assert [where for where, text in released_texts() if marker in text] == []
