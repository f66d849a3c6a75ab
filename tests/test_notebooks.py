"""The nbgrader source notebooks of the miniflow-lab assignment (assignments/miniflow-lab/).

Fast tests read the notebooks: nbgrader metadata, grade ids and points, the lab's assert values,
what a release would show. Slow tests execute them on the python3 kernel with nbclient, each
copy in a scratch folder beside a miniflow/ package (the students' layout):

- with the reference package, every cell runs and every test cell passes, and `nbgrader
  validate` agrees;
- as released (solution cells cleared, hidden tests removed) with the starter package, the only
  errors are the "not implemented yet" ones, and the kernel survives;
- graded as an empty submission (hidden tests back in), every test cell scores 0;
- with classic bugs planted in the reference, the test cells meant to catch
  each bug fail, while the lab's own asserts often still pass;
- the ungraded widget and self-check cells run without an error or stderr output in all of these,
  with the reference and with the starter.

The folder also holds the students' README.md and requirements.txt, which nbgrader copies into the
release; fast tests check what they promise.
"""

import ast
import copy
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import numpy as np
import pytest
from browser.svg_text import node_texts, own_text
from conftest import MNIST, REFERENCE, ROOT, STARTER, load_package
from nbclient import NotebookClient
from nbformat.v4 import new_output
from nbgrader.nbgraderformat import MetadataValidator
from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions, IgnorePattern
from nbgrader.utils import determine_grade
from packaging.requirements import Requirement
from packaging.version import Version
from traitlets.config.loader import PyFileConfigLoader

ASSIGNMENT = ROOT / "assignments" / "miniflow-lab"
NOTEBOOKS = [
    "01-chain-rule",
    "02-linear-and-sigmoid",
    "03-softmax-and-losses",
    "04-gradient-descent",
    "05-mnist",
]
SETUP_LINES = ["%load_ext autoreload", "%autoreload 2", "import numpy as np", "from miniflow import *"]

# The grade ids, notebook by notebook: the autograder keys trusted checks on them, so they stay put.
GRADE_IDS = {
    "01-chain-rule": [
        "by_hand_f",
        "by_hand_f_general",
        "by_hand_k",
        "by_hand_k_general",
        "mul_lab_f",
        "mul_lab_dummygrad",
        "mul_three_inputs",
        "mul_forward",
        "mul_backward",
        "mul_backward_fanout",
    ],
    "02-linear-and-sigmoid": [
        "linear_worked_example",
        "linear_lab_ones",
        "linear_lab_dummygrad",
        "linear_forward",
        "linear_backward_dX",
        "linear_backward_dW",
        "linear_backward_db",
        "linear_bias_shape",
        "linear_float32",
        "sigmoid_lab_ones",
        "sigmoid_lab_dummygrad",
        "sigmoid_after_linear",
        "sigmoid_forward",
        "sigmoid_backward",
        "sigmoid_stability",
        "sigmoid_float32",
    ],
    "03-softmax-and-losses": [
        "softmax_example",
        "cross_entropy_lab",
        "softmax_rows",
        "softmax_stability",
        "cross_entropy_forward",
        "cross_entropy_backward",
        "cross_entropy_upstream",
        "cross_entropy_stability",
        "cross_entropy_float32",
        "mse_lab",
        "mse_gradient_matrix",
    ],
    "04-gradient-descent": [
        "gradient_descent_minimum",
        "gradient_descent_general",
        "sgd_update_minimum",
        "two_layer_walkthrough",
        "regression_trained",
        "run_epoch_batches",
        "run_epoch_steps",
        "regression_retrained",
    ],
    "05-mnist": [
        "softmax_network_built",
        "train_epoch_learns",
        "softmax_network_structure",
        "softmax_accuracy",
        "mlp_network_built",
        "settings_in_range",
        "mlp_network_structure",
        "mlp_accuracy",
        "train_epoch_batches",
        "train_epoch_steps",
    ],
}

