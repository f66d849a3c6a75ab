"""The trusted checks, run on the bundled sample submissions and on a few made here."""

import ast
import dataclasses
import functools
import shutil
import sys
import time
from pathlib import Path

import pytest
from conftest import REFERENCE, ROOT, STARTER, load_package
from test_notebooks import PACKAGE_BUGS, replace_solution

from autograder import checks, samples
from autograder.checks import CHECK_LIMITS, CHECKS, run_checks, run_checks_in_parallel
from autograder.preprocessors import CHECKED_CELLS
from autograder.sandbox import MIB, bubblewrap_problem

ISOLATED = bubblewrap_problem(shutil.which("bwrap")) is None
# Short limits, so that an endless loop or a memory bomb costs about a second.
HANG_OPTIONS = {"check_seconds": 1.0, "limits": dataclasses.replace(CHECK_LIMITS, wall_seconds=3)}
SMALL_MEMORY = {"limits": dataclasses.replace(CHECK_LIMITS, memory_bytes=256 * MIB)}


def outcomes(result):
    return {name: check.outcome for name, check in result.checks.items()}


def sample_params():
    for name in samples.names():
        marks = []
        if name == "endless_loop_swallowing_timeout":  # three processes run to the wall-clock limit
            marks.append(pytest.mark.slow)
        if samples.manifest(name).get("needs_isolation") and not ISOLATED:
            marks.append(pytest.mark.skip(reason="its expected outcomes hold only in the sandbox"))
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(sample_params()))
def test_each_sample_gets_exactly_its_expected_outcomes(name, tmp_path):
    expected = samples.manifest(name)["expected"].values()
    options = HANG_OPTIONS if "timeout" in expected else SMALL_MEMORY if name == "memory_bomb" else {}
    result = run_checks(samples.materialise(name, tmp_path / name), **options)
    assert outcomes(result) == samples.expected_outcomes(name, CHECKS)  # the reference: all passed
    for check in result.checks.values():
        assert (check.score == 1) == check.passed and (check.message == "") == check.passed
    assert result.isolated == ISOLATED


def stub_messages():
    """The text of every `raise NotImplementedError(...)` in the starter."""
    found = set()
    for path in STARTER.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            call = node.exc if isinstance(node, ast.Raise) else None
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "NotImplementedError":
                found.update(arg.value for arg in call.args if isinstance(arg, ast.Constant))
    return found


def test_the_starter_fails_every_check_with_the_message_of_a_stub(tmp_path):
    result = run_checks(samples.materialise("starter", tmp_path / "starter"))
    stubs = stub_messages()
    for check in result.checks.values():
        assert check.outcome == "error" and check.score == 0
        assert any(f"raised NotImplementedError: {stub}" in check.message for stub in stubs), check.message
        assert "miniflow/" in check.message  # where: the file and line of the stub


def test_messages_name_the_wrong_array_and_the_first_wrong_entry(tmp_path):
    result = run_checks(samples.materialise("ce_grad_not_averaged", tmp_path / "sample"))
    message = result.checks["cross_entropy_backward"].message
    assert message.startswith("CrossEntropyWithSoftmax(logits, labels) with logits (5, 4), labels (5,) int64")
    assert "gradient for logits is wrong: 20 of 20 entries differ; at [0, 0]: expected" in message
    assert "(5 times the expected, everywhere)" in message  # the batch size
    result = run_checks(samples.materialise("bias_grad_wrong_axis", tmp_path / "bias"), ["linear_backward"])
    message = result.checks["linear_backward"].message
    assert "backward returned a gradient of shape (5,) for input 2" in message


@pytest.mark.skipif(not ISOLATED, reason="needs the sandbox to compare with")
@pytest.mark.skipif(not Path(sys.prefix).is_relative_to(ROOT), reason="it finds the course by its venv")
def test_reading_the_solutions_would_score_full_marks_without_the_sandbox(monkeypatch, tmp_path):
    folder = samples.materialise("reads_solutions", tmp_path / "sample")
    monkeypatch.setattr(checks, "Sandbox", functools.partial(checks.Sandbox, bwrap="no-such-bwrap"))
    result = run_checks(folder)
    assert not result.isolated and all(check.passed for check in result.checks.values())


