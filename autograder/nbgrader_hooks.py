"""nbgrader's configuration for the instructor's flows: Generate and Validate, from any shell.

`configure(c, root)` sets it on a traitlets config; nbgrader_config.py calls it,
so `nbgrader generate_assignment`, `nbgrader validate` and the formgrader's and
JupyterLab's buttons behave like `miniflow-course build-release`:

- nbgrader runs `alembic` by name when it creates a gradebook, so this
  environment's bin goes first on PATH, whatever the shell that started the
  server or command had there;
- generating the assignment also regenerates the starter from solutions/ and
  copies it into the release (a post-convert hook);
- the release notebooks keep only the metadata that grading needs, so saving a
  source notebook in JupyterLab (which adds the kernel's version, view state)
  changes the release only where the notebook's content changed;
- validating a source notebook runs it against the reference package, which the
  source folder does not hold (release.py says why).
"""

import os
import shutil
from pathlib import Path

from nbgrader.converters import GenerateAssignment
from nbgrader.preprocessors import NbGraderPreprocessor

from . import release
from .environment import put_environment_bin_on_path

KEPT_CELL_METADATA = ("nbgrader", "tags")


class GradingMetadataOnly(NbGraderPreprocessor):
    """Keep the kernelspec, the language's name and each cell's nbgrader metadata and tags; drop the rest."""

    def preprocess(self, nb, resources):
        language_info = nb.metadata.get("language_info", {})
        nb.metadata = {key: value for key, value in nb.metadata.items() if key == "kernelspec"}
        if "name" in language_info:
            nb.metadata["language_info"] = {"name": language_info["name"]}
        for cell in nb.cells:
            cell.metadata = {key: value for key, value in cell.metadata.items() if key in KEPT_CELL_METADATA}
        return nb, resources


class StarterIntoRelease:
    """GenerateAssignment's post-convert hook: the starter, rebuilt from solutions/, into the release."""

    def __init__(self, root):
        self.root = Path(root)

    def __call__(self, assignment, student, notebooks):
        try:
            release.add_starter(self.root, assignment)
        except BaseException:
            # nbgrader logs a failing hook and reports success: leave no release without the starter.
            shutil.rmtree(self.root / "release" / assignment, ignore_errors=True)
            raise


def reference_for_source_notebooks(source_directory, reference_directory):
    """Kernel arguments that make a kernel started in `source_directory` (or below) import `miniflow`
    from `reference_directory`; elsewhere, as in a student's folder, the kernel is left as it is.

    The validator starts a notebook's kernel in the notebook's folder: a student's copy has
    its `miniflow/` there, the source folder has none (release.py says why).
    """
    code = (
        "import os, sys\n"
        f"if os.path.realpath(os.getcwd()).startswith({str(source_directory) + os.sep!r}):\n"
        f"    sys.path.insert(0, {str(reference_directory)!r})\n"
        "    sys.dont_write_bytecode = True  # no __pycache__ in the reference"
    )
    return [f"--IPKernelApp.exec_lines={code}"]


def configure(c, root):
    """Configure nbgrader's Generate and Validate for the course in `root` (see the module's docstring)."""
    root = Path(root).resolve()
    put_environment_bin_on_path()
    c.GenerateAssignment.preprocessors = [
        GradingMetadataOnly,
        *GenerateAssignment.class_traits()["preprocessors"].default(),
    ]
    c.GenerateAssignment.post_convert_hook = StarterIntoRelease(root)
    # The Execute of validation only (its parent is the Validator): grading's kernels stay as they are.
    c.Validator.Execute.extra_arguments = reference_for_source_notebooks(
        root / c.CourseDirectory.source_directory, root / "solutions"
    )
    return c
