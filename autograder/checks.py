"""Trusted checks of the graded miniflow exercises.

nbgrader runs hidden tests inside the student's kernel, where a patched
`np.allclose` passes anything (DESIGN.md section 4). These checks instead have
a separate, sandboxed process (autograder/child.py) build small graphs with
the student's classes and hand back the values and gradients as raw arrays,
and compare those here, in the grading process, with the reference's. The
reference's gradients are confirmed by finite differences first.

Each check draws its inputs from a generator seeded by its name, so every
submission is graded on the same data and grades are reproducible. Inputs are
random and non-symmetric, batches have three rows or more, backward passes get
random upstream gradients through DummyGrad, and every graph runs twice.

    result = run_checks("submitted/alice/miniflow-lab")
    check = result.checks["linear_backward"]
    check.passed, check.score, check.message, check.parts["gradient for b"]

`parts` says which of the check's parts (the value, each gradient, "no
warnings" where asked) came out right and `score` is the fraction that did,
so a grade cell can take a whole check or one part of it; `message` says what
went wrong first, without showing the check's code. All checks of one
submission run in one child process; a check that hangs or kills it is
charged to that check, and the rest go on in a new process.
"""

import functools
import importlib.util
import io
import json
import os
import shutil
import stat
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import child
from .sandbox import COURSE_ROOT, GIB, MIB, Limits, Sandbox, describe_exit

REFERENCE = COURSE_ROOT / "solutions" / "miniflow"
CHECK_LIMITS = Limits(cpu_seconds=60, wall_seconds=60, memory_bytes=1 * GIB)
CALLS = 2  # each graph runs this many times, so state left over from one call shows in the next
FINITE_DIFFERENCE_STEP = 1e-6
REPLY_BYTES = 64 * MIB  # a reply is written by the sandbox: never read a bigger one
NO_WARNINGS = "no warnings"


class CheckDefinitionError(RuntimeError):
    """A check is wrong: the reference fails it. Fix the check (or the reference), not the student."""


@dataclass(frozen=True)
class Case:
    """One node under test: a `kind` node over Input nodes named `inputs`, fed from `feed`.

    With `wrt`, the gradients with respect to those inputs are asked for too,
    starting from `upstream` (fed to a DummyGrad on top) or from ones. With
    `method`, that method of the node is called on the fed arrays instead.
    With `graph`, the nodes above the Inputs are those it lists (`(id, kind,
    *input ids)`, the last one "node"), and `kind` is the formula they compute.
    """

    kind: str
    inputs: tuple[str, ...]
    feed: dict[str, np.ndarray]
    wrt: tuple[str, ...] = ()
    upstream: np.ndarray | None = None
    method: str | None = None
    graph: tuple[tuple[str, ...], ...] = ()

    @property
    def label(self):
        def shape(value):
            array = np.asarray(value)
            return f"{array.shape}" + ("" if array.dtype == np.float64 else f" {array.dtype}")

        if self.method:
            called = f"{self.kind}.{self.method}({', '.join(self.feed)})"
        else:
            called = self.kind if self.graph else f"{self.kind}({', '.join(self.inputs)})"
        shapes = [f"{name} {shape(value)}" for name, value in self.feed.items()]
        if self.upstream is not None:
            shapes.append(f"upstream gradient {shape(self.upstream)}")
        return f"{called} with " + ", ".join(shapes)

    @property
    def kinds(self):
        """The kinds of node the case builds, Inputs aside."""
        return {kind for _, kind, *_ in self.nodes()} - {"Input"}

    @property
    def output_names(self):
        return ["value", *(f"gradient for {name}" for name in self.wrt)]

    def nodes(self):
        """The graph as the child builds it: [id, kind, *input ids]; the node under test is "node"."""
        above = self.graph or (("node", self.kind, *self.inputs),)
        return [*([name, "Input"] for name in dict.fromkeys(self.inputs)), *map(list, above)]

    def request(self, prefix):
        """`(spec, arrays)`: this case as the child reads it, its arrays keyed under `prefix`."""
        arrays = {f"{prefix}/{name}": np.asarray(value) for name, value in self.feed.items()}
        nodes, feed, output = self.nodes(), {name: f"{prefix}/{name}" for name in self.feed}, "node"
        if self.method:
            evaluation = {"call": self.method, "on": "node", "args": list(feed.values())}
        else:
            if self.upstream is not None:
                nodes.append(["upstream", "DummyGrad", "node"])
                output = "upstream"
                feed["upstream"] = f"{prefix}/upstream"
                arrays[f"{prefix}/upstream"] = np.asarray(self.upstream)
            evaluation = {"output": output, "feed": feed, "wrt": list(self.wrt)}
        return {"nodes": nodes, "evaluations": [evaluation] * CALLS}, arrays


