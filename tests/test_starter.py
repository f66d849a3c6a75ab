"""The students' starter package: generated from solutions/, complete but for the exercises.

Needs the repository root on sys.path for `autograder` (run `python -m pytest`
from the root, or install the project).
"""

import ast
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REFERENCE, ROOT, STARTER

from autograder.starter import StarterError, build_starter, stale_files, stub_source

BEGIN, END, HINT = "### BEGIN SOLUTION", "### END SOLUTION", "# hint:"


def solution_regions():
    """(file path, qualified method name, hint, code lines) of every solution region in solutions/.

    Read from the source directly, so that these tests do not trust the generator.
    """
    regions = []
    for path in sorted(REFERENCE.rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        methods = [  # (first line, last line, qualified name), 1-based
            (method.lineno, method.end_lineno, f"{klass.name}.{method.name}")
            for klass in ast.parse(source).body
            if isinstance(klass, ast.ClassDef)
            for method in klass.body
            if isinstance(method, ast.FunctionDef)
        ]
        for begin in [i for i, line in enumerate(lines) if line.strip() == BEGIN]:
            end = next(i for i in range(begin, len(lines)) if lines[i].strip() == END)
            (name,) = [name for first, last, name in methods if first <= begin + 1 <= last]
            hint = lines[begin + 1].strip().removeprefix(HINT).strip()
            regions.append((str(path.relative_to(REFERENCE)), name, hint, lines[begin + 2 : end]))
    return regions


def stub_calls(pkg):
    """One call per exercise, with valid arguments, keyed by '<Class>.<method>'."""
    x, y, z = pkg.Input(), pkg.Input(), pkg.Input()
    mul, linear, sigmoid = pkg.Mul(x, y), pkg.Linear(x, y, z), pkg.Sigmoid(x)
    cross_entropy = pkg.CrossEntropyWithSoftmax(x, y)
    X, W, b, grad = np.ones((4, 3)), np.ones((3, 2)), np.ones(2), np.ones((4, 2))
    logits, labels = np.zeros((4, 3)), np.array([0, 1, 2, 0])
    sigmoid.value = np.full((4, 3), 0.5)  # Sigmoid.backward may read its own value
    cross_entropy.probabilities = np.full((4, 3), 1 / 3)  # what the reference's forward keeps
    return {
        "Mul.forward": lambda: mul.forward(X, X),
        "Mul.backward": lambda: mul.backward(X, X, X),
        "Linear.forward": lambda: linear.forward(X, W, b),
        "Linear.backward": lambda: linear.backward(grad, X, W, b),
        "Sigmoid.forward": lambda: sigmoid.forward(X),
        "Sigmoid.backward": lambda: sigmoid.backward(X, X),
        "CrossEntropyWithSoftmax._softmax": lambda: cross_entropy._softmax(logits),
        "CrossEntropyWithSoftmax.forward": lambda: cross_entropy.forward(logits, labels),
        "CrossEntropyWithSoftmax.backward": lambda: cross_entropy.backward(1.0, logits, labels),
    }


EXERCISES = [
    "Mul.forward",
    "Mul.backward",
    "Linear.forward",
    "Linear.backward",
    "Sigmoid.forward",
    "Sigmoid.backward",
    "CrossEntropyWithSoftmax._softmax",
    "CrossEntropyWithSoftmax.forward",
    "CrossEntropyWithSoftmax.backward",
]


def test_the_committed_starter_is_not_stale(tmp_path):
    assert stale_files(REFERENCE, STARTER, tmp_path / "miniflow") == []


def test_the_starter_has_the_reference_public_api(mf, starter):
    assert Path(starter.__file__).parent == STARTER
    assert starter.__all__ == mf.__all__
    for name in mf.__all__:
        ours, theirs = getattr(starter, name), getattr(mf, name)
        if inspect.isclass(theirs) and issubclass(theirs, Exception):
            assert [c.__name__ for c in ours.__mro__] == [c.__name__ for c in theirs.__mro__]
            continue
        assert inspect.signature(ours) == inspect.signature(theirs), name
        if inspect.isclass(theirs):
            methods = dict(inspect.getmembers(theirs, inspect.isfunction))
            assert methods.keys() == dict(inspect.getmembers(ours, inspect.isfunction)).keys(), name
            for method in methods:
                assert inspect.signature(getattr(ours, method)) == inspect.signature(methods[method]), (
                    f"{name}.{method}"
                )


def test_the_exercises_are_the_ones_the_design_lists():
    assert sorted(name for _, name, _, _ in solution_regions()) == sorted(EXERCISES)


@pytest.mark.parametrize("exercise", EXERCISES)
def test_each_stub_raises_notimplementederror_naming_the_exercise(mf, starter, exercise):
    (hint,) = [hint for _, name, hint, _ in solution_regions() if name == exercise]
    stub_calls(mf)[exercise]()  # the arguments are valid: the reference runs

    with pytest.raises(NotImplementedError) as raised:
        stub_calls(starter)[exercise]()

    message = str(raised.value)
    assert message.startswith(f"{exercise}:")
    assert hint in message


def test_an_unwritten_exercise_surfaces_through_value_and_grad(starter):
    x, y = starter.Input("x"), starter.Input("y")

    with pytest.raises(NotImplementedError, match=r"^Mul\.forward:"):
        starter.value_and_grad(starter.Mul(x, y), {x: 2.0, y: 3.0}, [x])


def given_parts_at_work(pkg):
    """Everything a student does not write, used on graphs of Add and MSE only."""
    x, y, z = pkg.Input("x"), pkg.Input("y"), pkg.Input("z")
    total = pkg.Add(x, y, z)
    dummy = pkg.DummyGrad(total)
    value, grads = pkg.value_and_grad(
        dummy, {x: 1.0, y: np.array([2.0, -1.0]), z: 0.5, dummy: [3.0, 4.0]}, [x, y]
    )

    # Fit an offset b so that data + b matches the targets: the walkthrough's loop.
    data, offset, targets = pkg.Input("data"), pkg.Input("b"), pkg.Input("targets")
    pkg.MSE(targets, pkg.Add(data, offset))  # the last node created: graph[-1]
    offset_value = np.zeros(3)
    feed_dict = {
        data: np.arange(12.0).reshape(4, 3),
        offset: offset_value,
        targets: np.arange(12.0).reshape(4, 3) + 2,
    }
    graph = pkg.topological_sort(feed_dict)
    losses = []
    for _ in range(50):
        losses.append(float(pkg.forward_and_backward(graph)))
        pkg.sgd_update([offset], learning_rate=1.0)
    return value, grads, losses, offset_value


def test_the_given_parts_work_in_the_starter(mf, starter):
    value, grads, losses, offset = given_parts_at_work(starter)

    np.testing.assert_array_equal(value, [3.5, 0.5])
    assert grads[0] == 7.0
    np.testing.assert_array_equal(grads[1], [3.0, 4.0])
    assert losses[0] == 4.0 and losses[-1] < 1e-6
    np.testing.assert_allclose(offset, [2.0, 2.0, 2.0], rtol=1e-4)
    reference = given_parts_at_work(mf)
    assert losses == reference[2]


def code_of(line):
    """A line without indentation or comment marks: commented-out code still counts."""
    return line.strip().lstrip("#").strip()


def lines_outside_solutions(folder):
    """The lines (see code_of) of the .py files in `folder` that lie outside every solution region."""
    lines = set()
    for path in folder.rglob("*.py"):
        inside = False
        for line in path.read_text().splitlines():
            inside = inside or line.strip() == BEGIN
            if not inside:
                lines.add(code_of(line))
            inside = inside and line.strip() != END
    return lines


def test_no_line_of_a_solution_reaches_the_starter():
    starter_lines = lines_outside_solutions(STARTER)
    # A solution line that is also given code elsewhere (Add's loop, say) gives nothing away.
    given_lines = lines_outside_solutions(REFERENCE)
    leaked = [
        (file, name, code_of(line))
        for file, name, _, code in solution_regions()
        for line in code
        if code_of(line) in starter_lines - given_lines
    ]
    assert leaked == []
    assert all(code for _, _, _, code in solution_regions())


BROKEN_SOURCES = {
    "unclosed region": (
        "def area(r):\n    ### BEGIN SOLUTION\n    # hint: pi r squared\n    return 3.14 * r * r\n",
        r"^broken\.py:2: ",
    ),
    "missing hint": (
        "import math\n\n\ndef area(r):\n    ### BEGIN SOLUTION\n"
        "    return math.pi * r * r\n    ### END SOLUTION\n",
        r"^broken\.py:[56]: .*# hint:",
    ),
    "region outside a function": (
        "import math\n\n### BEGIN SOLUTION\n# hint: a constant\nTAU = 2 * math.pi\n### END SOLUTION\n",
        r"^broken\.py:3: .*function",
    ),
    "end without begin": ("def area(r):\n    return r\n    ### END SOLUTION\n", r"^broken\.py:3: "),
    "nested regions": (
        "def area(r):\n    ### BEGIN SOLUTION\n    # hint: a\n    ### BEGIN SOLUTION\n    # hint: b\n"
        "    return r\n    ### END SOLUTION\n",
        r"^broken\.py:4: ",
    ),
}


@pytest.mark.parametrize("case", BROKEN_SOURCES)
def test_generator_errors_name_the_file_and_line(case):
    source, message = BROKEN_SOURCES[case]

    with pytest.raises(StarterError, match=message):
        stub_source(source, "broken.py")


def test_build_starter_names_the_solution_file_at_fault(tmp_path):
    solution = tmp_path / "solution"
    shutil.copytree(REFERENCE, solution, ignore=shutil.ignore_patterns("__pycache__"))
    (solution / "extra.py").write_text(BROKEN_SOURCES["unclosed region"][0])

    with pytest.raises(StarterError, match=rf"^{solution / 'extra.py'}:2: "):
        build_starter(solution, tmp_path / "starter")


def build_starter_cli(root, *options):
    return subprocess.run(
        [sys.executable, "-m", "autograder", "--root", str(root), "build-starter", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_the_check_command_exits_1_when_stale_and_0_when_fresh(tmp_path):
    solution = tmp_path / "solutions" / "miniflow"
    shutil.copytree(REFERENCE, solution, ignore=shutil.ignore_patterns("__pycache__"))
    assert build_starter_cli(tmp_path).returncode == 0

    fresh = build_starter_cli(tmp_path, "--check")
    with (solution / "optim.py").open("a") as optim:
        optim.write("\n# a change the starter has not seen\n")
    stale = build_starter_cli(tmp_path, "--check")

    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "optim.py" in stale.stdout