# Every assert value of the lab (its taught version, its draft and the walkthrough), as the
# visible test cells write it: (notebook, text).
LAB_VALUES = [
    ("01-chain-rule", "assert gradient_of_f(3, 4, -5) == [-1, 3, 3]"),
    ("01-chain-rule", "assert gradient_of_k(-2, 5, -4) == [-4, -4, 3]"),
    ("01-chain-rule", "assert value == -3"),
    ("01-chain-rule", "assert grads == [-1, 3, 3]"),
    ("01-chain-rule", "assert grads == [-0.5, 1.5, 1.5]"),
    ("01-chain-rule", "assert value == 200"),
    ("02-linear-and-sigmoid", "[[18.0, 21.0], [42.0, 49.0]]"),
    ("02-linear-and-sigmoid", "assert np.allclose(value, [[-9.0, 6.0], [-9.0, 6.0]])"),
    ("02-linear-and-sigmoid", "assert np.allclose(grads[0], [[-1.0, -1.0], [-1.0, -1.0]])"),
    ("02-linear-and-sigmoid", "assert np.allclose(grads[1], [[-2.0, -2.0], [-4.0, -4.0]])"),
    ("02-linear-and-sigmoid", "assert np.allclose(grads[2], [[2.0, 2.0]])"),
    ("02-linear-and-sigmoid", "assert np.allclose(value, [[-9.0, 4.0], [-9.0, 4.0]])"),
    ("02-linear-and-sigmoid", "assert np.allclose(grads[0], [[-4.0, -4.0], [-6.0, -6.0]])"),
    ("02-linear-and-sigmoid", "assert np.allclose(grads[1], [[-4.0, -6.0], [-8.0, -12.0]])"),
    ("02-linear-and-sigmoid", "assert np.allclose(grads[2], [[4.0, 6.0]])"),
    ("02-linear-and-sigmoid", "assert np.allclose(value, [0.0, 0.5, 1.0], atol=1e-4)"),
    ("02-linear-and-sigmoid", "assert np.allclose(grads, [0.0, 0.25, 0.0], atol=1e-4)"),
    ("02-linear-and-sigmoid", "assert np.allclose(grads, [0.0, 0.125, 0.0], atol=1e-4)"),
    ("02-linear-and-sigmoid", "[[1.23394576e-04, 9.82013790e-01], [1.23394576e-04, 9.82013790e-01]]"),
    ("03-softmax-and-losses", "[[0.2309, 0.5138, 0.2551]]"),
    ("03-softmax-and-losses", "[[0.1863, 0.3072, 0.5064]]"),
    ("03-softmax-and-losses", "assert np.allclose(loss, 1.1802, atol=1e-4)"),
    ("03-softmax-and-losses", "assert np.allclose(grads, [[0.1863, -0.6928, 0.5064]], atol=1e-4)"),
    ("03-softmax-and-losses", "assert np.isclose(value, 23.4166666667)"),
    ("04-gradient-descent", "assert abs(path[-1] - 2.2499) < 2e-4"),
    ("04-gradient-descent", "assert abs(float(x.value) - 2.2499) < 2e-4"),
    ("04-gradient-descent", "[[-3.34017280e-05, -5.01025919e-05], [-6.68040138e-05, -1.00206021e-04]]"),
    ("04-gradient-descent", "[0.9999833, 1.9999833]"),
    ("04-gradient-descent", "[[5.01028709e-05], [1.00205742e-04]]"),
    ("04-gradient-descent", "[-5.01028709e-05]"),
]

# The stubs a fresh release runs into first, notebook by notebook, as the starter names them
# (a backward pass is reached only once the forward pass works).
STUBBED = {
    "01-chain-rule": ["Mul.forward"],
    "02-linear-and-sigmoid": ["Linear.forward", "Sigmoid.forward"],
    "03-softmax-and-losses": ["CrossEntropyWithSoftmax._softmax", "CrossEntropyWithSoftmax.forward"],
}


def read(name):
    return nbformat.read(ASSIGNMENT / f"{name}.ipynb", as_version=4)


def nbgrader_meta(cell):
    return cell.metadata.get("nbgrader", {})


def grade_cells(nb):
    return [cell for cell in nb.cells if nbgrader_meta(cell).get("grade")]


