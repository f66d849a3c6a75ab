"""Build the student release with nbgrader, then add the starter.

``release/<assignment>/`` holds nbgrader's student version of the source
notebooks (solutions and hidden tests removed), the other files of
``assignments/<assignment>/`` as nbgrader copies them (README.md,
requirements.txt), and every entry of ``miniflow_starter/``: the starter package
``miniflow/`` generated from ``solutions/`` (see starter.py) and what students
get beside it. The source folder itself holds no package, so nothing in it can
leak a solution.

nbgrader does the starter part itself: nbgrader_config.py makes `add_starter`
GenerateAssignment's post-convert hook (nbgrader_hooks.py), so
`nbgrader generate_assignment` and the formgrader's Generate build the same release.
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
SOURCES = ("nbgrader_config.py", "assignments", "solutions", "miniflow_starter")
# Build products and caches that stay out of copies of miniflow_starter/ (node_modules, lib: a JupyterLab
# extension's; students build it from its sources) and JupyterLab's checkpoints of edited files.
NOT_COPIED = shutil.ignore_patterns(
    "__pycache__", ".ipynb_checkpoints", "node_modules", "lib", ".yarn", "*.tsbuildinfo"
)


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
    """Regenerate ``release/<assignment>/`` with nbgrader (the starter included); return that folder.

    With `use_gradebook` nbgrader also records the assignment in the course's
    gradebook, which autograding needs; checks build without it.
    """
    root = Path(root).resolve()
    args = ["generate_assignment", assignment, "--force"]
    if not use_gradebook:
        args.append("--no-db")
    result = run_nbgrader(root, *args)
    log = (result.stdout + result.stderr).strip()
    # nbgrader logs a failing hook and carries on: a release without the starter must not pass for one.
    if "hook failed" in log or not (root / "release" / assignment / "miniflow").is_dir():
        raise ReleaseError(
            f"`nbgrader generate_assignment {assignment}` did not add the starter to the release "
            f"(nbgrader_config.py should call autograder.nbgrader_hooks.configure):\n{log[-4000:]}"
        )
    return root / "release" / assignment


def add_starter(root, assignment):
    """Regenerate ``miniflow_starter/miniflow`` from ``solutions/``, then copy each entry of
    ``miniflow_starter/`` into ``release/<assignment>/``."""
    root = Path(root)
    starter_folder = root / "miniflow_starter"
    starter.build_starter(root / "solutions" / "miniflow", starter_folder / "miniflow")
    release = root / "release" / assignment
    for entry in sorted(starter_folder.iterdir()):
        target = release / entry.name
        if target.is_dir():  # generating one notebook (--notebook) keeps the rest of the release
            shutil.rmtree(target)
        if entry.is_dir():
            shutil.copytree(entry, target, ignore=NOT_COPIED)
        else:
            shutil.copy2(entry, target)


def copy_sources(root, scratch):
    """Copy what a release is built from (SOURCES) from the course `root` into `scratch`."""
    Path(scratch).mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        source = Path(root) / name
        if source.is_dir():
            shutil.copytree(source, Path(scratch) / name, ignore=NOT_COPIED)
        else:
            shutil.copy2(source, Path(scratch) / name)


def stale_release_files(root, scratch, assignment=ASSIGNMENT):
    """Files of ``release/<assignment>/`` that differ from a fresh build made in `scratch`."""
    root = Path(root).resolve()
    copy_sources(root, scratch)
    fresh = build_release(scratch, assignment, use_gradebook=False)
    return differing_files(fresh, root / "release" / assignment)