def test_the_cheaters_gain_nothing(tmp_path):
    for name in ("cheater", "forger"):
        result = run_checks(samples.materialise(name, tmp_path / name))
        assert [check.score for check in result.checks.values()] == [0.0] * len(CHECKS)


def test_a_check_that_hangs_is_charged_alone_and_the_others_still_run(tmp_path):
    folder = samples.materialise("infinite_loop", tmp_path / "sample")
    start = time.monotonic()
    result = run_checks(folder, ["mul_forward", "mul_backward", "cross_entropy_backward"], **HANG_OPTIONS)
    assert time.monotonic() - start < 3 + 10  # the wall-clock limit, and start-up
    assert result.checks["mul_backward"].message == "did not finish within 1 s (an endless loop?)"
    assert result.checks["mul_forward"].passed and result.checks["cross_entropy_backward"].passed


def test_without_restarts_the_checks_after_a_hang_are_reported_as_not_run(tmp_path):
    folder = samples.materialise("endless_loop_swallowing_timeout", tmp_path / "sample")
    start = time.monotonic()
    result = run_checks(folder, max_child_runs=1, **HANG_OPTIONS)
    assert time.monotonic() - start < 3 + 10
    assert outcomes(result)["mul_fanout"] == "passed"
    assert outcomes(result)["linear_forward"] == "timeout"
    assert "stopped at the time limit of 3 s" in result.checks["linear_forward"].message
    after = list(CHECKS)[list(CHECKS).index("linear_forward") + 1 :]
    assert {outcomes(result)[name] for name in after} == {"not run"}


def test_a_memory_bomb_fails_with_the_memory_limit_named(tmp_path):
    folder = samples.materialise("memory_bomb", tmp_path / "sample")
    result = run_checks(folder, ["sigmoid_forward"], **SMALL_MEMORY)
    message = result.checks["sigmoid_forward"].message
    assert "raised MemoryError" in message and "the memory limit is 256 MiB" in message


def test_os_exit_is_a_clear_failure_of_the_check_that_called_it(tmp_path):
    result = run_checks(samples.materialise("os_exit", tmp_path / "sample"))
    assert result.checks["linear_backward"].message == (
        "the process running the checks ended during this one: it exited with status 0 "
        "(does miniflow call os._exit, or crash?)"
    )
    assert result.checks["sigmoid_forward"].passed  # run in a new process


def write_submission(folder, file_name, old, new):
    """The reference with `old` replaced by `new` in `file_name`."""
    samples.materialise("reference", folder)
    path = folder / "miniflow" / file_name
    source = path.read_text()
    assert old in source
    path.write_text(source.replace(old, new, 1))
    return folder


def append_to_reference(folder, file_name, code):
    samples.materialise("reference", folder)
    with open(folder / "miniflow" / file_name, "a") as file:
        file.write(code)
    return folder


def test_each_part_of_a_check_is_reported_for_partial_credit(tmp_path):
    mean_for_sum = ("db = grad.sum(axis=0)", "db = grad.mean(axis=0)")
    folder = write_submission(tmp_path / "sub", "layers.py", *mean_for_sum)
    check = run_checks(folder, ["linear_backward"]).checks["linear_backward"]
    assert check.parts == {"gradient for X": True, "gradient for W": True, "gradient for b": False}
    assert check.score == pytest.approx(2 / 3)
    assert "gradient for b is wrong" in check.message
    assert "(0.2 times the expected, everywhere)" in check.message  # 1 / batch size
    folder = samples.materialise("sigmoid_naive", tmp_path / "naive")
    check = run_checks(folder, ["sigmoid_stability"]).checks["sigmoid_stability"]
    assert check.parts == {"value": True, "gradient for x": True, "no warnings": False}
    assert check.message.endswith("emitted RuntimeWarning: overflow encountered in exp")


def test_an_error_on_import_fails_every_check_with_that_error(tmp_path):
    folder = write_submission(tmp_path / "sub", "layers.py", "class Sigmoid(Node):", "class Sigmoid(Node)")
    result = run_checks(folder)
    for check in result.checks.values():
        assert check.outcome == "error"
        assert check.message.startswith("importing miniflow raised SyntaxError: ")
        assert "(at miniflow/layers.py, line " in check.message