def without_hidden_tests(source):
    return re.sub(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", "", source, flags=re.S)


def as_released(nb):
    """The notebook as `nbgrader generate_assignment` gives it: solutions cleared, hidden tests removed."""
    nb = copy.deepcopy(nb)
    nb, resources = ClearSolutions().preprocess(nb, {})
    nb, resources = ClearHiddenTests().preprocess(nb, resources)
    return nb


def as_submitted_empty(nb):
    """An untouched release as autograde runs it: solutions cleared, hidden tests put back."""
    nb = copy.deepcopy(nb)
    nb, _ = ClearSolutions().preprocess(nb, {})
    return nb


def course_config():
    return PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()


# Fast tests: the notebooks as files.


def test_one_assignment_of_five_notebooks_in_the_labs_order():
    assert sorted(path.stem for path in ASSIGNMENT.glob("*.ipynb")) == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_metadata_is_valid_for_nbgrader(name):
    nb = read(name)
    nbformat.validate(nb)
    MetadataValidator().validate_nb(nb)  # unique grade ids, points on grade cells, ...
    assert nb.metadata.kernelspec.name == "python3"
    first_code = next(cell for cell in nb.cells if cell.cell_type == "code")
    assert first_code.source.splitlines()[:4] == SETUP_LINES
    assert nbgrader_meta(first_code).get("locked"), "the setup cell is read-only"
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "source notebooks are stored unexecuted"
        assert ("### BEGIN SOLUTION" in cell.source) == bool(meta.get("solution")), cell.source[:80]
        assert cell.source.count("### BEGIN SOLUTION") == cell.source.count("### END SOLUTION")
        if "### BEGIN HIDDEN TESTS" in cell.source:
            assert meta.get("grade"), "hidden tests belong in grade cells"
            assert cell.source.count("### BEGIN HIDDEN TESTS") == cell.source.count("### END HIDDEN TESTS")
        if meta.get("grade"):
            assert cell.cell_type == "code" and meta["locked"] and not meta["solution"]
            assert meta["points"] > 0
            assert cell.source.startswith(("# Test", "# Hidden tests")), cell.source[:80]
            assert (cell.source.startswith("# Hidden")) == ("BEGIN HIDDEN TESTS" in cell.source)


def test_grade_ids_are_stable_and_unique_across_the_assignment():
    found = {
        name: [nbgrader_meta(cell)["grade_id"] for cell in grade_cells(read(name))] for name in NOTEBOOKS
    }
    assert found == GRADE_IDS
    every_id = [
        nbgrader_meta(cell)["grade_id"]
        for name in NOTEBOOKS
        for cell in read(name).cells
        if nbgrader_meta(cell).get("grade_id")
    ]
    assert len(every_id) == len(set(every_id))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*[a-z0-9]", grade_id, flags=re.I) for grade_id in every_id)


def test_every_lab_assert_value_is_in_a_visible_test_cell():
    visible = {
        name: "\n".join(without_hidden_tests(cell.source) for cell in grade_cells(read(name)))
        for name in NOTEBOOKS
    }
    missing = [(name, text) for name, text in LAB_VALUES if text not in visible[name]]
    assert not missing


def test_graded_exercises_say_which_file_to_edit():
    text = {
        name: "\n".join(cell.source for cell in read(name).cells if cell.cell_type == "markdown")
        for name in NOTEBOOKS
    }
    assert "miniflow/arithmetic.py" in text["01-chain-rule"]
    assert "miniflow/layers.py" in text["02-linear-and-sigmoid"]
    assert "miniflow/losses.py" in text["03-softmax-and-losses"]
    assert all("do not copy, split or delete" in text[name].lower() for name in NOTEBOOKS)


def test_the_assignment_folder_holds_no_code_that_would_be_released():
    # nbgrader copies every other file of the source folder into the release verbatim: besides the
    # notebooks, only the students' README and requirements, never code (no .py, no miniflow/).
    expected = [f"{name}.ipynb" for name in NOTEBOOKS] + ["README.md", "requirements.txt"]
    assert sorted(path.name for path in ASSIGNMENT.iterdir()) == sorted(expected)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_release_shows_no_solution_and_no_hidden_test(name):
    source, released = read(name), as_released(read(name))
    for before, after in zip(source.cells, released.cells, strict=True):
        meta = nbgrader_meta(before)
        if meta.get("solution"):
            assert "raise NotImplementedError()" in after.source
            solution = re.search(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", before.source, re.S).group(1)
            assert solution.strip() not in after.source
        if "BEGIN HIDDEN TESTS" in before.source:
            hidden = re.search(r"BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", before.source, re.S).group(1)
            assert hidden.strip() not in after.source
            assert after.source.strip().startswith("# Hidden tests")
        assert "BEGIN" not in after.source and "END SOLUTION" not in after.source


def test_course_configuration():
    config = course_config()
    assert config.CourseDirectory.root == str(ROOT)
    assert config.CourseDirectory.source_directory == "assignments"
    assert config.CourseDirectory.release_directory == "release"
    assert config.CourseDirectory.course_id == "miniflow-course"
    assert config.OverwriteCells.add_missing_cells is True
    assert config.Execute.timeout >= 120


def test_numpy_warnings_do_not_zero_a_test_cell_but_other_stderr_does():
    # nbgrader gives 0 to a test cell with any stderr output.
    warning = "/home/s/miniflow/layers.py:52: RuntimeWarning: overflow encountered in exp\n  e = np.exp(-x)\n"
    cell = nbformat.v4.new_code_cell(
        "# Test: ...",
        metadata={
            "nbgrader": {
                "grade": True,
                "grade_id": "t",
                "points": 1,
                "locked": True,
                "solution": False,
                "schema_version": 3,
            }
        },
    )
    cell.outputs = [new_output("stream", name="stderr", text=warning)]
    nb = nbformat.v4.new_notebook(cells=[cell])
    cleaned, _ = IgnorePattern(config=course_config()).preprocess(copy.deepcopy(nb), {})
    assert determine_grade(cleaned.cells[0]) == (1, 1)

    cell.outputs = [new_output("stream", name="stderr", text="something went wrong\n")]
    cleaned, _ = IgnorePattern(config=course_config()).preprocess(copy.deepcopy(nb), {})
    assert determine_grade(cleaned.cells[0]) == (0, 1)


# The ungraded cells that show the widgets and the self-check. They are plain cells, without
# nbgrader metadata: students may change their values, and nothing is graded from them.
WIDGET_CALLS = ("GradientFlow(", "TrainingView(", "Playground(", "miniflow.check()", "watch_training(")
WIDGET_CELLS = {  # notebook: the widget of each widget cell, in order
    "01-chain-rule": ["GradientFlow", "GradientFlow", "miniflow.check"],
    "02-linear-and-sigmoid": ["GradientFlow", "miniflow.check"],
    "03-softmax-and-losses": ["GradientFlow", "miniflow.check"],
    "04-gradient-descent": ["miniflow.check", "TrainingView", "Playground"],
    "05-mnist": ["miniflow.check", "TrainingView", "watch_training"],
}


def widget_cells(nb):
    return [
        cell for cell in nb.cells if cell.cell_type == "code" and any(w in cell.source for w in WIDGET_CALLS)
    ]


def widget_of(cell):
    return next(w for w in WIDGET_CALLS if w in cell.source).rstrip("(").removesuffix("()")


def names_bound(source):
    """The names a cell's code assigns, defines or imports (function parameters included)."""
    bound = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.ExceptHandler)) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return bound


