"""Tests written once: what a test cell records in the kernel, and how the grading process judges it.

Fast tests run the recorder in this process on a cell's source (as the kernel
does), and judge the record against a reference record made the same way.
Slow tests run real kernels: the reference's records of every source notebook,
a kernel that patches numpy and the recorder, and an instructor's new hidden
test graded with no Python change.
"""

import ast
import csv
import json
import os
import re
import shutil
import warnings
from collections import namedtuple

import nbformat
import numpy as np
import pytest
from conftest import MNIST, ROOT
from nbformat.v4 import new_code_cell

from autograder import recording, release, rules, testcells
from autograder.grade import Course, Settings, grade
from autograder.submissions import materialise_sample
from autograder.testcells import BadRecordError, ObjectRecord, read_events, read_record_file


class FakeShell:
    """What recording.install needs of IPython: a namespace and a list of AST transformers."""

    def __init__(self):
        self.user_ns = {}
        self.ast_transformers = []


def record(source, namespace, tmp_path, grade_id="a_test", rules=()):
    """Run `source` as a grading kernel would (armed recorder); return (its record text, its error)."""
    shell = FakeShell()
    recorder = recording.install(shell, str(tmp_path / "records"))
    recorder.arm(grade_id, rules)
    tree = ast.parse(source)
    for transformer in shell.ast_transformers:
        tree = transformer.visit(tree)
    error = None
    try:
        exec(compile(tree, "<cell>", "exec"), {**namespace, **shell.user_ns})
    except Exception as raised:
        error = f"{type(raised).__name__}: {raised}"
    recorder.file.close()
    return (tmp_path / "records" / f"{grade_id}.jsonl").read_text(), error


def verdict(source, student, reference, tmp_path, **directives):
    """Judge `source` run with the `student` namespace against the same source run with `reference`."""
    cell = testcells.TestCell.parse("a_test", source)
    rules = sorted(cell.rules)
    (tmp_path / "ref").mkdir(exist_ok=True)
    (tmp_path / "got").mkdir(exist_ok=True)
    expected, _ = record(source, reference, tmp_path / "ref", rules=rules)
    got, error = record(source, student, tmp_path / "got", rules=rules)
    return cell.judge(read_events(got), read_events(expected), error)


def mul_gradients(upstream, p, q):
    return upstream * q, upstream * p


MUL_TEST = """
# Test: Mul's gradients
rng = np.random.default_rng(21)
for shape in [(4, 3), (6,)]:
    p, q, upstream = rng.normal(size=(3, *shape))
    dp, dq = gradients(upstream, p, q)
    assert np.allclose(dp, upstream * q), "the gradient for p should be grad * q"
    assert np.allclose(dq, upstream * p), "the gradient for q should be grad * p"
"""


def test_the_leaves_are_what_the_grader_cannot_evaluate_itself():
    def leaves(condition, rules=()):
        test = ast.parse(f"assert {condition}").body[0].test
        return [ast.unparse(leaf) for leaf in recording.split(test, rules)]

    assert leaves("np.allclose(dp, upstream * q_value, atol=1e-6)") == ["dp", "upstream", "q_value"]
    assert leaves("abs(path[-1] - 2.2499) < 2e-4") == ["path"]
    assert leaves("gradient_of_f(3, 4, -5) == [-1, 3, 3]") == ["gradient_of_f(3, 4, -5)"]
    assert leaves("value.dtype == np.float32 and grads[2].shape == b.shape") == ["value", "grads", "b"]
    assert leaves("net.weights[W_node].sum() > 0") == ["net.weights[W_node]"]  # not a constant index
    assert leaves("check(net, settings) >= needed", rules=("check",)) == ["check(net, settings)", "needed"]


def test_a_correct_submission_passes_and_a_wrong_one_fails_with_the_asserts_message(tmp_path):
    reference = {"np": np, "gradients": mul_gradients}
    assert verdict(MUL_TEST, reference, reference, tmp_path).passed

    def swapped(upstream, p, q):
        return upstream * p, upstream * q

    failed = verdict(MUL_TEST, {"np": np, "gradients": swapped}, reference, tmp_path)
    assert not failed.passed
    assert failed.message.startswith("the gradient for p should be grad * q: `dp` is 12 of 12 entries differ")


