"""Prepare submission: a zip of the student's work with a receipt, in the layout the course grades.

The zip holds `miniflow-lab/<notebook>.ipynb`, `miniflow-lab/miniflow/...` and
`miniflow-lab/RECEIPT.json`: unpacked into a folder named by the student's id, that is nbgrader's
layout (`<student_id>/miniflow-lab/...`), which `miniflow-course grade` and `nbgrader autograde`
take as it is. Only what is graded goes in (the notebooks and the miniflow/ package, no caches,
data or hidden files), so the zip stays small.
"""

import hashlib
import json
import zipfile
from datetime import datetime, timezone
from pathlib import Path

ASSIGNMENT = "miniflow-lab"
ZIP_NAME = f"{ASSIGNMENT}-submission.zip"
RECEIPT_NAME = "RECEIPT.json"
MAX_FILE_BYTES = 10 * 1024 * 1024  # larger files are data or saved models, which are not handed in
LEFT_OUT = {"__pycache__", ".ipynb_checkpoints"}


class SubmissionError(Exception):
    """The folder cannot be handed in as it is; the message says why."""


def files_to_hand_in(folder):
    """The graded files of `folder`, relative paths, sorted: its notebooks and its miniflow/ package."""
    folder = Path(folder)
    found = sorted(path for path in folder.glob("*.ipynb") if path.is_file())
    for path in sorted((folder / "miniflow").rglob("*")):
        relative = path.relative_to(folder)
        if (
            path.is_file()
            and not path.is_symlink()
            and not any(part.startswith(".") or part in LEFT_OUT for part in relative.parts)
        ):
            found.append(path)
    return [path.relative_to(folder) for path in found]


def validate(folder, files):
    """Raise SubmissionError naming what would make the submission ungradable."""
    folder = Path(folder)
    if not any(path.suffix == ".ipynb" for path in files):
        raise SubmissionError(f"no notebooks in {folder.name}: open the lab's folder")
    if not (folder / "miniflow" / "__init__.py").is_file():
        raise SubmissionError("the miniflow/ package is missing from the folder")
    for path in files:
        size = (folder / path).stat().st_size
        if size > MAX_FILE_BYTES:
            raise SubmissionError(
                f"{path} is {size // 2**20} MiB: move big files (data, models) out of miniflow/"
            )
        if path.suffix == ".ipynb":
            try:
                json.loads((folder / path).read_text(encoding="utf-8"))["cells"]
            except (ValueError, KeyError) as error:
                raise SubmissionError(
                    f"{path} is not a readable notebook ({error}): ask for a fresh copy"
                ) from None


def visible_test_summary(listing):
    """The receipt's summary of the visible tests: each exercise's status, and the counts."""
    exercises = [
        {"notebook": notebook["path"], "exercise": exercise["title"], "status": exercise["status"]}
        for notebook in listing["notebooks"]
        for exercise in notebook["exercises"]
    ]
    return {
        "passed": sum(exercise["status"] == "passed" for exercise in exercises),
        "exercises": len(exercises),
        "problem": listing.get("problem", ""),
        "by_exercise": exercises,
    }


def prepare_submission(folder, listing, now=None):
    """Write `folder`/miniflow-lab-submission.zip with a receipt; the receipt."""
    folder = Path(folder)
    files = files_to_hand_in(folder)
    validate(folder, files)
    receipt = {
        "assignment": ASSIGNMENT,
        "created": (now or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
        "files": {
            path.as_posix(): hashlib.sha256((folder / path).read_bytes()).hexdigest() for path in files
        },
        "visible_tests": visible_test_summary(listing),
    }
    partial = folder / f".{ZIP_NAME}.partial"
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(folder / path, f"{ASSIGNMENT}/{path.as_posix()}")
        archive.writestr(f"{ASSIGNMENT}/{RECEIPT_NAME}", json.dumps(receipt, indent=1))
    partial.replace(folder / ZIP_NAME)
    return {**receipt, "zip": ZIP_NAME}
