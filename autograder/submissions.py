"""Students' submissions: find them in a folder, and copy them into the course as nbgrader expects.

A SUBMISSIONS folder holds one folder per student, named by the student's id,
in either layout:

    SUBMISSIONS/alice/miniflow-lab/01-chain-rule.ipynb ...   nbgrader's (as `nbgrader collect` leaves it)
    SUBMISSIONS/bob/01-chain-rule.ipynb ...                  flat (the released folder, as an LMS hands it in)

A folder's name is the student's id as the class list holds it. nbgrader uses
it as a file name and a glob, so a name that is not a plain id (a space, a
leading dash, letters outside ASCII, bytes that are not UTF-8) is graded under
a safe id made from it (`assign_ids`); the grade files carry both.

`copy_into_course` puts each one at the course's submitted/<student>/<assignment>/,
where nbgrader's autograde and the formgrader find it. What it refuses is noted
instead of failing the batch: a notebook that nbformat cannot read (graded as
missing), symbolic links and special files (a link could point at the
solutions), names that are not printable UTF-8, very large files, and what
goes beyond a submission's Limits (files, bytes, depth).

The bundled samples (autograder/samples) become submissions here too: the
released notebooks, answered from the source notebooks when the sample's base
is the reference, beside the sample's miniflow/ package.
"""

import hashlib
import itertools
import logging
import os
import re
import shutil
import stat
import unicodedata
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
SLUG_CHARACTERS = 32  # of a safe id, before its hash
LONE_SURROGATE = re.compile("[\ud800-\udfff]")

log = logging.getLogger(__name__)


@dataclass
class Submission:
    """One student's folder in SUBMISSIONS, and what taking it in found."""

    name: str  # the folder's name as Python reads it (bytes that are not UTF-8 as lone surrogates)
    folder: Path  # the student's copy of the assignment folder
    nbgrader_id: str = ""  # the id nbgrader grades it under: the name itself when nbgrader can use it
    problem: str = ""  # why it cannot be graded at all
    notes: list[str] = field(default_factory=list)  # what was refused or repaired, for the student
    notebooks: list[str] = field(default_factory=list)  # the assignment's notebooks that were taken in

    @property
    def student_id(self):
        """The folder's name, printable: the student as the class list holds them."""
        return printable(self.name)


def printable(name):
    """`name` as printable text, and never the same text for two names.

    A byte that is not UTF-8 or an unprintable ASCII character shows as \\xNN (that
    byte), another unprintable character as \\uNNNN or \\UNNNNNNNN, a backslash as \\\\.
    """
    shown = []
    for character in name:
        code = ord(character)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as os.fsdecode keeps it
            shown.append(f"\\x{code - 0xDC00:02x}")
        elif character == "\\":
            shown.append("\\\\")
        elif character.isprintable():
            shown.append(character)
        elif code < 0x80:
            shown.append(f"\\x{code:02x}")
        else:
            shown.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return "".join(shown)


def find_submissions(folder, assignment):
    """The Submission of each entry of `folder`, sorted by name, each with its nbgrader id.

    Hidden entries and archive leftovers are not students: they are logged and skipped.
    """
    found = []
    for entry in sorted(Path(folder).iterdir()):
        if entry.name in SKIPPED_NAMES:
            log.warning("%s: skipped, an archive's or a system's leftover", printable(str(entry)))
        elif entry.name.startswith("."):
            log.warning("%s: skipped, a hidden name (rename it to grade it)", printable(str(entry)))
        else:
            found.append(examine(entry, assignment))
    assign_ids(found)
    return found


def examine(entry, assignment):
    """The Submission of `entry`, in either layout, or with the problem that stops it being graded."""
    submission = Submission(entry.name, entry)
    try:
        if entry.is_symlink():
            submission.problem = "Not a folder but a symbolic link (links are not followed)."
        elif not entry.is_dir():
            submission.problem = "Not a folder (unpack archives before grading)."
        elif (entry / assignment).is_dir() and not (entry / assignment).is_symlink():
            submission.folder = entry / assignment
    except OSError as error:
        submission.problem = f"The folder cannot be read: {error.strerror or error}."
    return submission


def assign_ids(submissions):
    """Give each Submission an id nbgrader can use, the same for the same name in every run.

    A name that is a valid id (letters, digits and . _ @ + -, starting with a
    letter or digit, at most 64 characters) is its own id, so it is never taken
    by another; any other name gets a slug of it and a hash of its bytes, the
    hash longer if that id is taken already.
    """
    taken = {submission.name for submission in submissions if STUDENT_ID.fullmatch(submission.name)}
    for submission in submissions:
        if submission.name in taken:
            submission.nbgrader_id = submission.name
            continue
        digest = hashlib.sha256(os.fsencode(submission.name)).hexdigest()
        candidates = (f"{slug(submission.name)}-{digest[:length]}" for length in range(8, len(digest) + 1, 4))
        submission.nbgrader_id = next(candidate for candidate in candidates if candidate not in taken)
        taken.add(submission.nbgrader_id)
        submission.notes.append(
            f"The folder's name is not a valid student id for nbgrader: graded as {submission.nbgrader_id}."
        )


