"""Students' submissions: find them in a folder, and copy them into the course as nbgrader expects.

A SUBMISSIONS folder holds one folder per student, named by the student's id,
in either layout:

    SUBMISSIONS/alice/miniflow-lab/01-chain-rule.ipynb ...   nbgrader's (as `nbgrader collect` leaves it)
    SUBMISSIONS/bob/01-chain-rule.ipynb ...                  flat (the released folder, as an LMS hands it in)

`copy_into_course` puts each one at the course's submitted/<student>/<assignment>/,
where nbgrader's autograde and the formgrader find it. What it refuses is noted
instead of failing the batch: a notebook that nbformat cannot read (graded as
missing), symbolic links and special files (a link could point at the
solutions), and very large files.

The bundled samples (autograder/samples) become submissions here too: the
released notebooks, answered from the source notebooks when the sample's base
is the reference, beside the sample's miniflow/ package.
"""

import re
import shutil
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat.reader import NotJSONError

from . import samples, starter
from .sandbox import MIB

STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
SKIPPED_NAMES = {"__pycache__", ".ipynb_checkpoints", "__MACOSX", ".DS_Store"}
MAX_FILE_BYTES = 50 * MIB


@dataclass
class Submission:
    """One student's folder in SUBMISSIONS, and what taking it in found."""

    student_id: str  # the folder's name
    folder: Path  # the student's copy of the assignment folder
    problem: str = ""  # why it cannot be graded at all
    notes: list[str] = field(default_factory=list)  # what was refused or repaired, for the student
    notebooks: list[str] = field(default_factory=list)  # the assignment's notebooks that were taken in

    @property
    def valid_id(self):
        return STUDENT_ID.fullmatch(self.student_id) is not None


def find_submissions(folder, assignment):
    """The Submission of each entry of `folder` (hidden ones and archive leftovers aside), sorted by name."""
    found = []
    for entry in sorted(Path(folder).iterdir()):
        if entry.name.startswith(".") or entry.name in SKIPPED_NAMES:
            continue
        nested = entry / assignment
        submission = Submission(entry.name, nested if nested.is_dir() and not nested.is_symlink() else entry)
        if not submission.valid_id:
            submission.problem = (
                "The folder's name is not a valid student id (letters, digits and . _ @ + -, "
                "starting with a letter or digit, at most 64 characters)."
            )
        elif entry.is_symlink() or not entry.is_dir():
            submission.problem = "Not a folder (unpack archives before grading)."
        found.append(submission)
    return found


def copy_into_course(submission, destination, notebook_names):
    """Copy `submission` to `destination`, replacing what is there; note what is refused."""
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True)
    source = submission.folder
    for path in sorted(source.iterdir()):
        if path.suffix == ".ipynb":
            if path.stem not in notebook_names and path.is_file():
                submission.notes.append(f"{path.name} is not one of the assignment's notebooks: not graded.")
            continue
        copy_tree(path, destination / path.name, source, submission.notes)
    for name in notebook_names:
        path = source / f"{name}.ipynb"
        if not path.exists() and not path.is_symlink():
            submission.notes.append(f"{name}.ipynb is missing: its tests score 0.")
            continue
        try:
            notebook = read_notebook(path)
        except ValueError as error:
            submission.notes.append(
                f"{name}.ipynb is not a notebook that can be graded ({error}): its tests score 0."
            )
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nbformat.write(notebook, destination / path.name)
        submission.notebooks.append(name)
    if not submission.notebooks:
        submission.problem = "None of the assignment's notebooks could be taken in."


def copy_tree(path, target, top, notes):
    """Copy the file or folder `path` to `target`, leaving out links, special files and big files."""
    relative = path.relative_to(top)
    if path.name in SKIPPED_NAMES:
        return
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        notes.append(f"{relative} is a symbolic link: left out.")
    elif stat.S_ISDIR(info.st_mode):
        target.mkdir()
        for child in sorted(path.iterdir()):
            copy_tree(child, target / child.name, top, notes)
    elif not stat.S_ISREG(info.st_mode):
        notes.append(f"{relative} is not a regular file: left out.")
    elif info.st_size > MAX_FILE_BYTES:
        notes.append(f"{relative} is larger than {MAX_FILE_BYTES // MIB} MiB: left out.")
    else:
        shutil.copyfile(path, target)


def read_notebook(path):
    """The notebook at `path`, checked as nbgrader will read it; ValueError saying why not."""
    if path.is_symlink() or not path.is_file():
        raise ValueError("not a regular file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES // MIB} MiB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nbformat warns as it repairs cell ids
            notebook = nbformat.read(path, as_version=4)
            nbformat.validate(notebook)
    except NotJSONError:
        raise ValueError("not valid JSON") from None
    except Exception as error:  # nbformat raises many kinds: schema, encoding, conversion
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(first_line[:200]) from None
    return notebook


def answered_notebook(released, source):
    """The released notebook `released` with each solution cell answered as in the source notebook."""
    answers = {
        cell.metadata["nbgrader"]["grade_id"]: cell.source
        for cell in nbformat.read(source, as_version=4).cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }
    notebook = nbformat.read(released, as_version=4)
    for cell in notebook.cells:
        metadata = cell.metadata.get("nbgrader", {})
        if metadata.get("solution"):
            lines = answers[metadata["grade_id"]].splitlines()
            cell.source = "\n".join(
                line for line in lines if starter.BEGIN not in line and starter.END not in line
            )
    return notebook


def materialise_sample(name, destination, release, source):
    """Write sample `name` as a flat submission at `destination`: notebooks from `release`, its miniflow/.

    A sample based on the reference answers the notebooks as the source
    notebooks in `source` do; one based on the starter leaves them as released.
    """
    destination = Path(destination)
    destination.mkdir(parents=True)
    answered = samples.manifest(name)["base"] == "reference"
    for released in sorted(Path(release).glob("*.ipynb")):
        notebook = (
            answered_notebook(released, Path(source) / released.name)
            if answered
            else (nbformat.read(released, as_version=4))
        )
        nbformat.write(notebook, destination / released.name)
    return samples.materialise(name, destination)