def names_read_first(source):
    """The names a cell's code reads without binding them itself: what it needs from earlier cells."""
    tree = ast.parse(source)
    read = {
        node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }
    return read - names_bound(source)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_widget_and_self_check_cells_are_plain_ungraded_cells(name):
    cells = widget_cells(read(name))
    assert [widget_of(cell) for cell in cells] == WIDGET_CELLS[name]
    for cell in cells:
        assert "nbgrader" not in cell.metadata, cell.source[:80]
        assert "raise NotImplementedError" not in cell.source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_widget_cells_leave_the_names_of_later_test_cells_alone(name):
    # A student who changes a widget cell (as they are invited to) must not break a test cell below it.
    nb = read(name)
    widget_ids = {cell.id for cell in widget_cells(nb)}
    cells = nb.cells
    for index, cell in enumerate(cells):
        if cell.id not in widget_ids:
            continue
        later_needs = set().union(
            *(
                names_read_first(later.source)
                for later in cells[index + 1 :]
                if nbgrader_meta(later).get("grade")
            )
        )
        assert not names_bound(cell.source) & later_needs, cell.source[:200]


def test_notebook_1_introduces_the_self_check_and_the_gradient_flow_view():
    prose = "\n".join(cell.source for cell in read("01-chain-rule").cells if cell.cell_type == "markdown")
    assert "miniflow.check()" in prose
    assert "not implemented yet" in prose
    assert "✓" in prose and "4 + (-5) = -1" in prose


# The students' README.md and requirements.txt, copied into the release.

README = ASSIGNMENT / "README.md"
REQUIREMENTS = ASSIGNMENT / "requirements.txt"


def requirement_lines():
    lines = [line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines()]
    return [line for line in lines if line]


def requirements():
    """The requirements named by distribution (not the local folders, such as ./jupyterlab-miniflow)."""
    return [Requirement(line) for line in requirement_lines() if not line.startswith("./")]


def test_the_requirements_install_the_courses_jupyterlab_extension_from_the_release():
    folders = [line for line in requirement_lines() if line.startswith("./")]
    assert folders == ["./jupyterlab-miniflow"]
    assert (ROOT / "release" / "miniflow-lab" / folders[0] / "pyproject.toml").is_file()


def test_the_readme_says_what_to_edit_how_to_check_and_how_grading_works():
    text = README.read_text()
    for promise in [
        "Python 3.10",
        "pip install -r requirements.txt",
        "jupyter lab",
        "miniflow/arithmetic.py",
        "miniflow/layers.py",
        "miniflow/losses.py",
        "Never copy, split or delete a test cell",
        "metadata",
        "miniflow.check()",
        "Validate",
        "the whole folder",
        "hidden tests",
        "~/.cache/miniflow/mnist",
        "MINIFLOW_DATA",
        "NotImplementedError",
        "autoreload",
        "MiniflowError",
    ]:
        assert promise in text, promise
    for path in re.findall(r"`(miniflow/\w+\.py)`", text):
        assert (STARTER.parent / path).is_file(), path
    for name in NOTEBOOKS:
        assert f"`{name}.ipynb`" in text


def test_the_readme_quotes_a_real_miniflow_error():
    quoted = re.search(
        r"`(Linear#12: backward returned a gradient[^`]*)`", README.read_text().replace("\n  ", " ")
    )
    assert quoted, "the README's MiniflowError example"
    mf = load_package(REFERENCE, "miniflow_reference")
    X, W, b = mf.Input(name="X"), mf.Input(name="W"), mf.Input(name="b")

    def bias_gradient_as_a_row(self, grad, X, W, b):
        return grad @ W.T, X.T @ grad, grad.sum(axis=0, keepdims=True)

    layer = type("Linear", (mf.Linear,), {"backward": bias_gradient_as_a_row})(X, W, b)
    feed = {X: np.ones((3, 2)), W: np.ones((2, 2)), b: np.zeros(2)}
    with pytest.raises(mf.MiniflowError) as raised:
        mf.value_and_grad(layer, feed, wrt=[X, W, b])
    assert re.sub(r"#\d+", "#12", str(raised.value)).startswith(quoted.group(1))