def test_a_ratio_is_named_only_where_it_means_something(tmp_path):
    reference = {"np": np, "gradients": mul_gradients}

    def doubled(upstream, p, q):
        return 2 * upstream * q, 2 * upstream * p

    assert (
        "everywhere 2 times the expected"
        in verdict(MUL_TEST, {"np": np, "gradients": doubled}, reference, tmp_path).message
    )
    scalar = "x = answer()\nassert x == 3, 'the answer is 3'"
    message = verdict(scalar, {"answer": lambda: 6}, {"answer": lambda: 3}, tmp_path).message
    assert "times the expected" not in message and "6, expected 3" in message


def test_nothing_patched_in_the_kernel_passes_a_wrong_answer(tmp_path):
    reference = {"np": np, "gradients": mul_gradients}

    class AlwaysEqual(float):
        def __eq__(self, other):
            return True

        __hash__ = float.__hash__

    class LyingNumpy:
        """np with allclose that says yes to anything, as a student's package can patch it."""

        def __getattr__(self, name):
            return (lambda *args, **kwargs: True) if name == "allclose" else getattr(np, name)

    def zeros(upstream, p, q):
        return np.zeros_like(p), np.zeros_like(q)

    patched = verdict(MUL_TEST, {"np": LyingNumpy(), "gradients": zeros}, reference, tmp_path)
    assert not patched.passed and "`dp` is" in patched.message  # the kernel's asserts all "passed"

    scalar = "x = answer()\nassert x == 3, 'the answer is 3'"
    assert not verdict(scalar, {"answer": lambda: AlwaysEqual(4.0)}, {"answer": lambda: 3}, tmp_path).passed
    assert verdict(scalar, {"answer": lambda: AlwaysEqual(3.0)}, {"answer": lambda: 3}, tmp_path).passed
    assert not verdict(scalar, {"answer": lambda: object()}, {"answer": lambda: 3}, tmp_path).passed


def test_a_forged_record_counts_only_if_it_holds_the_right_answers(tmp_path):
    cell = testcells.TestCell.parse("a_test", MUL_TEST)
    expected, _ = record(MUL_TEST, {"np": np, "gradients": mul_gradients}, tmp_path)
    events = read_events(expected)
    forged = [json.loads(line) for line in expected.splitlines()]
    for event in forged:
        event["leaves"]["0"] = event["leaves"]["1"]  # "dp is upstream", with the kernel's verdict "passed"
    forged_events = read_events("\n".join(json.dumps(event) for event in forged))
    assert not cell.judge(forged_events, events).passed
    assert cell.judge(events[:1], events, "NameError: name 'gradients' is not defined").message == (
        "the test stopped before its check on line 8: NameError: name 'gradients' is not defined"
    )


@pytest.mark.parametrize(
    "line",
    [
        '{"assert": 0, "leaves": {"0": {"array": "|O", "shape": [1], "data": ""}}, "passed": true}',
        '{"assert": 0, "leaves": {"0": {"array": "<f8", "shape": [1000], "data": "AAAA"}}, "passed": true}',
        '{"assert": 0, "leaves": {"0": {"ref": 7}}, "passed": true}',
        '{"assert": 0, "leaves": {"0": {"pickle": "..."}}, "passed": true}',
        '{"assert": 0, "leaves": {"0": {"rule": [{"list": []}, 5]}}, "passed": true}',
        '{"assert": 0, "leaves": {"0": {"rule": [5, {"dict": []}]}}, "passed": true}',
        "[" * 100_000,
        '{"overflow": true}',
    ],
)
def test_a_tampered_record_is_refused(line):
    with pytest.raises(BadRecordError):
        read_events(line)


def test_a_record_file_is_read_safely(tmp_path):
    (tmp_path / "secret").write_text("the hidden tests")
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "secret")
    (tmp_path / "folder.jsonl").mkdir()
    os.mkfifo(tmp_path / "fifo.jsonl")
    (tmp_path / "huge.jsonl").write_text("x" * 2000)
    for name in ("link.jsonl", "folder.jsonl", "fifo.jsonl"):
        with pytest.raises(BadRecordError):
            read_record_file(tmp_path / name)
    with pytest.raises(BadRecordError, match="too large"):
        read_record_file(tmp_path / "huge.jsonl", limit=1000)
    assert read_record_file(tmp_path / "missing.jsonl") is None