@dataclass(frozen=True)
class Check:
    """One graded exercise part: `make_case(rng)` gives the case it runs."""

    name: str
    title: str
    make_case: Callable[[np.random.Generator], Case]
    grade_value: bool = True  # False for a backward check: a wrong forward is its own check's failure
    no_warnings: bool = False  # numpy warnings fail it (and a notebook would show them)
    exact_dtype: bool = False  # values and gradients must keep the reference's dtype
    partial_credit: bool = True  # False: all parts right or no points, as the lab's own asserts grade
    rtol: float = 1e-6
    atol: float = 1e-9

    def case(self):
        # crc32, not hash(): the same seed in every process and Python version.
        return self.make_case(np.random.default_rng(zlib.crc32(self.name.encode())))


@dataclass(frozen=True)
class CheckResult:
    """How a submission did on one check.

    `outcome` is one of: passed, wrong (it ran but gave wrong results), error
    (the student's code raised), timeout, crashed (the process running it
    died), not run.
    """

    name: str
    outcome: str
    score: float  # fraction of the check's parts that passed, in [0, 1]
    message: str = ""  # what went wrong first; empty when passed
    parts: dict[str, bool] = field(default_factory=dict)  # "gradient for W", "no warnings"... -> passed
    part_messages: dict[str, str] = field(default_factory=dict)  # what went wrong first in each failed part

    def message_for(self, part):
        """What went wrong in `part` (or, without one, in the check)."""
        return self.part_messages.get(part, self.message)

    @property
    def passed(self):
        return self.outcome == "passed"


@dataclass(frozen=True)
class SubmissionResult:
    submission: Path
    checks: dict[str, CheckResult]
    isolated: bool  # False when the sandbox was unavailable (see sandbox.py)
    output: str = field(repr=False)  # the start of what the student's code printed, for instructors


CHECKS = {}


def check(title, **options):
    """Register the decorated function, `make_case(rng)`, as the check named after it."""

    def register(make_case):
        CHECKS[make_case.__name__] = Check(make_case.__name__, title, make_case, **options)
        return make_case

    return register


def three_arrays(rng, shape):
    x, y, z = rng.normal(size=(3, *shape))
    return {"x": x, "y": y, "z": z}


def linear_inputs(rng, dtype=np.float64):
    m, n, p = 5, 4, 3  # all different: a transposed or wrongly summed result has the wrong shape
    arrays = {"X": rng.normal(size=(m, n)), "W": rng.normal(size=(n, p)), "b": rng.normal(size=p)}
    return {name: value.astype(dtype) for name, value in arrays.items()}


def classification_inputs(rng, dtype=np.float64):
    m, k = 5, 4
    return {"logits": (2 * rng.normal(size=(m, k))).astype(dtype), "labels": rng.integers(0, k, size=m)}


def single(rng, shape):
    return rng.normal(size=shape).astype(np.float32)


FLOAT32 = {"exact_dtype": True, "rtol": 1e-4, "atol": 1e-6}


@check("Mul.forward: the elementwise product of three inputs")
def mul_forward(rng):
    return Case("Mul", ("x", "y", "z"), three_arrays(rng, (3, 4)))


@check("Mul.backward: one gradient per input, times the upstream gradient", grade_value=False)
def mul_backward(rng):
    feed = three_arrays(rng, (3, 4))
    feed["x"][0, 0] = 0.0  # a zero input: dividing the product by it gives nan, not y * z
    return Case("Mul", ("x", "y", "z"), feed, wrt=("x", "y", "z"), upstream=rng.normal(size=(3, 4)))


@check("Mul(x, x): an input used twice receives both gradients", grade_value=False)
def mul_fanout(rng):
    x = rng.normal(size=(3, 4))
    return Case("Mul", ("x", "x"), {"x": x}, wrt=("x",), upstream=rng.normal(size=x.shape))


