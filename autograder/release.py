"""Build the student release with nbgrader, then add the starter package.

``release/<assignment>/`` holds nbgrader's student version of the source
notebooks (solutions and hidden tests removed), the other files of
``assignments/<assignment>/`` as nbgrader copies them (README.md,
requirements.txt), and ``miniflow/``: the starter package generated from
``solutions/`` (see starter.py). The source folder itself holds no package,
so nothing in it can leak a solution.
"""

import shutil
import subprocess
import sys
from pathlib import Path

from . import starter
from .environment import put_environment_bin_on_path
from .trees import differing_files

ASSIGNMENT = "miniflow-lab"
# What a fresh build needs from the course root.
SOURCES = ("nbgrader_config.py", "assignments", "solutions")


class ReleaseError(RuntimeError):
    """nbgrader could not generate the release; the message carries its log."""


def run_nbgrader(root, *args):
    """Run an nbgrader command in the course root, as an instructor would."""
    put_environment_bin_on_path()
    command = [sys.executable, "-m", "nbgrader", *args]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        log = (result.stdout + result.stderr).strip()
        raise ReleaseError(f"`nbgrader {' '.join(args)}` failed in {root}:\n{log[-4000:]}")
    return result


def build_release(root, assignment=ASSIGNMENT, use_gradebook=True):
    """Regenerate the starter, then ``release/<assignment>/``; return that folder.

    With `use_gradebook` nbgrader also records the assignment in the course's
    gradebook, which autograding needs; checks build without it.
    """
    root = Path(root).resolve()
    starter_package = root / "miniflow_starter" / "miniflow"
    starter.build_starter(root / "solutions" / "miniflow", starter_package)
    args = ["generate_assignment", assignment, "--force"]
    if not use_gradebook:
        args.append("--no-db")
    run_nbgrader(root, *args)
    release = root / "release" / assignment
    shutil.copytree(starter_package, release / "miniflow", ignore=shutil.ignore_patterns("__pycache__"))
    return release


def copy_sources(root, scratch):
    """Copy what a release is built from (SOURCES) from the course `root` into `scratch`."""
    for name in SOURCES:
        source = Path(root) / name
        if source.is_dir():
            shutil.copytree(source, Path(scratch) / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, Path(scratch) / name)


def stale_release_files(root, scratch, assignment=ASSIGNMENT):
    """Files of ``release/<assignment>/`` that differ from a fresh build made in `scratch`."""
    root = Path(root).resolve()
    copy_sources(root, scratch)
    fresh = build_release(scratch, assignment, use_gradebook=False)
    return differing_files(fresh, root / "release" / assignment)