def test_requirements_cover_what_the_notebooks_and_the_starter_import():
    required = {req.name.lower() for req in requirements()}
    essentials = {"numpy", "matplotlib", "scikit-learn", "jupyterlab", "ipywidgets", "anywidget", "nbgrader"}
    assert essentials <= required
    assert all(any(spec.operator == ">=" for spec in req.specifier) for req in requirements())
    imported = set()
    for name in NOTEBOOKS:
        for cell in read(name).cells:
            if cell.cell_type == "code":
                code = "\n".join(line for line in cell.source.splitlines() if not line.startswith("%"))
                imported |= top_level_imports(code)
    for path in STARTER.rglob("*.py"):
        imported |= top_level_imports(path.read_text())
    distributions = importlib.metadata.packages_distributions()
    provided = {"ipython", "traitlets"}  # by jupyterlab's kernel and by ipywidgets
    for module in sorted(imported - set(sys.stdlib_module_names) - {"miniflow"}):
        names = {dist.lower() for dist in distributions.get(module, [module])}
        assert names & (required | provided), f"{module} is imported but not in requirements.txt"


def top_level_imports(source):
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module.split(".")[0])
    return modules


def test_the_course_environment_meets_the_students_requirements():
    for req in requirements():
        installed = Version(importlib.metadata.version(req.name))
        assert req.specifier.contains(installed, prereleases=True), f"{req.name} {installed} is not {req}"


# Slow tests: the notebooks executed.


def execute(nb, folder, package, *, grading=False, allow_errors=False):
    """Run `nb` in `folder` beside a copy of `package` (as miniflow/); return the executed notebook.

    grading=True sets NBGRADER_EXECUTION as nbgrader's autograde does.
    """
    shutil.copytree(package, folder / "miniflow", ignore=shutil.ignore_patterns("__pycache__"))
    env = {key: value for key, value in os.environ.items() if key != "NBGRADER_EXECUTION"}
    env["MINIFLOW_DATA"] = str(MNIST)
    if grading:
        env["NBGRADER_EXECUTION"] = "autograde"
    client = NotebookClient(nb, kernel_name="python3", timeout=600, allow_errors=allow_errors)
    # The keywords go to the kernel's start; its own stderr (a warning about TCP) is of no interest.
    client.execute(cwd=str(folder), env=env, stderr=subprocess.DEVNULL)
    return nb


def errors(cell):
    return [output for output in cell.get("outputs", []) if output.output_type == "error"]


def assert_widget_cells_run_quietly(nb):
    """Every widget and self-check cell ran, showed something, and raised and wrote to stderr nothing."""
    for cell in widget_cells(nb):
        assert cell.execution_count is not None, cell.source[:200]
        problems = [out for out in cell.outputs if out.output_type == "error" or out.get("name") == "stderr"]
        assert not problems, f"{cell.source[:200]}\n{problems}"
        if not re.search(r"^def ", cell.source, flags=re.M):  # a cell defining a helper shows nothing
            assert cell.outputs, f"shows nothing: {cell.source[:200]}"


def pictures(nb, widget="GradientFlow"):
    """{cell id: the static SVG picture} of the cells that show `widget`."""
    return {
        cell.id: next(
            out.data["image/svg+xml"] for out in cell.outputs if "image/svg+xml" in out.get("data", {})
        )
        for cell in widget_cells(nb)
        if widget_of(cell) == widget
    }


def texts_of_role(svg, role):
    root = ET.fromstring(svg)
    return [
        own_text(text)
        for text in root.iter("{http://www.w3.org/2000/svg}text")
        if text.get("data-role") == role
    ]