@check("Mul of float32 inputs: float32 value and gradients", **FLOAT32)
def mul_float32(rng):
    feed = {"x": single(rng, (3, 4)), "y": single(rng, (3, 4))}
    return Case("Mul", ("x", "y"), feed, wrt=("x", "y"), upstream=single(rng, (3, 4)))


@check("Linear.forward: X @ W + b")
def linear_forward(rng):
    return Case("Linear", ("X", "W", "b"), linear_inputs(rng))


@check("Linear.backward: the gradients for X, W and b, each of its input's shape", grade_value=False)
def linear_backward(rng):
    feed = linear_inputs(rng)
    return Case("Linear", ("X", "W", "b"), feed, wrt=("X", "W", "b"), upstream=rng.normal(size=(5, 3)))


@check("Linear of float32 inputs: float32 value and gradients", **FLOAT32)
def linear_float32(rng):
    feed = linear_inputs(rng, np.float32)
    return Case("Linear", ("X", "W", "b"), feed, wrt=("X", "W", "b"), upstream=single(rng, (5, 3)))


@check("Sigmoid.forward")
def sigmoid_forward(rng):
    return Case("Sigmoid", ("x",), {"x": 3 * rng.normal(size=(4, 3))})


@check("Sigmoid.backward, times the upstream gradient", grade_value=False)
def sigmoid_backward(rng):
    x = 3 * rng.normal(size=(4, 3))
    return Case("Sigmoid", ("x",), {"x": x}, wrt=("x",), upstream=rng.normal(size=x.shape))


@check("Sigmoid of inputs up to ±1000: right, finite and without warnings", no_warnings=True)
def sigmoid_stability(rng):
    x = np.array([[-1000.0, -745.0, -40.0, -1e-3], [0.0, 40.0, 745.0, 1000.0]])
    return Case("Sigmoid", ("x",), {"x": x}, wrt=("x",), upstream=rng.normal(size=x.shape))


@check("Sigmoid of float32 inputs: float32 value and gradient", **FLOAT32)
def sigmoid_float32(rng):
    return Case("Sigmoid", ("x",), {"x": 3 * single(rng, (4, 3))}, wrt=("x",), upstream=single(rng, (4, 3)))


@check("CrossEntropyWithSoftmax._softmax: each row turned into probabilities")
def softmax(rng):
    feed = {"z": 3 * rng.normal(size=(4, 5))}
    return Case("CrossEntropyWithSoftmax", ("z", "labels"), feed, method="_softmax")


@check("CrossEntropyWithSoftmax._softmax of logits up to ±1000: right and without warnings", no_warnings=True)
def softmax_stability(rng):
    feed = {"z": np.array([[1000.0, 0, -1000], [-1000, -1000, -999], [800, 1000, 1000], [0, 1, 2]])}
    return Case("CrossEntropyWithSoftmax", ("z", "labels"), feed, method="_softmax")


@check("CrossEntropyWithSoftmax.forward: the mean loss over the batch")
def cross_entropy_forward(rng):
    return Case("CrossEntropyWithSoftmax", ("logits", "labels"), classification_inputs(rng))


@check("CrossEntropyWithSoftmax.backward: (softmax - one_hot(labels)) / m", grade_value=False)
def cross_entropy_backward(rng):
    feed = classification_inputs(rng)
    return Case("CrossEntropyWithSoftmax", ("logits", "labels"), feed, wrt=("logits",))


@check("CrossEntropyWithSoftmax.backward, times the upstream gradient", grade_value=False)
def cross_entropy_upstream(rng):
    feed = classification_inputs(rng)
    upstream = np.array(rng.uniform(-3.0, -0.5))  # negative: a sign dropped shows too
    return Case("CrossEntropyWithSoftmax", ("logits", "labels"), feed, wrt=("logits",), upstream=upstream)


@check("CrossEntropyWithSoftmax with logits of ±1000: right, finite and without warnings", no_warnings=True)
def cross_entropy_stability(rng):
    logits = np.array([[1000.0, 0, -1000], [-1000, 1000, 0], [0, -1000, 1000], [500, 500, -500]])
    feed = {"logits": logits, "labels": np.array([0, 0, 1, 2])}
    upstream = np.array(rng.uniform(0.5, 2.0))
    return Case("CrossEntropyWithSoftmax", ("logits", "labels"), feed, wrt=("logits",), upstream=upstream)


