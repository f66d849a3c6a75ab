"""nbgrader's configuration for the miniflow course (this folder is the course root).

Instructors run nbgrader's own commands from this folder, or JupyterLab's
formgrader started here, for example:

    .venv/bin/nbgrader generate_assignment miniflow-lab
    .venv/bin/nbgrader autograde miniflow-lab

The comment above each setting says why it is here.
"""

from pathlib import Path

c = get_config()  # noqa: F821 (nbgrader defines get_config when it loads this file)

c.CourseDirectory.root = str(Path(__file__).resolve().parent)
c.CourseDirectory.course_id = "miniflow-course"
c.CourseDirectory.source_directory = "assignments"
c.CourseDirectory.release_directory = "release"

# nbgrader scores a test cell 0 when anything reaches stderr. A correct answer can
# still make numpy warn (an overflow in exp that the formula survives, say), so
# numpy's RuntimeWarnings are dropped from the output before grading. The tests
# that check numerical stability catch warnings themselves and fail explicitly.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"RuntimeWarning: "

# The MNIST notebook's hidden tests retrain the student's networks from scratch
# under a fixed budget (10 epochs of full MNIST at most, batches of 16 or more,
# 256 hidden units at most): about 12 s with the reference's settings on an idle
# 2-core machine, under a minute at the budget's limits, several times that on a
# busy machine. nbgrader's default of 30 s per cell is too tight for that.
c.Execute.timeout = 300

# A test cell a student deleted is put back and graded instead of scoring 0 and
# waiting for manual grading.
c.OverwriteCells.add_missing_cells = True

# The widgets keep a static picture in each cell's output for exports and
# feedback; stored widget state would make those draw the live widget instead,
# which needs JavaScript that a feedback page cannot load.
c.Execute.store_widget_state = False

# Grade as `miniflow-course grade` does: sandboxed kernels, trusted checks, feedback
# without hidden tests (autograder/pipeline.py). With this, nbgrader's own
# `autograde`, `generate_feedback` and the formgrader's buttons use that pipeline.
from autograder.pipeline import configure  # noqa: E402

configure(c)

# Generate and Validate as `miniflow-course build-release` builds (autograder/nbgrader_hooks.py): the starter
# generated into the release, source notebooks validated against solutions/, alembic found whatever PATH is.
from autograder import nbgrader_hooks  # noqa: E402

nbgrader_hooks.configure(c, Path(__file__).resolve().parent)
