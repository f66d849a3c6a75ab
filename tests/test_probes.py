"""The probes that grade the notebooks' own functions (autograder/probes.py), run in a real kernel.

Each probed test cell's code is replaced by its probe, as SandboxedExecute does; the
verdicts are then reached here, from the raw results the kernel saved.
"""

import os

import nbformat
import numpy as np
import pytest
from conftest import MNIST, REFERENCE, ROOT
from test_notebooks import NOTEBOOK_BUGS, execute, nbgrader_meta, read, replace_solution

from autograder import probes
from autograder.checks import BadReplyError
from autograder.probes import PROBES, read_reply

PROBED_NOTEBOOKS = ["01-chain-rule", "03-softmax-and-losses", "04-gradient-descent", "05-mnist"]


@pytest.fixture(autouse=True)
def grading_data_from_the_test_split(monkeypatch):
    """Grade with the data the kernels read: MNIST's test split beside the repository."""
    monkeypatch.setenv("MINIFLOW_DATA", str(MNIST))
    probes.grading_data.cache_clear()
    yield
    probes.grading_data.cache_clear()


def verdicts(nb, folder, package=REFERENCE):
    """Run `nb` with its probed cells' probes in their place; return {grade_id: (passed, message)}."""
    paths = {}
    for cell in nb.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id in PROBES:
            paths[grade_id] = folder / f"probe-{grade_id}.npz"
            cell.source = PROBES[grade_id].kernel_code(paths[grade_id])
    execute(nb, folder, package, grading=True, allow_errors=True)
    found = {}
    for grade_id, path in paths.items():
        try:
            reply = read_reply(path)
        except BadReplyError:
            reply = None
        found[grade_id] = PROBES[grade_id].verdict(reply)
    return found


def test_every_probed_cell_is_a_test_cell_of_the_assignment():
    grade_ids = {
        nbgrader_meta(cell)["grade_id"]
        for name in PROBED_NOTEBOOKS
        for cell in read(name).cells
        if nbgrader_meta(cell).get("grade")
    }
    assert set(PROBES) <= grade_ids


@pytest.mark.slow
@pytest.mark.parametrize("name", PROBED_NOTEBOOKS)
def test_the_reference_notebooks_pass_every_probe(name, tmp_path):
    found = verdicts(read(name), tmp_path)
    assert found and all(passed for passed, _ in found.values()), found


@pytest.mark.slow
@pytest.mark.parametrize("name", PROBED_NOTEBOOKS)
def test_the_released_stubs_fail_every_probe_saying_not_implemented(name, tmp_path):
    nb = nbformat.read(ROOT / "release" / "miniflow-lab" / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:  # the release keeps the test cells' visible part; the probe replaces it anyway
        if nbgrader_meta(cell).get("grade_id") in PROBES:
            cell.metadata.nbgrader["grade"] = True
    found = verdicts(nb, tmp_path)
    assert found
    for grade_id, (passed, message) in found.items():
        assert not passed and "NotImplementedError" in message, (grade_id, message)


@pytest.mark.slow
@pytest.mark.parametrize("bug", NOTEBOOK_BUGS)
def test_a_bug_in_a_notebook_function_fails_exactly_the_cells_the_kernel_tests_fail(bug, tmp_path):
    name, bodies, fails, passes = NOTEBOOK_BUGS[bug]
    nb = read(name)
    planted = set()
    for cell in nb.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id in bodies:
            cell.source = replace_solution(cell.source, bodies[grade_id])
            planted.add(grade_id)
    assert planted == set(bodies)
    found = verdicts(nb, tmp_path)
    assert {grade_id for grade_id in fails if grade_id in PROBES} <= {
        g for g, (ok, _) in found.items() if not ok
    }
    assert all(found[grade_id][0] for grade_id in passes if grade_id in PROBES), found


CHEAT = """
import builtins

class AlwaysEqual(list):  # passes `assert answer == expected`, whatever is expected
    def __eq__(self, other):
        return True

np.allclose = np.isclose = lambda *args, **kwargs: True
builtins.AssertionError = type("NeverRaised", (Exception,), {})
return AlwaysEqual()
"""


@pytest.mark.slow
def test_answers_that_equal_anything_and_patched_numpy_earn_nothing(tmp_path):
    nb = read("01-chain-rule")
    for cell in nb.cells:
        if nbgrader_meta(cell).get("grade_id") in ("by_hand_f_answer", "by_hand_k_answer"):
            cell.source = replace_solution(cell.source, CHEAT)
    found = verdicts(nb, tmp_path)
    assert {grade_id: passed for grade_id, (passed, _) in found.items()} == dict.fromkeys(found, False)
    assert "returned a value of type AlwaysEqual, not a list" in found["by_hand_f"][1]


def test_the_regression_data_is_the_notebooks():
    (cell,) = [
        cell
        for cell in read("04-gradient-descent").cells
        if nbgrader_meta(cell).get("grade_id") == "diabetes_data"
    ]
    namespace = {"np": np, "print": lambda *args: None}
    exec(cell.source, namespace)
    for mine, notebooks in zip(
        probes.diabetes_splits(), ("X_train", "y_train", "X_test", "y_test"), strict=True
    ):
        np.testing.assert_array_equal(mine, namespace[notebooks])


def test_the_accuracy_targets_are_the_notebooks():
    (cell,) = [
        cell for cell in read("05-mnist").cells if nbgrader_meta(cell).get("grade_id") == "nb5_targets"
    ]
    namespace = {"os": os, "splits": probes.grading_data(), "print": lambda *args: None}
    exec(cell.source, namespace)
    assert namespace["TARGETS"] == probes.GRADING_TARGETS


def test_a_reply_that_is_not_one_is_refused(tmp_path):
    (tmp_path / "pickled.npz").write_bytes(b"not a zip file")
    with pytest.raises(BadReplyError):
        read_reply(tmp_path / "pickled.npz")
    np.savez(
        tmp_path / "objects.npz",
        meta=np.array('{"error": null, "types": {}, "values": {}}'),
        x=np.array([{}]),
    )
    with pytest.raises(BadReplyError):
        read_reply(tmp_path / "objects.npz")  # an object array: it would need pickle
    (tmp_path / "link.npz").symlink_to(tmp_path / "objects.npz")
    with pytest.raises(BadReplyError):
        read_reply(tmp_path / "link.npz")
    assert PROBES["by_hand_f"].verdict(None) == (False, "the probe saved no results")


@pytest.mark.parametrize(
    ("factor", "hint"),
    [
        (6, "(divide by the number of elements)"),  # a sum where the mean belongs: 6 elements
        (-1, "(-1 times the expected, everywhere)"),
        (0.5, "(0.5 times the expected, everywhere)"),
    ],
)
def test_a_wrong_mse_gradient_gets_the_hint_for_its_mistake(factor, hint):
    targets = np.arange(6.0).reshape(3, 2)
    predictions = targets + np.array([[1.0, -2.0], [0.5, 3.0], [-1.0, 2.0]])
    mine = factor * probes.expected_mse_gradient(targets, predictions)
    reply = probes.Reply(error=None, types={}, values={}, arrays={"gradient": mine})
    with pytest.raises(probes.WrongAnswerError) as failure:
        probes.judge_mse_gradient(reply, "gradient", targets, predictions)
    assert str(failure.value).endswith(hint)