@check("CrossEntropyWithSoftmax of float32 logits: float32 loss and gradient", **FLOAT32)
def cross_entropy_float32(rng):
    feed = classification_inputs(rng, np.float32)
    upstream = single(rng, ())
    return Case("CrossEntropyWithSoftmax", ("logits", "labels"), feed, wrt=("logits",), upstream=upstream)


# The lab's own examples, with the values its visible asserts use. In the notebooks those asserts
# run in the student's kernel, where a patched np.allclose passes them; graded here, they cannot be.
LAB_F = (("xy", "Mul", "x", "y"), ("xz", "Mul", "x", "z"), ("node", "Add", "xy", "xz"))
LAB_F_FEED = {"x": np.array(3), "y": np.array(4), "z": np.array(-5)}
LAB_LINEAR_X = np.array([[-1.0, -2.0], [-1.0, -2.0]])
LAB_LINEAR_W = np.array([[2.0, -3.0], [2.0, -3.0]])
LAB_SIGMOID_X = np.array([-10.0, 0.0, 10.0])
LAB = {"partial_credit": False}  # like the asserts; and a part right by chance (df/dy = x = 3) earns nothing


@check("the lab's f = x*y + x*z at x=3, y=4, z=-5: its value and gradients", **LAB)
def lab_f(rng):
    return Case("Add(Mul(x, y), Mul(x, z))", ("x", "y", "z"), LAB_F_FEED, wrt=("x", "y", "z"), graph=LAB_F)


@check("the lab's f = x*y + x*z with an upstream gradient of 0.5", **LAB)
def lab_f_upstream(rng):
    feed, wrt = LAB_F_FEED, ("x", "y", "z")
    return Case("Add(Mul(x, y), Mul(x, z))", wrt, feed, wrt=wrt, upstream=np.array(0.5), graph=LAB_F)


@check("the lab's Mul(a, b, c) at a=4, b=5, c=10: its value and gradients", **LAB)
def lab_three_inputs(rng):
    feed = {"a": np.array(4), "b": np.array(5), "c": np.array(10)}
    return Case("Mul", ("a", "b", "c"), feed, wrt=("a", "b", "c"))


@check("the lab's worked example X @ W + b through a Linear node", **LAB)
def lab_linear_example(rng):
    feed = {
        "X": np.array([[1.0, 2.0], [3.0, 4.0]]),
        "W": np.array([[5.0, 6.0], [7.0, 8.0]]),
        "b": np.array([-1.0, -1.0]),
    }
    return Case("Linear", ("X", "W", "b"), feed)


@check("the lab's Linear example with a (1, 2) bias: its value and gradients", **LAB)
def lab_linear(rng):
    feed = {"X": LAB_LINEAR_X, "W": LAB_LINEAR_W, "b": np.array([[-3.0, -3.0]])}
    return Case("Linear", ("X", "W", "b"), feed, wrt=("X", "W", "b"))


@check("the lab's Linear example with an upstream gradient: its value and gradients", **LAB)
def lab_linear_upstream(rng):
    feed = {"X": LAB_LINEAR_X, "W": LAB_LINEAR_W, "b": np.array([-3.0, -5.0])}
    upstream = np.array([[1.0, 2.0], [3.0, 4.0]])
    return Case("Linear", ("X", "W", "b"), feed, wrt=("X", "W", "b"), upstream=upstream)


@check("Linear.backward with a bias of shape (1, p): the gradient for b has b's shape", grade_value=False)
def linear_bias_row(rng):
    feed = {"X": rng.normal(size=(4, 2)), "W": rng.normal(size=(2, 3)), "b": rng.normal(size=(1, 3))}
    return Case("Linear", ("X", "W", "b"), feed, wrt=("X", "W", "b"), upstream=rng.normal(size=(4, 3)))


@check("the lab's Sigmoid of [-10, 0, 10]: its value and gradient", **LAB)
def lab_sigmoid(rng):
    return Case("Sigmoid", ("x",), {"x": LAB_SIGMOID_X}, wrt=("x",))


@check("the lab's Sigmoid of [-10, 0, 10] with an upstream gradient of 0.5", **LAB)
def lab_sigmoid_upstream(rng):
    return Case("Sigmoid", ("x",), {"x": LAB_SIGMOID_X}, wrt=("x",), upstream=np.array(0.5))