def scores(nb):
    """{grade_id: (score, max_score)} as nbgrader's autograde computes them."""
    nb, _ = IgnorePattern(config=course_config()).preprocess(nb, {})
    return {nbgrader_meta(cell)["grade_id"]: determine_grade(cell) for cell in grade_cells(nb)}


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_runs_top_to_bottom_with_the_reference(name, tmp_path):
    nb = execute(read(name), tmp_path, REFERENCE)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None
        assert not errors(cell), cell.source[:200]
        if nbgrader_meta(cell).get("grade"):
            stderr = [out.text for out in cell.outputs if out.get("name") == "stderr"]
            assert not stderr, f"{nbgrader_meta(cell)['grade_id']} wrote to stderr: {stderr}"
    assert all(score == maximum for score, maximum in scores(nb).values())
    assert_widget_cells_run_quietly(nb)
    for svg in pictures(nb).values():  # every gradient agrees with its finite-difference estimate
        checks = texts_of_role(svg, "numeric")
        assert checks and all(text.startswith("✓") for text in checks), checks
    if name == "01-chain-rule":  # as the prose before the picture says
        assert node_texts(pictures(nb)["nb1-flow"], "x")["grad"] == "grad 4 + (-5) = -1"
        k_graph = pictures(nb)["nb1-flow-k"]
        assert [node_texts(k_graph, v)["grad"] for v in "xyz"] == ["grad -4", "grad -4", "grad 3"]


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_nbgrader_validate_passes_with_the_reference(name, tmp_path):
    shutil.copy(ASSIGNMENT / f"{name}.ipynb", tmp_path)
    shutil.copytree(REFERENCE, tmp_path / "miniflow", ignore=shutil.ignore_patterns("__pycache__"))
    bin_dir = Path(sys.executable).parent
    env = {key: value for key, value in os.environ.items() if key != "NBGRADER_EXECUTION"}
    env.update(MINIFLOW_DATA=str(MNIST), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    # Run from the course root, so that nbgrader_config.py applies.
    result = subprocess.run(
        [str(bin_dir / "nbgrader"), "validate", str(tmp_path / f"{name}.ipynb")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert "Success! Your notebook passes all the tests." in result.stdout, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_release_with_the_starter_only_says_not_implemented(name, tmp_path):
    nb = execute(as_released(read(name)), tmp_path, STARTER, allow_errors=True)
    messages = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None, "the kernel stopped before the end"
        for error in errors(cell):
            assert error.ename == "NotImplementedError", f"{error.ename}: {error.evalue} in\n{cell.source}"
            messages.append(error.evalue)
        if nbgrader_meta(cell).get("grade") and cell.source.strip().count("\n") > 0:
            assert errors(cell), f"{nbgrader_meta(cell)['grade_id']} passes without any work done"
    for exercise in STUBBED.get(name, []):
        assert any(message.startswith(f"{exercise}:") for message in messages), exercise
    assert_widget_cells_run_quietly(nb)  # the unwritten nodes show as "not implemented yet" instead
    for svg in pictures(nb).values():
        assert any("not implemented yet" in text for text in texts_of_role(svg, "status")), svg[:300]


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_an_empty_submission_scores_zero(name, tmp_path):
    nb = execute(as_submitted_empty(read(name)), tmp_path, STARTER, grading=True, allow_errors=True)
    for cell in grade_cells(nb):
        assert [error.ename for error in errors(cell)] == ["NotImplementedError"], cell.source[:300]
    assert all(score == 0 for score, _ in scores(nb).values())
    assert_widget_cells_run_quietly(nb)


# Classic bugs of the original lab and of students, planted in a copy of the reference package or in a
# notebook's solution cell. Each must make the test cells in `fails` score 0; the cells in
# `passes` still pass (often the lab's own asserts, which cannot see the bug).
PACKAGE_BUGS = {
    "Mul.backward ignores grad": (
        "01-chain-rule",
        "arithmetic.py",
        "Mul.backward",
        """
        grads = []
        for i in range(len(values)):
            product = np.ones(np.shape(values[i]))
            for j, value in enumerate(values):
                if j != i:
                    product = product * value
            grads.append(product)
        return grads
        """,
        {"mul_lab_dummygrad", "mul_backward"},
        {"mul_lab_f", "mul_three_inputs"},
    ),
    "Mul.backward divides the product by each input": (
        "01-chain-rule",
        "arithmetic.py",
        "Mul.backward",
        """
        product = values[0]
        for value in values[1:]:
            product = product * value
        return [grad * product / value for value in values]
        """,
        {"mul_backward"},
        {"mul_lab_f", "mul_lab_dummygrad", "mul_three_inputs"},
    ),
    "Mul.backward skips an input used twice": (
        "01-chain-rule",
        "arithmetic.py",
        "Mul.backward",
        """
        grads = []
        for value in values:
            grad_i = grad
            for other in values:
                if other is not value:
                    grad_i = grad_i * other
            grads.append(grad_i)
        return grads
        """,
        {"mul_backward_fanout"},
        {"mul_lab_f", "mul_lab_dummygrad", "mul_backward"},
    ),
    "Linear bias gradient summed over the wrong axis": (
        "02-linear-and-sigmoid",
        "layers.py",
        "Linear.backward",
        """
        return grad @ W.T, X.T @ grad, grad.sum(axis=1).reshape(np.shape(b))
        """,
        {"linear_backward_db", "linear_lab_dummygrad"},
        {"linear_lab_ones", "linear_forward"},
    ),
    "Linear bias gradient not given b's shape": (
        "02-linear-and-sigmoid",
        "layers.py",
        "Linear.backward",
        """
        return grad @ W.T, X.T @ grad, grad.sum(axis=0)
        """,
        {"linear_bias_shape", "linear_lab_ones"},
        {"linear_lab_dummygrad", "linear_backward_db"},
    ),
    "Linear input gradient not transposed": (
        "02-linear-and-sigmoid",
        "layers.py",
        "Linear.backward",
        """
        return grad @ W, X.T @ grad, grad.sum(axis=0).reshape(np.shape(b))
        """,
        {"linear_backward_dX", "linear_lab_ones"},
        {"linear_forward"},
    ),
    "Linear.backward ignores grad": (
        "02-linear-and-sigmoid",
        "layers.py",
        "Linear.backward",
        """
        ones = np.ones_like(grad)
        return ones @ W.T, X.T @ ones, ones.sum(axis=0).reshape(np.shape(b))
        """,
        {"linear_lab_dummygrad", "linear_backward_dX", "linear_backward_dW"},
        {"linear_lab_ones"},
    ),
    "Linear turns float32 into float64": (
        "02-linear-and-sigmoid",
        "layers.py",
        "Linear.forward",
        """
        return np.asarray(X, dtype=np.float64) @ W + b
        """,
        {"linear_float32"},
        {"linear_forward", "linear_lab_ones"},
    ),
    "Sigmoid overflows in exp": (
        "02-linear-and-sigmoid",
        "layers.py",
        "Sigmoid.forward",
        """
        return 1 / (1 + np.exp(-x))
        """,
        {"sigmoid_stability"},
        {"sigmoid_forward", "sigmoid_lab_ones"},
    ),
    "Sigmoid as exp(x) / (1 + exp(x))": (
        "02-linear-and-sigmoid",
        "layers.py",
        "Sigmoid.forward",
        """
        return np.exp(x) / (1 + np.exp(x))
        """,
        {"sigmoid_stability"},
        {"sigmoid_forward", "sigmoid_lab_ones"},
    ),
    "Sigmoid.backward ignores grad": (
        "02-linear-and-sigmoid",
        "layers.py",
        "Sigmoid.backward",
        """
        return self.value * (1 - self.value)
        """,
        {"sigmoid_lab_dummygrad", "sigmoid_backward"},
        {"sigmoid_lab_ones"},
    ),
    "softmax without subtracting the max": (
        "03-softmax-and-losses",
        "losses.py",
        "CrossEntropyWithSoftmax._softmax",
        """
        e = np.exp(x)
        return e / e.sum(axis=1, keepdims=True)
        """,
        {"softmax_stability"},
        {"softmax_example", "cross_entropy_lab", "softmax_rows"},
    ),
    "softmax normalised over the batch": (
        "03-softmax-and-losses",
        "losses.py",
        "CrossEntropyWithSoftmax._softmax",
        """
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=0, keepdims=True)
        """,
        {"softmax_rows", "softmax_example"},
        # the reference's forward keeps its own probabilities for backward
        {"cross_entropy_forward", "cross_entropy_backward"},
    ),
    "cross-entropy summed instead of averaged": (
        "03-softmax-and-losses",
        "losses.py",
        "CrossEntropyWithSoftmax.forward",
        """
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.probabilities = np.exp(log_probs)
        return -log_probs[np.arange(len(labels)), labels].sum()
        """,
        {"cross_entropy_forward"},
        {"cross_entropy_lab", "softmax_rows"},
    ),
    "cross-entropy takes the log of a probability": (
        "03-softmax-and-losses",
        "losses.py",
        "CrossEntropyWithSoftmax.forward",
        """
        self.probabilities = self._softmax(logits)
        return -np.log(self.probabilities[np.arange(len(labels)), labels]).mean()
        """,
        {"cross_entropy_stability"},
        {"cross_entropy_lab", "cross_entropy_forward"},
    ),
    "cross-entropy gradient not divided by the batch size": (
        "03-softmax-and-losses",
        "losses.py",
        "CrossEntropyWithSoftmax.backward",
        """
        d_logits = self._softmax(logits)
        d_logits[np.arange(len(labels)), labels] -= 1
        return grad * d_logits, None
        """,
        {"cross_entropy_backward"},
        {"cross_entropy_lab", "cross_entropy_forward"},
    ),
    "cross-entropy gradient ignores grad": (
        "03-softmax-and-losses",
        "losses.py",
        "CrossEntropyWithSoftmax.backward",
        """
        d_logits = self._softmax(logits)
        d_logits[np.arange(len(labels)), labels] -= 1
        return d_logits / len(labels), None
        """,
        {"cross_entropy_upstream"},
        {"cross_entropy_lab", "cross_entropy_backward"},
    ),
    "cross-entropy gradient in float64": (
        "03-softmax-and-losses",
        "losses.py",
        "CrossEntropyWithSoftmax.backward",
        """
        d_logits = self._softmax(np.asarray(logits, dtype=np.float64))
        d_logits[np.arange(len(labels)), labels] -= 1
        return grad * d_logits / len(labels), None
        """,
        {"cross_entropy_float32"},
        {"cross_entropy_lab", "cross_entropy_backward"},
    ),
}

NOTEBOOK_BUGS = {
    "run_epoch does not shuffle": (
        "04-gradient-descent",
        {
            "run_epoch_answer": """
        losses = []
        for start in range(0, len(X_data), batch_size):
            X.value = X_data[start : start + batch_size]
            y.value = y_data[start : start + batch_size]
            losses.append(forward_and_backward(graph))
            sgd_update(trainables, learning_rate)
        return float(np.mean(losses))
        """
        },
        {"run_epoch_batches"},
        {"run_epoch_steps", "regression_trained"},
    ),
    "run_epoch samples batches with replacement": (
        "04-gradient-descent",
        {
            "run_epoch_answer": """
        losses = []
        for _ in range(len(X_data) // batch_size):
            rows = rng.integers(0, len(X_data), size=batch_size)
            X.value, y.value = X_data[rows], y_data[rows]
            losses.append(forward_and_backward(graph))
            sgd_update(trainables, learning_rate)
        return float(np.mean(losses))
        """
        },
        {"run_epoch_batches"},
        {"regression_trained"},
    ),
    "run_epoch returns the sum of the losses": (
        "04-gradient-descent",
        {
            "run_epoch_answer": """
        order = rng.permutation(len(X_data))
        total = 0.0
        for start in range(0, len(X_data), batch_size):
            rows = order[start : start + batch_size]
            X.value, y.value = X_data[rows], y_data[rows]
            total += forward_and_backward(graph)
            sgd_update(trainables, learning_rate)
        return float(total)
        """
        },
        {"run_epoch_steps"},
        {"run_epoch_batches", "regression_retrained"},
    ),
    "train_epoch never steps, and the hidden layer starts at zero": (
        "05-mnist",
        {
            "train_epoch_answer": """
            losses = []
            for X_batch, y_batch in batches(X_data, y_data, batch_size, rng):
                loss, _ = value_and_grad(net.loss, net.feed(X_batch, y_batch), wrt=list(net.weights))
                losses.append(loss)
            return float(np.mean(losses))
            """,
            "mlp_network_answer": """
            X, y = Input(), Input()
            W1, b1, W2, b2 = Input(), Input(), Input(), Input()
            loss = CrossEntropyWithSoftmax(Linear(Sigmoid(Linear(X, W1, b1)), W2, b2), y)
            weights = {
                W1: np.zeros((n_features, n_hidden), dtype=np.float32),
                b1: np.zeros(n_hidden, dtype=np.float32),
                W2: np.zeros((n_hidden, n_classes), dtype=np.float32),
                b2: np.zeros(n_classes, dtype=np.float32),
            }
            return Network(X, y, loss, weights)
            """,
        },
        # (zero weights are a valid start: the structure test accepts them, and training catches them)
        {"train_epoch_learns", "train_epoch_steps", "mlp_accuracy"},
        {"softmax_accuracy", "mlp_network_built", "mlp_network_structure"},
    ),
}


def replace_solution(source, body, where=None):
    """Replace a `### BEGIN SOLUTION` region of `source` with `body`, indented like the markers.

    `where` ("Class.method") picks the region inside that method; None picks the only region.
    """
    lines = source.splitlines(keepends=True)
    regions, owner = [], {}
    for number, line in enumerate(lines):
        if match := re.match(r"class (\w+)", line):
            owner["class"] = match.group(1)
        if match := re.match(r"\s+def (\w+)", line):
            owner["method"] = match.group(1)
        if line.strip() == "### BEGIN SOLUTION":
            regions.append((number, f"{owner.get('class')}.{owner.get('method')}"))
    chosen = [number for number, name in regions if where in (None, name)]
    assert len(chosen) == 1, f"{where}: found {regions}"
    start = chosen[0]
    end = next(number for number in range(start, len(lines)) if lines[number].strip() == "### END SOLUTION")
    indent = re.match(r"\s*", lines[start]).group(0)
    planted = textwrap.indent(textwrap.dedent(body).strip("\n") + "\n", indent)
    return "".join(lines[: start + 1]) + planted + "".join(lines[end:])


def failing_and_passing(nb, fails, passes):
    graded = scores(nb)
    assert fails | passes <= set(graded)
    still_passing = sorted(grade_id for grade_id in fails if graded[grade_id][0] > 0)
    now_failing = sorted(grade_id for grade_id in passes if graded[grade_id][0] == 0)
    return still_passing, now_failing


@pytest.mark.slow
@pytest.mark.parametrize("bug", PACKAGE_BUGS)
def test_hidden_tests_catch_a_bug_in_the_package(bug, tmp_path):
    name, module, where, body, fails, passes = PACKAGE_BUGS[bug]
    package = tmp_path / "buggy"
    shutil.copytree(REFERENCE, package, ignore=shutil.ignore_patterns("__pycache__"))
    path = package / module
    path.write_text(replace_solution(path.read_text(), body, where))
    (tmp_path / "run").mkdir()
    nb = execute(read(name), tmp_path / "run", package, grading=True, allow_errors=True)
    assert failing_and_passing(nb, fails, passes) == ([], [])


@pytest.mark.slow
@pytest.mark.parametrize("bug", NOTEBOOK_BUGS)
def test_hidden_tests_catch_a_bug_in_a_solution_cell(bug, tmp_path):
    name, bodies, fails, passes = NOTEBOOK_BUGS[bug]
    bodies = dict(bodies)  # popped below; the bugs are shared with tests/test_probes.py
    nb = read(name)
    for cell in nb.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id in bodies:
            cell.source = replace_solution(cell.source, bodies.pop(grade_id))
    assert not bodies, f"no solution cells {sorted(bodies)}"
    nb = execute(nb, tmp_path, REFERENCE, grading=True, allow_errors=True)
    assert failing_and_passing(nb, fails, passes) == ([], [])