def slug(name):
    """The letters, digits and . _ @ + - of `name`, accents dropped, starting with a letter or digit."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    words = re.sub(r"[^A-Za-z0-9._@+-]+", "_", ascii_name).lstrip("._@+-")
    return words[:SLUG_CHARACTERS] or "student"


@dataclass(frozen=True)
class Limits:
    """How much of one submission is copied into the course; what goes beyond is left out, with a note."""

    files: int = 10_000  # files and folders, in all
    total_bytes: int = 100_000_000  # as nbgrader's CourseDirectory.max_dir_size (in kB) by default
    depth: int = 16  # folders inside folders, below the submission's own


def copy_into_course(submission, destination, notebook_names, limits=Limits()):
    """Copy `submission` to `destination`, replacing what is there; note what is refused."""
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True)
    source = submission.folder
    intake = Intake(source, submission.notes, limits)
    for name in notebook_names:  # first: they matter most, and the limits must not crowd them out
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
        text, repaired = notebook_text(notebook)
        if repaired:
            submission.notes.append(
                f"{name}.ipynb holds text that is not valid Unicode (lone surrogates such as \\ud800): "
                "each was replaced by U+FFFD."
            )
        (destination / path.name).write_text(text, encoding="utf-8")
        intake.bytes += path.stat().st_size
        submission.notebooks.append(name)
    for path in intake.listing(source) or []:
        if path.suffix == ".ipynb":
            if path.stem not in notebook_names and path.is_file():
                intake.leave_out(path, "is not one of the assignment's notebooks", "not graded")
            continue
        intake.copy(path, destination / path.name)
    intake.finish()
    if not submission.notebooks:
        submission.problem = "None of the assignment's notebooks could be taken in."


class Intake:
    """Copying one submission within its Limits: what it has used of them, and notes on what it left out."""

    named = 20  # left-out files and folders named in the notes; those after them are counted

    def __init__(self, source, notes, limits):
        self.source, self.notes, self.limits = source, notes, limits
        self.files = self.bytes = self.left_out = 0
        self.stopped = False  # a limit was reached: nothing more is copied

    def copy(self, path, target, depth=1):
        """Copy the file or folder `path` to `target`, leaving out links, special files and too much."""
        if self.stopped or path.name in SKIPPED_NAMES:
            return
        try:
            info = path.lstat()
            if not path.name.isprintable():  # nbgrader, its logs and Python's imports need UTF-8 names
                self.leave_out(path, "has a name that is not printable UTF-8")
            elif stat.S_ISLNK(info.st_mode):
                self.leave_out(path, "is a symbolic link")
            elif stat.S_ISDIR(info.st_mode):
                self.copy_folder(path, target, depth)
            elif not stat.S_ISREG(info.st_mode):
                self.leave_out(path, "is not a regular file")
            elif info.st_size > MAX_FILE_BYTES:
                self.leave_out(path, f"is larger than {MAX_FILE_BYTES // MIB} MiB")
            elif self.room_for(path, info.st_size):
                shutil.copyfile(path, target)
        except OSError as error:  # a path too long for the course, a file that vanished, ...
            self.leave_out(path, f"could not be copied ({error.strerror or error})")

    def copy_folder(self, path, target, depth):
        if depth > self.limits.depth:
            self.leave_out(path, f"is more than {self.limits.depth} folders deep")
            return
        children = self.listing(path)
        if children is not None:
            target.mkdir()
            for child in children:
                self.copy(child, target / child.name, depth + 1)

    def listing(self, folder):
        """The paths in `folder`, sorted; None, and nothing more copied, past the limit on files."""
        room = self.limits.files - self.files
        with os.scandir(folder) as entries:  # reads no more names than the limit needs
            names = [entry.name for entry in itertools.islice(entries, room + 1)]
        if len(names) > room:
            where = self.shown(folder) if folder != self.source else "its top folder"
            self.stop(
                f"The submission holds more than {self.limits.files} files and folders: "
                f"{where} and all after it were left out."
            )
            return None
        self.files += len(names)
        return [folder / name for name in sorted(names)]

    def room_for(self, path, size):
        if self.bytes + size > self.limits.total_bytes:
            self.stop(
                f"The submission's files pass {self.limits.total_bytes / 1e6:g} MB in all: "
                f"{self.shown(path)} and all after it were left out."
            )
            return False
        self.bytes += size
        return True

    def shown(self, path):
        return printable(str(path.relative_to(self.source)))

    def leave_out(self, path, why, outcome="left out"):
        if self.left_out < self.named:
            self.notes.append(f"{self.shown(path)} {why}: {outcome}.")
        self.left_out += 1

    def stop(self, why):
        self.notes.append(why)
        self.stopped = True

    def finish(self):
        if self.left_out > self.named:
            self.notes.append(f"{self.left_out - self.named} more files or folders were left out as well.")


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


def notebook_text(notebook):
    """The notebook as nbformat writes it, and whether lone surrogates had to be replaced.

    A JSON escape such as \\ud800 reads as a lone surrogate, which UTF-8 cannot
    write; it can only stand inside a JSON string, so replacing it keeps the JSON valid.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbformat warns as it repairs cell ids
        text = nbformat.writes(notebook)
    text = text if text.endswith("\n") else text + "\n"  # as nbformat.write ends a file
    repaired = LONE_SURROGATE.sub("\ufffd", text)
    return repaired, repaired != text


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