@check("the lab's Sigmoid(Linear(X, W, b))", **LAB)
def lab_sigmoid_after_linear(rng):
    feed = {"X": LAB_LINEAR_X, "W": LAB_LINEAR_W, "b": np.array([-3.0, -5.0])}
    graph = (("Z", "Linear", "X", "W", "b"), ("node", "Sigmoid", "Z"))
    return Case("Sigmoid(Linear(X, W, b))", ("X", "W", "b"), feed, graph=graph)


@check("the lab's softmax of [[0.2, 1.0, 0.3]]", **LAB)
def lab_softmax(rng):
    return Case(
        "CrossEntropyWithSoftmax", ("z", "labels"), {"z": np.array([[0.2, 1.0, 0.3]])}, method="_softmax"
    )


@check("the lab's cross-entropy of scores [[0.5, 1.0, 1.5]] for class 1: the loss and its gradient", **LAB)
def lab_cross_entropy(rng):
    feed = {"logits": np.array([[0.5, 1.0, 1.5]]), "labels": np.array([1])}
    return Case("CrossEntropyWithSoftmax", ("logits", "labels"), feed, wrt=("logits",))


@check("the lab's MSE(y, Sigmoid(Linear(X, W1, b1))): the loss and every gradient", **LAB)
def lab_two_layer(rng):
    feed = {
        "X": LAB_LINEAR_X,
        "y": np.array([1.0, 2.0]),
        "W1": np.array([[2.0], [3.0]]),
        "b1": np.array([-3.0]),
    }
    graph = (("Z", "Linear", "X", "W1", "b1"), ("S", "Sigmoid", "Z"), ("node", "MSE", "y", "S"))
    return Case(
        "MSE(y, Sigmoid(Linear(X, W1, b1)))", ("X", "y", "W1", "b1"), feed, wrt=tuple(feed), graph=graph
    )


@check("the lab's f = x**4 - 3 x**3 + 2 built from Mul and Add, at x = 6: its value and df/dx", **LAB)
def lab_descent_graph(rng):
    feed = {"x": np.array(6.0), "minus_three": np.array(-3.0), "two": np.array(2.0)}
    graph = (
        ("x4", "Mul", "x", "x", "x", "x"),
        ("x3", "Mul", "minus_three", "x", "x", "x"),
        ("node", "Add", "x4", "x3", "two"),
    )
    return Case(
        "Add(Mul(x, x, x, x), Mul(minus_three, x, x, x), two)", tuple(feed), feed, wrt=("x",), graph=graph
    )