def test_values_are_recorded_as_plain_data():
    recorder = recording.Recorder("unused")
    Settings_ = namedtuple("Settings", "learning_rate batch_size")

    class Node:
        def __init__(self, *inbound):
            self.inbound_nodes = list(inbound)

    x = Node()
    loss = Node(Node(x), x)
    values = [
        np.float64(0.5),
        np.float32(1.5),
        np.arange(6, dtype=np.float32).reshape(2, 3),
        (1, [2.0]),
        Settings_(0.1, 32),
        loss,
    ]
    text = json.dumps(
        {"assert": 0, "leaves": {str(i): recorder.plain(v) for i, v in enumerate(values)}, "passed": True}
    )
    leaves = read_events(text)[0].leaves
    assert type(leaves[0]) is float and leaves[1].dtype == np.float32 and np.ndim(leaves[1]) == 0
    assert leaves[2].dtype == np.float32 and leaves[2].shape == (2, 3)
    assert leaves[3] == (1, [2.0])
    assert isinstance(leaves[4], ObjectRecord) and leaves[4].field("batch_size") == 32
    graph = leaves[5]
    assert [node.kind for node in graph.inputs] == ["Node", "Node"]
    assert graph.inputs[0].inputs[0] is graph.inputs[1]  # x, reached twice, is one object


def test_own_values_are_judged_by_the_asserts_alone(tmp_path):
    source = (
        "# grading: own=settings\nsettings = choose()\nassert 1e-4 <= settings['rate'] <= 10, 'out of range'"
    )
    reference = {"choose": lambda: {"rate": 0.1}}
    assert verdict(source, {"choose": lambda: {"rate": 2.0}}, reference, tmp_path).passed
    failed = verdict(source, {"choose": lambda: {"rate": 50.0}}, reference, tmp_path)
    assert failed.message == "out of range: settings['rate'] = 50.0"


def test_an_unknown_directive_or_a_failing_reference_is_the_instructors_error(tmp_path):
    with pytest.raises(testcells.TestDefinitionError, match="unknown grading directive"):
        testcells.TestCell.parse("a_test", "# grading: own=x shiny=1\nassert x")
    cell = testcells.TestCell.parse("a_test", "assert answer() == 3")
    with pytest.raises(testcells.TestDefinitionError):
        cell.judge([], [])


def test_a_warning_does_not_break_recording(tmp_path):
    source = "import warnings\nwarnings.warn('slow')\nassert value() == 1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert verdict(source, {"value": lambda: 1}, {"value": lambda: 1}, tmp_path).passed


# Real kernels


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    release.copy_sources(ROOT, root)
    return root


def add_hidden_test(root):
    """An instructor's new hidden test in notebook 1: Mul of four inputs, written as a cell, nothing else."""
    path = root / "assignments" / release.ASSIGNMENT / "01-chain-rule.ipynb"
    nb = nbformat.read(path, as_version=4)
    source = (
        "# Hidden tests: Mul of four inputs\n### BEGIN HIDDEN TESTS\n"
        "a, b, c, d = (Input() for _ in range(4))\n"
        "value, grads = value_and_grad(Mul(a, b, c, d), {a: 2.0, b: 3.0, c: 5.0, d: 7.0}, wrt=[a, b, c, d])\n"
        "assert np.isclose(value, 210), 'Mul(a, b, c, d) is a * b * c * d'\n"
        "assert np.allclose(grads, [105, 70, 42, 30]), 'each input gets the product of the others'\n"
        "### END HIDDEN TESTS"
    )
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = {
        "grade": True,
        "grade_id": "mul_four_inputs",
        "locked": True,
        "points": 1,
        "schema_version": 3,
        "solution": False,
        "task": False,
    }
    nb.cells.append(cell)
    nbformat.write(nb, path)


@pytest.mark.slow
def test_an_instructors_new_hidden_test_is_graded_trusted_with_no_python_change(course, tmp_path):
    add_hidden_test(course)
    release.build_release(course)
    graded_course = Course(course)
    release_folder = graded_course.folder(graded_course.coursedir.release_directory, ".")
    source_folder = graded_course.folder(graded_course.coursedir.source_directory, ".")
    submissions = tmp_path / "submissions"
    for name in ("reference", "cheater", "mul_first_gradient_only"):
        folder = materialise_sample(name, submissions / name, release_folder, source_folder)
        for path in folder.glob("*.ipynb"):
            if path.stem != "01-chain-rule":
                path.unlink()
    # A kernel-side forgery of the new test's record: the leaves it checks, made up.
    cheat = submissions / "cheater" / "miniflow" / "__init__.py"
    cheat.write_text(cheat.read_text() + "\nimport numpy as _np\n_np.allclose = lambda *a, **k: True\n")

    grade(submissions, tmp_path / "out", graded_course, Settings(workers=2, data=str(MNIST)))

    with open(tmp_path / "out" / "tests.csv", newline="") as file:
        scores = {(row["student_id"], row["test"]): float(row["score"]) for row in csv.DictReader(file)}
    assert scores[("reference", "mul_four_inputs")] == 1
    assert scores[("cheater", "mul_four_inputs")] == 0
    assert scores[("mul_first_gradient_only", "mul_four_inputs")] == 0
    page = (tmp_path / "out" / "feedback" / "mul_first_gradient_only" / "01-chain-rule.html").read_text()
    assert "Mul of four inputs" in page
    assert "[105, 70, 42, 30]" not in page  # the hidden test's code stays hidden