def test_a_submission_without_a_package_fails_clearly(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_checks(tmp_path / "empty", ["mul_forward"])
    assert result.checks["mul_forward"].message == (
        "importing miniflow raised ModuleNotFoundError: No module named 'miniflow'"
    )


def test_objects_that_claim_equality_are_not_accepted_as_answers(tmp_path):
    cheat = (
        "\n\nclass Anything:\n    def __eq__(self, other):\n        return True\n\n\n"
        "Sigmoid.forward = lambda self, x: Anything()\n"
    )
    folder = append_to_reference(tmp_path / "sub", "layers.py", cheat)
    check = run_checks(folder, ["sigmoid_forward"]).checks["sigmoid_forward"]
    assert check.outcome == "wrong"
    assert "returned a value of type Anything (object), not an array of numbers" in check.message


def test_what_the_student_code_prints_changes_nothing_and_is_capped(tmp_path):
    noisy = "\nimport sys\nprint('x' * 100_000)\nprint('}' * 100_000, file=sys.stderr)\n"
    folder = append_to_reference(tmp_path / "sub", "__init__.py", noisy)
    result = run_checks(folder)
    assert all(check.passed for check in result.checks.values())
    assert result.output.startswith("xxx") and len(result.output) <= CHECK_LIMITS.output_bytes


def test_repeated_runs_give_identical_results(tmp_path):
    folder = samples.materialise("sigmoid_upstream_ignored", tmp_path / "sample")
    assert run_checks(folder).checks == run_checks(folder).checks


def test_parallel_runs_equal_serial_runs(tmp_path):
    names = ["reference", "starter", "ce_summed", "sigmoid_naive", "os_exit"]
    folders = [samples.materialise(name, tmp_path / name) for name in names]
    serial = [run_checks(folder).checks for folder in folders]
    assert [result.checks for result in run_checks_in_parallel(folders, workers=2)] == serial


def test_a_wrong_reference_is_caught_by_finite_differences(monkeypatch, tmp_path):
    """Expected gradients come from the reference only once finite differences agree with them."""
    folder = samples.materialise("ce_grad_not_averaged", tmp_path / "sample")
    wrong = load_package(folder / "miniflow", "miniflow_sample_ce_grad_not_averaged")
    monkeypatch.setattr(checks, "load_reference", lambda: wrong)
    with pytest.raises(checks.CheckDefinitionError, match="disagrees with finite differences"):
        checks.prepare.__wrapped__("cross_entropy_backward")


def test_reply_files_swapped_for_a_fifo_or_a_link_cannot_hang_or_fool_the_grader(tmp_path):
    sabotage = (
        "\nimport atexit, os\n\n\ndef sabotage():\n"
        "    os.remove('replies/mul_forward.npz')\n    os.mkfifo('replies/mul_forward.npz')\n"
        "    os.remove('replies/mul_backward.npz')\n"
        "    os.symlink('/etc/passwd', 'replies/mul_backward.npz')\n\n\n"
        "atexit.register(sabotage)\n"
    )
    folder = append_to_reference(tmp_path / "sub", "__init__.py", sabotage)
    result = run_checks(folder, ["mul_forward", "mul_backward", "mul_fanout"])
    assert outcomes(result) == {"mul_forward": "error", "mul_backward": "error", "mul_fanout": "passed"}
    assert "mul_forward.npz is not a regular file" in result.checks["mul_forward"].message
    assert "cannot open mul_backward.npz" in result.checks["mul_backward"].message


@pytest.mark.parametrize("bug", PACKAGE_BUGS)
def test_a_bug_in_the_package_fails_exactly_the_cells_the_kernel_tests_fail(bug, tmp_path):
    """The trusted checks agree with the notebooks' own tests on which cells a bug fails."""
    _, module, where, body, fails, passes = PACKAGE_BUGS[bug]
    package = tmp_path / "miniflow"
    shutil.copytree(REFERENCE, package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / module).write_text(replace_solution((package / module).read_text(), body, where))
    result = run_checks(tmp_path)

    def cell_passes(grade_id):
        check, part = CHECKED_CELLS[grade_id]
        found = result.checks[check]
        return (found.parts[part] if part else found.score) == 1

    assert [grade_id for grade_id in fails if grade_id in CHECKED_CELLS and cell_passes(grade_id)] == []
    assert [grade_id for grade_id in passes if grade_id in CHECKED_CELLS and not cell_passes(grade_id)] == []