@functools.cache
def load_reference():
    """The reference miniflow, imported by path as `miniflow_reference`: never as `miniflow`."""
    name = "miniflow_reference"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, REFERENCE / "__init__.py", submodule_search_locations=[str(REFERENCE)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@dataclass(frozen=True)
class Prepared:
    """A check ready to send: its request for the child, its inputs and the reference's answers."""

    check: Check
    case: Case
    request: dict
    arrays: dict[str, np.ndarray]
    expected: list[np.ndarray]  # the value, then each gradient

    @property
    def name(self):
        return self.check.name

    @property
    def parts(self):
        """The parts the check grades: the value (unless a backward check), each gradient, no warnings."""
        names = self.case.output_names[0 if self.check.grade_value else 1 :]
        return [*names, NO_WARNINGS] if self.check.no_warnings else names

    def failed(self, outcome, message):
        """The result of a check that never got to compare anything."""
        parts = self.parts
        return CheckResult(
            self.name, outcome, 0.0, message, dict.fromkeys(parts, False), dict.fromkeys(parts, message)
        )


@functools.cache
def prepare(name):
    """Draw the inputs of check `name` and compute the expected answers with the reference."""
    check = CHECKS[name]
    case = check.case()
    spec, arrays = case.request(name)
    request = {"name": name, "cases": [spec]}
    reference = load_reference()
    meta, results = child.run_check(reference, request, arrays)
    record = meta["evaluations"][0]
    if record["error"] or record["warnings"] or any(record["outputs"]):
        raise CheckDefinitionError(f"{name}: the reference fails {case.label}: {record}")
    expected = [results[f"0.{j}"] for j in range(len(case.output_names))]
    confirm_by_finite_differences(reference, name, case, expected[1:])
    return Prepared(check, case, request, arrays, expected)


def confirm_by_finite_differences(reference, name, case, gradients):
    """Raise CheckDefinitionError unless the reference's gradients match central differences."""
    if not case.wrt or any(np.asarray(case.feed[n]).dtype != np.float64 for n in case.wrt):
        return
    built = child.build(reference, case.nodes())
    upstream = 1.0 if case.upstream is None else case.upstream

    def objective(feed):
        value, _ = reference.value_and_grad(built["node"], {built[n]: v for n, v in feed.items()})
        return np.sum(upstream * value)

    for input_name, gradient in zip(case.wrt, gradients, strict=True):
        numeric = np.empty(gradient.shape)
        for index in np.ndindex(gradient.shape):
            sides = []
            for step in (FINITE_DIFFERENCE_STEP, -FINITE_DIFFERENCE_STEP):
                shifted = dict(case.feed)
                shifted[input_name] = shifted[input_name].copy()
                shifted[input_name][index] += step
                sides.append(objective(shifted))
            numeric[index] = (sides[0] - sides[1]) / (2 * FINITE_DIFFERENCE_STEP)
        if not np.allclose(numeric, gradient, rtol=1e-5, atol=1e-6):
            raise CheckDefinitionError(
                f"{name}: the reference's gradient for {input_name} in {case.label} "
                "disagrees with finite differences"
            )


def compare(got, expected, check):
    """What is wrong with `got` (a text to follow the array's name), or None when it matches."""
    if type(got) is not np.ndarray or got.dtype.kind not in "biuf":
        return "is not an array of numbers"
    if got.shape != expected.shape:
        return f"has shape {got.shape}; expected {expected.shape}"
    if check.exact_dtype and got.dtype != expected.dtype:
        return f"has dtype {got.dtype}; expected {expected.dtype}, the dtype of the inputs"
    with np.errstate(all="ignore"):
        close = np.isclose(got, expected, rtol=check.rtol, atol=check.atol)
        if close.all():
            return None
        first = np.unravel_index(int(np.argmin(close)), close.shape)
        at = "" if got.ndim == 0 else (
            f"{close.size - close.sum()} of {close.size} entries differ; at {[int(i) for i in first]}: "
        )
        return f"is wrong: {at}expected {float(expected[first]):.6g}, got {float(got[first]):.6g}" + (
            ratio_hint(got.astype(np.float64), expected.astype(np.float64))
        )


def ratio_hint(got, expected):
    """Say so when `got` is `expected` times one number (a sum for a mean, a missing factor...)."""
    nonzero = np.abs(expected) > 1e-12
    if not nonzero.any() or not np.isfinite(got).all() or np.any(got[~nonzero] != 0):
        return ""
    ratios = got[nonzero] / expected[nonzero]
    if not np.allclose(ratios, ratios[0], rtol=1e-4) or ratios[0] == 0 or np.isclose(ratios[0], 1):
        return ""
    return f" ({ratios[0]:.4g} times the expected" + (" value)" if got.size == 1 else ", everywhere)")


def grade(prepared, meta, arrays, limits):
    """Grade one check from the child's reply: every value and gradient, on both calls."""
    check, case = prepared.check, prepared.case
    if "timeout" in meta:
        return prepared.failed("timeout", f"did not finish within {meta['timeout']:g} s (an endless loop?)")
    failures = {}  # part -> (outcome, message), the first found
    for call, record in enumerate(meta["evaluations"]):
        when = " (on the second call with the same graph)" if call else ""

        def fail(part, outcome, text, when=when):
            failures.setdefault(part, (outcome, f"{case.label}{when}: {text}"))

        if record["error"]:
            text = f"raised {record['error']}" + (f" (at {record['where']})" if record["where"] else "")
            if record["error"].startswith("MemoryError"):
                text += f"; the memory limit is {limits.memory_bytes // MIB} MiB"
            for part in prepared.parts:
                fail(part, "error", text)
            continue
        if check.no_warnings and record["warnings"]:
            fail(NO_WARNINGS, "wrong", f"emitted {record['warnings'][0]}")
        names = case.output_names
        if len(record["outputs"]) != len(names):
            for name in names:
                fail(name, "wrong", f"gave {len(record['outputs'])} results; expected {len(names)}")
            continue
        for j, (name, problem) in enumerate(zip(names, record["outputs"], strict=True)):
            problem = problem or compare(arrays.get(f"{call}.{j}"), prepared.expected[j], check)
            if problem:
                fail(name, "wrong", f"{name} {problem}")
    wrong = [failures[part] for part in prepared.parts if part in failures]
    if wrong and check.no_warnings:  # "right and without warnings": no credit for silence alone
        failures.setdefault(NO_WARNINGS, wrong[0])
    parts = {part: part not in failures for part in prepared.parts}
    if not wrong:
        return CheckResult(check.name, "passed", 1.0, "", parts)
    outcome, message = wrong[0]
    if len(wrong) > 1:
        message += f" (and {len(wrong) - 1} more problem{'s' if len(wrong) > 2 else ''})"
    part_messages = {part: failures[part][1] for part in prepared.parts if part in failures}
    score = sum(parts.values()) / len(parts) if check.partial_credit else 0.0
    return CheckResult(check.name, outcome, score, message, parts, part_messages)


class BadReplyError(ValueError):
    """A reply file that is missing, too big, not a regular file, or not what child.py writes."""


def read_sandbox_file(path, limit):
    """The bytes of `path`, which the sandbox wrote: refuse links, FIFOs and anything big."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        raise BadReplyError(f"cannot open {path.name}: {error.strerror}") from None
    with os.fdopen(descriptor, "rb") as file:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            raise BadReplyError(f"{path.name} is not a regular file of at most {limit} bytes")
        return file.read(limit)


def read_npz_reply(path, what="reply"):
    """`(meta, arrays)` from an .npz file the sandbox wrote: its JSON under "meta", and its arrays.

    Never unpickles; BadReplyError (naming it `what`) for anything else.
    """
    data = read_sandbox_file(path, REPLY_BYTES)
    try:
        # Compressed members could unpack to far more than the file's size.
        if sum(info.file_size for info in zipfile.ZipFile(io.BytesIO(data)).infolist()) > REPLY_BYTES:
            raise BadReplyError(f"{path.name} unpacks to more than {REPLY_BYTES} bytes")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        meta = json.loads(str(arrays.pop("meta")[()]))
    except (OSError, ValueError, KeyError, RecursionError, zipfile.BadZipFile) as error:
        raise BadReplyError(f"{path.name} is not a {what}: {error}") from None
    return meta, arrays


def read_reply(path, evaluations):
    """`(meta, arrays)` from a reply file, checked against what child.py writes."""
    meta, arrays = read_npz_reply(path)
    if not valid_meta(meta, evaluations):
        raise BadReplyError(f"{path.name} is not a reply: unexpected content")
    return meta, arrays


def valid_meta(meta, evaluations):
    def text_or_none(value):
        return value is None or isinstance(value, str)

    def valid_record(record):
        return (
            isinstance(record, dict)
            and {"error", "where", "warnings", "outputs"} <= record.keys()
            and text_or_none(record.get("error"))
            and text_or_none(record.get("where"))
            and isinstance(record.get("warnings"), list)
            and all(isinstance(w, str) for w in record["warnings"])
            and isinstance(record.get("outputs"), list)
            and all(text_or_none(o) for o in record["outputs"])
        )

    if not isinstance(meta, dict):
        return False
    if "timeout" in meta:
        return isinstance(meta["timeout"], (int, float))
    if evaluations is None:  # the import reply: an error and where it was raised
        return isinstance(meta.get("error"), str) and text_or_none(meta.get("where", ""))
    records = meta.get("evaluations")
    return isinstance(records, list) and len(records) == evaluations and all(map(valid_record, records))


def shorten(text):
    return child.short(text.replace("\n", " "))


def run_child(submission, pending, scratch, limits, check_seconds):
    """Run the checks `pending` on `submission` in one sandboxed child process."""
    scratch.mkdir()
    shutil.copyfile(child.__file__, scratch / "child.py")
    request = {
        "submission": str(submission),
        "check_seconds": check_seconds,
        "checks": [prepared.request for prepared in pending],
    }
    (scratch / "request.json").write_text(json.dumps(request))
    np.savez(scratch / "inputs.npz", **{k: v for prepared in pending for k, v in prepared.arrays.items()})
    sandbox = Sandbox(submission, scratch, limits)
    return sandbox.run([sys.executable, "-I", "-B", str(scratch / "child.py"), str(scratch)])


def collect(pending, replies, run, limits):
    """`(results, unreached)`: the results this child run gave and the checks it never got to.

    A check the run died or hung in is charged to that check; the ones after
    it are unreached, to run again in a new process.
    """
    exit_text = describe_exit(run, limits)
    ended = "timeout" if run.timed_out else "crashed"
    if os.path.lexists(replies / "import.npz"):
        try:
            meta, _ = read_reply(replies / "import.npz", None)
        except BadReplyError as error:
            outcome, message = "error", f"importing miniflow gave no usable reply ({error})"
        else:
            if "timeout" in meta:
                outcome = "timeout"
                message = f"importing miniflow did not finish within {meta['timeout']:g} s"
            else:
                where = f" (at {shorten(meta['where'])})" if meta.get("where") else ""
                outcome, message = "error", f"importing miniflow raised {shorten(meta['error'])}{where}"
        return {p.name: p.failed(outcome, message) for p in pending}, []
    results = {}
    for prepared in pending:
        path = replies / f"{prepared.name}.npz"
        if not os.path.lexists(path):
            continue
        try:
            meta, arrays = read_reply(path, CALLS)
        except BadReplyError as error:
            message = f"its reply could not be read ({error}); does miniflow touch the grading files?"
            results[prepared.name] = prepared.failed("error", message)
            continue
        if "evaluations" in meta:
            for record in meta["evaluations"]:  # texts the student's code chose: keep them short
                record["error"] = record["error"] and shorten(record["error"])
                record["where"] = record["where"] and shorten(record["where"])
                record["warnings"] = [shorten(w) for w in record["warnings"]]
        results[prepared.name] = grade(prepared, meta, arrays, limits)
    unreached = [p for p in pending if p.name not in results]
    if not unreached:
        return results, []
    try:
        progress = read_sandbox_file(replies / "progress", 100).decode(errors="replace")
    except BadReplyError:
        progress = None
    if progress in (None, "import"):
        stage = "importing miniflow did not finish" if progress else "the checks did not start"
        message = f"{stage}: {exit_text}"
        results.update({p.name: p.failed(ended, message) for p in unreached})
        return results, []
    culprit = next((p for p in unreached if p.name == progress), unreached[0])
    message = f"the process running the checks ended during this one: {exit_text}" + (
        " (an endless loop?)" if run.timed_out else " (does miniflow call os._exit, or crash?)"
    )
    results[culprit.name] = culprit.failed(ended, message)
    # Checks that run the same nodes the same way (forward only, or backward too) come last:
    # they may well hang or crash again, and should not cost the others their turn.
    def alike(prepared):
        case = prepared.case
        return bool(case.kinds & culprit.case.kinds) and bool(case.wrt) == bool(culprit.case.wrt)

    rest = [p for p in unreached if p is not culprit]
    return results, sorted(rest, key=alike)


def run_checks(submission, names=None, *, limits=CHECK_LIMITS, check_seconds=10.0, max_child_runs=3):
    """Run the checks `names` (default: all) on the submission folder holding `miniflow/`.

    `check_seconds` bounds each check inside the child (best effort), `limits`
    each child process. After a check hangs or kills the child, the checks it
    did not reach run in a new one, up to `max_child_runs` processes in all.
    """
    submission = Path(submission).resolve()
    pending = [prepare(name) for name in (names or CHECKS)]
    order = [prepared.name for prepared in pending]
    results, outputs, isolated = {}, [], True
    with tempfile.TemporaryDirectory(prefix="miniflow-checks-") as workdir:
        for attempt in range(max_child_runs):
            if not pending:
                break
            scratch = Path(workdir) / f"run{attempt}"
            run = run_child(submission, pending, scratch, limits, check_seconds)
            isolated = isolated and run.isolated
            outputs.append(run.output)
            finished, pending = collect(pending, scratch / "replies", run, limits)
            results.update(finished)
    for prepared in pending:
        message = f"not run: {max_child_runs} processes in a row stopped early, on earlier checks"
        results[prepared.name] = prepared.failed("not run", message)
    return SubmissionResult(submission, {name: results[name] for name in order}, isolated, "".join(outputs))


def run_checks_in_parallel(submissions, workers=2, names=None, **options):
    """`run_checks` for each submission, `workers` at a time; results in the order given."""
    names = list(names or CHECKS)
    for name in names:  # here, not in the workers: preparing records warnings, which threads share
        prepare(name)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(functools.partial(run_checks, names=names, **options), submissions))