@pytest.mark.slow
def test_every_test_cell_of_the_source_notebooks_passes_with_the_reference(course, tmp_path, monkeypatch):
    """The reference's records (what grading compares with) exist for every test cell and pass."""
    from traitlets.config import Config

    from autograder.pipeline import configure
    from autograder.preprocessors import RecordedTests, reference_package
    from autograder.testcells import ReferenceRecords

    config = Config()
    configure(config)
    config.CourseDirectory.root = str(course)
    runner = RecordedTests(config=config)
    monkeypatch.setenv("MINIFLOW_DATA", os.environ.get("MINIFLOW_DATA", str(MNIST)))
    for path in sorted((course / "assignments" / release.ASSIGNMENT).glob("*.ipynb")):
        records = ReferenceRecords(
            path, reference_package(course), tmp_path / "cache", runner.run_reference
        ).load()
        test_ids = {
            cell.metadata["nbgrader"]["grade_id"]
            for cell in nbformat.read(path, as_version=4).cells
            if cell.metadata.get("nbgrader", {}).get("grade")
        }
        assert set(records) == test_ids and all(records.values()), path.name
    shutil.rmtree(tmp_path / "cache")


def test_an_assert_that_raised_leaves_nothing_in_the_next_ones_record(tmp_path):
    source = "try:\n    assert broken(1) == other(2)\nexcept ZeroDivisionError:\n    pass\n"
    source += "assert value() == 3"
    namespace = {"broken": lambda x: x, "other": lambda x: 1 / 0, "value": lambda: 3}
    text, error = record(source, namespace, tmp_path)
    (event,) = read_events(text)
    assert error is None and event.number == 1 and event.leaves == {0: 3}


@pytest.mark.parametrize(
    ("learning_rate", "batch_size", "refused"),
    [
        (np.float32(0.1), np.int64(64), None),
        (0.1, 64, None),
        (True, 64, "learning rate"),
        (0.1, 64.0, "batch size"),
        (100.0, 64, "learning rate"),
    ],
)
def test_retraining_takes_numpy_numbers_as_settings(learning_rate, batch_size, refused):
    fields = (("learning_rate", learning_rate), ("batch_size", batch_size))
    settings = ObjectRecord("Settings", 1, fields=fields)
    with pytest.raises(testcells.RuleError) as raised:
        rules.retrain(None, settings, 1)  # no network: refused after the settings, if they pass
    expected = f"the {refused}" if refused else "the network was not recorded"
    assert expected in str(raised.value)


def test_the_grader_refuses_to_broadcast_recorded_arrays_into_huge_ones():
    column, row = np.zeros((20_000, 1)), np.zeros(20_000)
    for arrays, matmul in (([column, row], False), ([column, row.reshape(1, -1)], True)):
        with pytest.raises(OverflowError):
            testcells.guard_broadcast(arrays, matmul)
    testcells.guard_broadcast([np.zeros((100, 1)), np.zeros(100)])  # a small broadcast is evaluated


def test_the_retraining_rule_allows_exactly_the_settings_notebook_5_allows():
    source = nbformat.read(ROOT / "assignments" / "miniflow-lab" / "05-mnist.ipynb", as_version=4)
    [cell] = [cell for cell in source.cells if "# grading: own=settings,mlp_settings" in cell.source]
    def bounds(name):
        low, high = re.search(rf"([\d.e-]+) <= {re.escape(name)} <= ([\d.e-]+)", cell.source).groups()
        return float(low), float(high)

    assert bounds("settings.learning_rate") == rules.LEARNING_RATES
    assert bounds("settings.batch_size") == rules.BATCH_SIZES
    assert f"16 <= mlp_settings().n_hidden <= {rules.MAX_HIDDEN}" in cell.source
