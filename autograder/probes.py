"""Trusted grading of the test cells that call the functions students write in the notebooks.

checks.py grades the package's exercises in a child process. The notebooks' own
functions (gradient_of_f, mse_gradient, gradient_descent, run_epoch, the MNIST
networks and settings) exist only in the student's kernel, so for the test cells
listed here the kernel runs a *probe* in place of the cell's code: it calls those
functions on inputs chosen here and saves what they return, as raw numbers and
arrays, to a file in the kernel's scratch folder (SandboxedExecute). The verdict is
reached in the grading process, from those raw results (TrustedChecks). No assert
runs in the student's kernel, so a patched `np.allclose` or `AssertionError`
passes nothing, and the hidden tests' code never reaches the kernel.

A network is judged by rebuilding it here with the reference classes, from the
nodes, initial weights and settings the student's code chose, and training and
measuring it here on the grading data; the same for the weights that the
student's `run_epoch` trained. A probe's inputs are literals in its code, drawn
from fixed seeds, so every submission is graded on the same data.

    probe = PROBES["by_hand_f"]
    source = probe.kernel_code("/scratch/probe.npz")  # what the kernel runs
    passed, message = probe.verdict(read_reply(Path("/scratch/probe.npz")))
"""

import functools
import importlib
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checks import BadReplyError, load_reference, ratio_hint, read_npz_reply, shorten

# Run in the student's kernel after the probe's body (the function _miniflow_probe):
# save what it returns to `path`, numeric arrays as arrays and the rest as JSON.
SAVER = '''
def _miniflow_probe_network(net, limit=50):
    """A Network's nodes (inputs first), how they connect, and its weights."""
    import numpy

    order, ids = [], {}

    def visit(node):
        if id(node) in ids:
            return
        for inbound in node.inbound_nodes:
            visit(inbound)
        if len(order) >= limit:
            raise ValueError(f"the network has more than {limit} nodes")
        ids[id(node)] = len(order)
        order.append(node)

    visit(net.loss)
    weights = list(net.weights.items())
    found = {
        "kinds": [type(node).__name__ for node in order],
        "inputs": [[ids[id(inbound)] for inbound in node.inbound_nodes] for node in order],
        "X": ids.get(id(net.X), -1),
        "y": ids.get(id(net.y), -1),
        "loss": ids[id(net.loss)],
        "weight_nodes": [ids.get(id(node), -1) for node, _ in weights],
    }
    for position, (_, value) in enumerate(weights):
        found[f"weight{position}"] = numpy.array(value)
    return found


def _miniflow_probe_save(path):
    import json

    import numpy

    def plain(value):
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        if isinstance(value, numpy.generic):
            return value.item()
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        return {"type": type(value).__name__}

    meta, arrays = {"error": None, "types": {}, "values": {}}, {}
    try:
        results = _miniflow_probe()
    except Exception as error:
        meta["error"] = f"{type(error).__name__}: {error}"[:300]
        results = {}
    for key, value in results.items():
        meta["types"][key] = type(value).__name__
        if isinstance(value, numpy.ndarray) and value.dtype.kind in "biuf":
            arrays[key] = value
        else:
            meta["values"][key] = plain(value)
    numpy.savez(path, meta=numpy.array(json.dumps(meta)), **arrays)


_miniflow_probe_save(PATH)
del _miniflow_probe, _miniflow_probe_network, _miniflow_probe_save
'''


class WrongAnswerError(Exception):
    """Why a probe's results fail its test: the message is shown to the student."""


@dataclass(frozen=True)
class Reply:
    """What a probe's body returned: `error` if it raised, else its results by name."""

    error: str | None
    types: dict  # name -> the type name of the returned value
    values: dict  # name -> a JSON value (what was not a numeric array)
    arrays: dict  # name -> numeric array

    def number(self, key):
        """The result `key` as a float, or WrongAnswerError."""
        value = self.arrays.get(key, self.values.get(key))
        try:
            return float(np.asarray(value, dtype=float))
        except (TypeError, ValueError):
            raise WrongAnswerError(f"{key} is {self.types.get(key, 'missing')}, not a number") from None

    def array(self, key, what=None):
        """The result `key` as a float array, or WrongAnswerError (naming it `what`)."""
        what = what or key
        if key in self.arrays:
            return self.arrays[key].astype(float)
        try:
            array = np.array(self.values[key], dtype=float)
        except (KeyError, TypeError, ValueError):
            raise WrongAnswerError(
                f"{what} is a {self.types.get(key, 'missing value')}, not numbers"
            ) from None
        return array


@dataclass(frozen=True)
class Probe:
    grade_id: str
    title: str
    body: str  # the body of a function run in the student's kernel; it returns {name: value}
    judge: Callable[[Reply], None]  # raises WrongAnswerError when the results fail the test

    def kernel_code(self, path):
        """The code the kernel runs in place of the test cell's: the body, then SAVER."""
        body = self.body
        if "N_FEATURES" in body:  # the pixels per image of the data grading uses
            body = body.replace("N_FEATURES", str(grading_data().X_train.shape[1]))
        function = "def _miniflow_probe():\n" + textwrap.indent(body, "    ")
        return function + SAVER.replace("PATH", repr(str(path)))

    def verdict(self, reply):
        """`(passed, message)` for a Reply, or for None (no reply: see the cell's own outputs)."""
        if reply is None:
            return False, "the probe saved no results"
        if reply.error:
            return False, f"raised {shorten(reply.error)}"
        try:
            self.judge(reply)
        except WrongAnswerError as wrong:
            return False, str(wrong)
        except Exception as error:  # results of a shape no judge expected: the student's answer is wrong
            return False, f"unexpected results ({type(error).__name__}: {shorten(str(error))})"
        return True, ""


PROBES = {}


def probe(grade_id, title, body):
    """Register the decorated judge with its kernel-side `body` as the probe of test cell `grade_id`."""

    def register(judge):
        PROBES[grade_id] = Probe(grade_id, title, textwrap.dedent(body).strip("\n") + "\n", judge)
        return judge

    return register


def read_reply(path):
    """The Reply the probe saved at `path`; BadReplyError if there is none or it is not one."""
    path = Path(path)
    meta, arrays = read_npz_reply(path, "probe's reply")
    if not (
        isinstance(meta, dict)
        and (meta.get("error") is None or isinstance(meta["error"], str))
        and isinstance(meta.get("types"), dict)
        and isinstance(meta.get("values"), dict)
        and all(array.dtype.kind in "biuf" for array in arrays.values())
    ):
        raise BadReplyError(f"{path.name} is not a probe's reply: unexpected content")
    return Reply(meta["error"], meta["types"], meta["values"], arrays)


def literal(array):
    """Python source that rebuilds `array` exactly (floats print as their shortest exact repr)."""
    return f"np.array({np.asarray(array).tolist()!r})"


def require(condition, message):
    if not condition:
        raise WrongAnswerError(message)


# Notebook 1: the chain rule by hand.

F_POINTS = np.random.default_rng(10).integers(-9, 10, size=(6, 3)).tolist()
K_POINTS = np.random.default_rng(11).integers(-9, 10, size=(6, 3)).tolist()


def gradient_list(reply, key, at):
    """The probe's gradient `key`, returned at point `at`, as a list of 3 numbers (or WrongAnswerError)."""
    require(
        reply.types[key] in ("list", "tuple"),
        f"at {at}: returned a value of type {reply.types[key]}, not a list",
    )
    value = reply.values[key]
    require(len(value) == 3, f"at {at}: returned {len(value)} numbers, not 3")
    require(all(isinstance(item, (int, float)) for item in value), f"at {at}: returned {value}, not numbers")
    return value


def judge_gradients(reply, name, points, expected_at):
    for index, point in enumerate(points):
        got = gradient_list(reply, f"at{index}", tuple(point))
        expected = expected_at(*point)
        require(np.allclose(got, expected), f"{name}{tuple(point)} returned {got}; expected {expected}")


@probe("by_hand_f", "gradient_of_f(3, 4, -5)", "return {'at0': gradient_of_f(3, 4, -5)}")
def by_hand_f(reply):
    judge_gradients(reply, "gradient_of_f", [(3, 4, -5)], lambda x, y, z: [y + z, x, x])


@probe(
    "by_hand_f_general",
    "gradient_of_f at other points",
    f"return {{f'at{{i}}': gradient_of_f(*point) for i, point in enumerate({F_POINTS!r})}}",
)
def by_hand_f_general(reply):
    judge_gradients(reply, "gradient_of_f", F_POINTS, lambda x, y, z: [y + z, x, x])


@probe("by_hand_k", "gradient_of_k(-2, 5, -4)", "return {'at0': gradient_of_k(-2, 5, -4)}")
def by_hand_k(reply):
    judge_gradients(reply, "gradient_of_k", [(-2, 5, -4)], lambda x, y, z: [z, z, x + y])


@probe(
    "by_hand_k_general",
    "gradient_of_k at other points",
    f"return {{f'at{{i}}': gradient_of_k(*point) for i, point in enumerate({K_POINTS!r})}}",
)
def by_hand_k_general(reply):
    judge_gradients(reply, "gradient_of_k", K_POINTS, lambda x, y, z: [z, z, x + y])


# Notebook 3: the gradient of the mean squared error.

MSE_TARGETS, MSE_PREDICTIONS = np.array([1.0, 2.0, 3.0]), np.array([4.5, 5.0, 10.0])
MSE_MATRICES = [
    tuple(np.random.default_rng(60 + index).normal(size=(2, *shape)))
    for index, shape in enumerate([(5, 3), (4, 1), (2, 6)])
]


def expected_mse_gradient(targets, predictions):
    return -2 * (targets - predictions) / targets.size


def judge_mse_gradient(reply, key, targets, predictions):
    mine = reply.array(key, f"mse_gradient(y, a) for a of shape {predictions.shape}")
    require(
        mine.shape == predictions.shape,
        f"mse_gradient(y, a) for a of shape {predictions.shape} has shape {mine.shape}",
    )
    expected = expected_mse_gradient(targets, predictions)
    if not np.allclose(mine, expected):
        hint = ratio_hint(mine, expected)
        if hint and np.allclose(mine, targets.size * expected):
            hint = " (divide by the number of elements)"  # the notebook's own hint
        raise WrongAnswerError(f"mse_gradient(y, a) for a of shape {predictions.shape} is wrong{hint}")


@probe(
    "mse_lab",
    "the mean squared error of three predictions, and mse_gradient",
    f"""
    y_in, a_in = Input(name="y"), Input(name="a")
    cost = MSE(y_in, a_in)
    targets, predictions = {literal(MSE_TARGETS)}, {literal(MSE_PREDICTIONS)}
    value, _ = value_and_grad(cost, {{y_in: targets, a_in: predictions}}, wrt=[a_in])
    return {{"value": np.asarray(value), "mine": np.asarray(mse_gradient(targets, predictions))}}
    """,
)
def mse_lab(reply):
    value = reply.number("value")
    require(np.isclose(value, 23.4166666667), f"MSE gave {value:.6g}; expected 23.4167")
    judge_mse_gradient(reply, "mine", MSE_TARGETS, MSE_PREDICTIONS)


@probe(
    "mse_gradient_matrix",
    "mse_gradient for a matrix of predictions",
    "return {"
    + ", ".join(
        f"'case{index}': np.asarray(mse_gradient({literal(targets)}, {literal(predictions)}))"
        for index, (targets, predictions) in enumerate(MSE_MATRICES)
    )
    + "}",
)
def mse_gradient_matrix(reply):
    for index, (targets, predictions) in enumerate(MSE_MATRICES):
        judge_mse_gradient(reply, f"case{index}", targets, predictions)


# Notebook 4: gradient descent, by hand and with run_epoch.


@probe(
    "gradient_descent_minimum",
    "gradient_descent finds the minimum of x**4 - 3 x**3 + 2 from x = 6",
    """
    def df(x):
        return 4 * x**3 - 9 * x**2

    return {"path": np.asarray(gradient_descent(df, 6.0, learning_rate=0.01, precision=1e-5), dtype=float)}
    """,
)
def gradient_descent_minimum(reply):
    path = reply.array("path", "the path")
    require(path.ndim == 1 and len(path) > 1, f"the path should be a list of points, got shape {path.shape}")
    require(abs(path[-1] - 2.2499) < 2e-4, f"the path ends at x = {path[-1]:.6g}; the minimum is near 2.2499")


@probe(
    "gradient_descent_general",
    "gradient_descent on other functions",
    """
    path = gradient_descent(lambda x: 2 * (x - 3), 0.0, learning_rate=0.1, precision=1e-6)
    diverging = gradient_descent(lambda x: 2 * x, 1.0, learning_rate=1.5, precision=1e-6, max_steps=20)
    return {"path": np.asarray(path, dtype=float), "diverging_steps": len(diverging) - 1}
    """,
)
def gradient_descent_general(reply):
    path = reply.array("path", "the path")
    require(path.ndim == 1 and len(path) > 2, f"the path should be a list of points, got shape {path.shape}")
    require(path[0] == 0.0, "the path should start at the starting point")
    require(np.isclose(path[1], 0.6) and np.isclose(path[2], 1.08), "each step is x - learning_rate * df(x)")
    require(abs(path[-1] - 3) < 1e-4, f"the minimum of (x - 3)**2 is 3, not {path[-1]:.6g}")
    require(len(path) < 100, f"{len(path) - 1} steps: stop once a step is smaller than precision")
    steps = reply.number("diverging_steps")
    require(steps == 20, f"a diverging descent must stop after max_steps steps (got {steps:g} steps)")


@functools.cache
def diabetes_splits():
    """Notebook 4's data, as its (read-only) data cell makes it: (X_train, y_train, X_test, y_test)."""
    from sklearn.datasets import load_diabetes

    diabetes = load_diabetes()
    features, target = diabetes.data, diabetes.target
    order = np.random.default_rng(0).permutation(len(features))
    test_rows, train_rows = order[: len(order) // 5], order[len(order) // 5 :]
    feature_mean, feature_std = features[train_rows].mean(axis=0), features[train_rows].std(axis=0)
    target_mean, target_std = target[train_rows].mean(), target[train_rows].std()
    return (
        (features[train_rows] - feature_mean) / feature_std,
        (target[train_rows] - target_mean) / target_std,
        (features[test_rows] - feature_mean) / feature_std,
        (target[test_rows] - target_mean) / target_std,
    )


WEIGHT_NAMES = ("W1", "b1", "W2", "b2")


def regression_probe(seed, rng_seed):
    """Kernel code: the diabetes network trained by the student's run_epoch, its weights before and after."""
    return f"""
    graph, trainables, X, y, cost = regression_network(seed={seed})
    names = {WEIGHT_NAMES!r}
    results = {{f"{{name}}_start": np.array(t.value, dtype=float) for name, t in zip(names, trainables)}}
    rng = np.random.default_rng({rng_seed})
    for epoch in range(100):
        run_epoch(graph, trainables, X, y, X_train, y_train, 16, 0.05, rng)
    results.update({{name: np.array(t.value, dtype=float) for name, t in zip(names, trainables)}})
    return results
    """


def regression_errors(reply, suffix):
    """(training MSE, test MSE) of the diabetes network with the probe's weights `<name><suffix>`."""
    reference = load_reference()
    X, y = reference.Input(), reference.Input()
    weights = [reference.Input() for _ in WEIGHT_NAMES]
    W1, b1, W2, b2 = weights
    cost = reference.MSE(y, reference.Linear(reference.Sigmoid(reference.Linear(X, W1, b1)), W2, b2))
    values = {node: reply.array(f"{name}{suffix}") for node, name in zip(weights, WEIGHT_NAMES, strict=True)}
    X_train, y_train, X_test, y_test = diabetes_splits()
    try:
        return tuple(
            float(reference.value_and_grad(cost, {X: X_data, y: y_data, **values})[0])
            for X_data, y_data in ((X_train, y_train), (X_test, y_test))
        )
    except reference.MiniflowError as error:
        raise WrongAnswerError(f"the trained weights do not fit the network: {error}") from None


def judge_regression(reply, loss_drop, test_error):
    start, _ = regression_errors(reply, "_start")
    trained, test = regression_errors(reply, "")
    require(
        trained < loss_drop * start,
        f"after 100 epochs the training error is {trained:.3f}, from {start:.3f} before training: "
        f"it should fall below {loss_drop:g} times that",
    )
    require(test < test_error, f"the test error {test:.3f} after 100 epochs should be below {test_error:g}")


@probe("regression_trained", "the diabetes network trained with run_epoch learns", regression_probe(0, 1))
def regression_trained(reply):
    judge_regression(reply, 0.8, 0.7)


@probe("regression_retrained", "the diabetes network trained again from scratch", regression_probe(5, 6))
def regression_retrained(reply):
    judge_regression(reply, 0.75, 0.65)


def recorder_data(seed, rows, columns, classes=None):
    """Data whose column 0 holds each row's number, and targets (or labels, with `classes`)."""
    rng = np.random.default_rng(seed)
    X = np.c_[np.arange(rows), rng.normal(size=(rows, columns))]
    return X, rng.integers(0, classes, size=rows) if classes else rng.normal(size=rows)


RUN_EPOCH_BATCHES = recorder_data(70, 23, 2)
RUN_EPOCH_STEPS = recorder_data(71, 12, 3)

# Kernel code: a one-layer regression graph with nodes that record each batch's rows and loss.
RUN_EPOCH_RECORDERS = """
class BatchRecorder(Node):
    def __init__(self, x, weight):
        super().__init__((x, weight))
        self.rows_seen = []

    def forward(self, x, weight):
        return x

    def backward(self, grad, x, weight):
        self.rows_seen.append([int(row) for row in x[:, 0]])
        return grad, np.zeros_like(weight)


class LossRecorder(Node):
    def __init__(self, loss):
        super().__init__((loss,))
        self.values = []

    def forward(self, loss):
        self.values.append(float(loss))
        return loss

    def backward(self, grad, loss):
        return (grad,)


def recorded_network(n_features):
    X, y, W, b = Input(name="X"), Input(name="y"), Input(name="W"), Input(name="b")
    batches_seen = BatchRecorder(X, W)
    losses_seen = LossRecorder(MSE(y, Linear(batches_seen, W, b)))
    feed_dict = {X: np.zeros((1, n_features)), y: np.zeros(1), W: np.full((n_features, 1), 0.01)}
    feed_dict[b] = np.zeros(1)
    return topological_sort(feed_dict), [W, b], X, y, batches_seen, losses_seen
"""


def judge_batches(rows_seen, examples, batch_size, use):
    require(isinstance(rows_seen, list), "no batches were recorded")
    sizes = [len(rows) for rows in rows_seen]
    full, rest = divmod(examples, batch_size)
    expected_sizes = sorted([batch_size] * full + ([rest] if rest else []))
    batches = len(expected_sizes)
    require(
        len(sizes) == batches,
        f"{examples} examples in batches of {batch_size} make {batches} batches "
        f"(and {batches} steps), not {len(sizes)}",
    )
    require(sorted(sizes) == expected_sizes, f"batch sizes {sizes}, expected {expected_sizes}")
    seen = [row for rows in rows_seen for row in rows]
    require(sorted(seen) == list(range(examples)), "every example must be used exactly once per epoch")
    require(seen != list(range(examples)), f"the batches should be shuffled: {use}")


@probe(
    "run_epoch_batches",
    "run_epoch uses every example once, in a shuffled order, one update per batch",
    RUN_EPOCH_RECORDERS
    + f"""
X_data, y_data = {literal(RUN_EPOCH_BATCHES[0])}, {literal(RUN_EPOCH_BATCHES[1])}
graph, trainables, X, y, batches_seen, losses_seen = recorded_network(3)
run_epoch(graph, trainables, X, y, X_data, y_data, 5, 0.001, np.random.default_rng(0))
return {{"rows_seen": batches_seen.rows_seen}}
""",
)
def run_epoch_batches(reply):
    judge_batches(reply.values.get("rows_seen"), 23, 5, "use rng.permutation")


def judge_steps(reply, name, steps):
    """The step and the returned loss, against what the student's own package computed in the kernel.

    What is tested is the function's logic, not the nodes (their cells test those), so a
    bug in a node costs these points only if it breaks the logic.
    """
    require(
        np.allclose(reply.array("W_after", "W after one step"), reply.array("expected_W")),
        "one full batch makes exactly one step: W - learning_rate * dW",
    )
    require(
        np.isclose(reply.number("returned_one"), reply.number("loss_before")),
        f"with one batch, {name} should return that batch's loss",
    )
    losses = reply.values.get("losses")
    require(isinstance(losses, list), "no batch losses were recorded")
    require(len(losses) == steps, f"expected one forward pass per batch ({steps}), saw {len(losses)}")
    returned_type = reply.types.get("returned")
    require(returned_type == "float", f"return a Python float, not {returned_type}")
    require(np.isclose(reply.number("returned"), np.mean(losses)), "return the mean of the batch losses")


@probe(
    "run_epoch_steps",
    "run_epoch steps with the learning rate and returns the mean batch loss",
    RUN_EPOCH_RECORDERS
    + f"""
X_data, y_data = {literal(RUN_EPOCH_STEPS[0])}, {literal(RUN_EPOCH_STEPS[1])}
graph, trainables, X, y, batches_seen, losses_seen = recorded_network(4)
W, b = trainables
X.value, y.value = X_data, y_data
loss_before = forward_and_backward(graph)
expected_W = np.array(W.value - 0.1 * W.gradients[W], dtype=float)
returned_one = run_epoch(graph, trainables, X, y, X_data, y_data, 12, 0.1, np.random.default_rng(0))
results = {{"returned_one": returned_one, "W_after": np.array(W.value, dtype=float)}}
results.update(loss_before=loss_before, expected_W=expected_W)
graph, trainables, X, y, batches_seen, losses_seen = recorded_network(4)
returned = run_epoch(graph, trainables, X, y, X_data, y_data, 4, 0.1, np.random.default_rng(1))
results.update(returned=returned, losses=losses_seen.values)
return results
""",
)
def run_epoch_steps(reply):
    judge_steps(reply, "run_epoch", 3)


# Notebook 5: the MNIST networks, their settings and train_epoch.

# The accuracy each network must reach when grading retrains it: {data: {network: (epochs, accuracy)}},
# as notebook 5 states them (a test keeps the two the same).
GRADING_TARGETS = {
    "MNIST": {"softmax": (5, 0.90), "mlp": (10, 0.97)},
    "MNIST test split": {"softmax": (15, 0.88), "mlp": (15, 0.92)},
    "scikit-learn digits 8x8": {"softmax": (60, 0.93), "mlp": (60, 0.95)},
}
SOFTMAX_CHAIN = "Input -> Linear -> CrossEntropyWithSoftmax"
MLP_CHAIN = "Input -> Linear -> Sigmoid -> Linear -> CrossEntropyWithSoftmax"
REBUILDABLE = frozenset({"Input", "Add", "Mul", "Linear", "Sigmoid", "CrossEntropyWithSoftmax"})


def reference_data():
    """The reference's miniflow.data module."""
    return importlib.import_module(f"{load_reference().__name__}.data")


@functools.cache
def grading_data():
    """Notebook 5's data as grading sees it: MNIST from $MINIFLOW_DATA, or course_splits' fallback."""
    return reference_data().course_splits(seed=0, download=False, progress=False)


@dataclass(frozen=True)
class Network:
    """A student's network rebuilt with the reference classes."""

    X: object
    y: object
    loss: object
    weights: dict  # reference Input node -> array


def network_of(reply, weights_prefix=""):
    """The network a probe described (see SAVER's _miniflow_probe_network), rebuilt with reference classes.

    Its weights are the probe's `<weights_prefix>weight<n>` arrays.
    """
    reference = load_reference()
    kinds, inputs = reply.values.get("kinds"), reply.values.get("inputs")
    require(
        isinstance(kinds, list) and isinstance(inputs, list) and len(kinds) == len(inputs), "no network found"
    )
    nodes = []
    for index, (kind, sources) in enumerate(zip(kinds, inputs, strict=True)):
        require(kind in REBUILDABLE, f"the network holds a {kind} node; use the miniflow classes")
        require(all(isinstance(s, int) and 0 <= s < index for s in sources), "the network is malformed")
        try:
            node = (
                reference.Input()
                if kind == "Input"
                else getattr(reference, kind)(*(nodes[s] for s in sources))
            )
        except TypeError as error:
            raise WrongAnswerError(f"the {kind} node has the wrong inputs: {error}") from None
        nodes.append(node)
    X, y, loss = (int(reply.number(key)) for key in ("X", "y", "loss"))
    weight_nodes = reply.values.get("weight_nodes")
    require(isinstance(weight_nodes, list), "the network's weights are missing")
    require(0 <= X < len(nodes) and kinds[X] == "Input", "the network's X is not one of its Input nodes")
    require(0 <= y < len(nodes) and kinds[y] == "Input", "the network's y is not one of its Input nodes")
    weights = {}
    for position, index in enumerate(weight_nodes):
        require(
            isinstance(index, int) and 0 <= index < len(nodes) and kinds[index] == "Input",
            "each key of weights should be an Input node of the network",
        )
        weights[nodes[index]] = reply.array(f"{weights_prefix}weight{position}", "a weight")
    return Network(nodes[X], nodes[y], nodes[loss], weights)


def chain_of(reply):
    """Notebook 5's describe(net) of the probed network: the kinds from the images to the loss."""
    kinds, inputs = reply.values["kinds"], reply.values["inputs"]
    index, chain = int(reply.number("loss")), []
    while inputs[index]:
        chain.append(kinds[index])
        index = inputs[index][0]
    chain.append(kinds[index])
    return " -> ".join(reversed(chain))


def judge_built(reply, expected_chain, weight_count):
    chain = chain_of(reply)
    require(chain == expected_chain, f"the network is {chain}; expected {expected_chain}")
    net = network_of(reply)
    data = grading_data()
    reference = load_reference()
    logits = net.loss.inbound_nodes[0]
    try:
        scores, _ = reference.value_and_grad(logits, {net.X: data.X_train[:5], **net.weights})
        loss, grads = reference.value_and_grad(
            net.loss, {net.X: data.X_train[:5], net.y: data.y_train[:5], **net.weights}, wrt=list(net.weights)
        )
    except reference.MiniflowError as error:
        raise WrongAnswerError(f"the network does not run on 5 images: {error}") from None
    require(np.shape(scores) == (5, 10), f"5 images give scores of shape {np.shape(scores)}, not (5, 10)")
    require(np.isfinite(loss), "the loss is not finite")
    require(len(grads) == weight_count, f"the network has {len(grads)} weights; expected {weight_count}")


@probe(
    "softmax_network_built",
    "the 1-layer network gives 10 scores per image and a loss",
    "return _miniflow_probe_network(build_softmax_regression(N_FEATURES, 10, np.random.default_rng(0)))",
)
def softmax_network_built(reply):
    judge_built(reply, SOFTMAX_CHAIN, 2)


@probe(
    "mlp_network_built",
    "the lab's network gives 10 scores per image and a loss",
    "return _miniflow_probe_network(build_two_layer_network(N_FEATURES, 32, 10, np.random.default_rng(0)))",
)
def mlp_network_built(reply):
    judge_built(reply, MLP_CHAIN, 4)


def judge_structure(reply, layers):
    """The hidden structure tests of notebook 5: `layers` is [(W shape, b width)...] from the input on."""
    network_of(reply)  # a network that can be rebuilt, or WrongAnswerError
    X, y, loss = (int(reply.number(key)) for key in ("X", "y", "loss"))
    kinds, inputs, weight_nodes = (reply.values[key] for key in ("kinds", "inputs", "weight_nodes"))
    require(kinds[loss] == "CrossEntropyWithSoftmax", "the loss node should be a CrossEntropyWithSoftmax")
    logits, labels = inputs[loss]
    require(labels == y, "the labels of the loss should be the y node")
    require(kinds[logits] == "Linear", "the scores should come from a Linear node")
    linear_nodes = [logits]
    if len(layers) == 2:
        hidden = inputs[logits][0]
        require(kinds[hidden] == "Sigmoid", "the second Linear node should read a Sigmoid node")
        (first,) = inputs[hidden]
        require(kinds[first] == "Linear", "the Sigmoid node should read the first Linear node")
        linear_nodes.insert(0, first)
    require(inputs[linear_nodes[0]][0] == X, "the first Linear node should read the images from X")
    expected = {index for node in linear_nodes for index in inputs[node][1:]}
    require(set(weight_nodes) == expected, "weights should hold the Linear nodes' W and b, nothing else")
    values = {index: reply.array(f"weight{p}") for p, index in enumerate(weight_nodes)}
    for node, (W_shape, width) in zip(linear_nodes, layers, strict=True):
        W, b = values[inputs[node][1]], values[inputs[node][2]]
        require(W.shape == W_shape, f"a W has shape {W.shape}; expected {W_shape}")
        require(
            b.shape in [(width,), (1, width)], f"a b has shape {b.shape}; expected ({width},) or (1, {width})"
        )
    if len(layers) == 2:
        W1 = values[inputs[linear_nodes[0]][1]]
        require(np.ptp(W1) > 0, "W1 must start random: hidden units that start equal stay equal")
        require(np.abs(W1).max() < 5, "start with small weights")


@probe(
    "softmax_network_structure",
    "the 1-layer network is Input -> Linear -> CrossEntropyWithSoftmax",
    "return _miniflow_probe_network(build_softmax_regression(20, 10, np.random.default_rng(3)))",
)
def softmax_network_structure(reply):
    judge_structure(reply, [((20, 10), 10)])


@probe(
    "mlp_network_structure",
    "the lab's network is Input -> Linear -> Sigmoid -> Linear -> CrossEntropyWithSoftmax",
    "return _miniflow_probe_network(build_two_layer_network(20, 7, 10, np.random.default_rng(3)))",
)
def mlp_network_structure(reply):
    judge_structure(reply, [((20, 7), 7), ((7, 10), 10)])


# Kernel code: the settings `settings` returned by the student's function, as numbers.
SETTINGS_FOUND = """{
    "type": type(settings).__name__,
    "learning_rate": float(settings.learning_rate),
    "batch_size": settings.batch_size,
    "n_hidden": settings.n_hidden,
}"""


def judge_settings(reply, hidden_layer, prefix=""):
    require(reply.values.get(f"{prefix}type") == "Settings", "return a Settings(...)")
    learning_rate = reply.number(f"{prefix}learning_rate")
    require(1e-4 <= learning_rate <= 10, f"learning rate {learning_rate:g}: choose one from 0.0001 to 10")
    batch_size = reply.values.get(f"{prefix}batch_size")
    require(
        isinstance(batch_size, int) and 16 <= batch_size <= 1024,
        f"batch size {batch_size}: choose from 16 to 1024",
    )
    n_hidden = reply.values.get(f"{prefix}n_hidden")
    if hidden_layer:
        require(
            isinstance(n_hidden, int) and 16 <= n_hidden <= 256,
            f"{n_hidden} hidden units: choose from 16 to 256",
        )
    return learning_rate, batch_size, n_hidden


@probe(
    "settings_in_range",
    "both settings are within the ranges that grading allows",
    f"""
settings = softmax_settings()
found = {{"softmax_" + key: value for key, value in {SETTINGS_FOUND}.items()}}
settings = mlp_settings()
return {{**found, **{{"mlp_" + key: value for key, value in {SETTINGS_FOUND}.items()}}}}
""",
)
def settings_in_range(reply):
    judge_settings(reply, hidden_layer=False, prefix="softmax_")
    judge_settings(reply, hidden_layer=True, prefix="mlp_")


def retrained_accuracy(net, learning_rate, batch_size, epochs):
    """Train the rebuilt `net` from its initial weights with plain SGD, as notebook 5 does; test accuracy."""
    from threadpoolctl import threadpool_limits

    reference = load_reference()
    data = grading_data()
    weights = {node: np.array(value, dtype=np.float32) for node, value in net.weights.items()}
    trainables = list(weights)
    rng = np.random.default_rng(1)  # the seed of notebook 5's training cells
    try:
        with threadpool_limits(1, user_api="blas"):  # workers grade side by side: one core each
            for _ in range(epochs):
                for X_batch, y_batch in reference_data().batches(data.X_train, data.y_train, batch_size, rng):
                    reference.value_and_grad(
                        net.loss, {net.X: X_batch, net.y: y_batch, **weights}, wrt=trainables
                    )
                    reference.sgd_update(trainables, learning_rate)
            return reference.accuracy(net.loss, {net.X: data.X_test, net.y: data.y_test, **weights})
    except reference.MiniflowError as error:
        raise WrongAnswerError(f"training the network failed: {error}") from None


def judge_accuracy(reply, kind, expected_chain):
    learning_rate, batch_size, _ = judge_settings(reply, hidden_layer=kind == "mlp")
    chain = chain_of(reply)
    require(chain == expected_chain, f"the network is {chain}; expected {expected_chain}")
    net = network_of(reply)
    data = grading_data()
    epochs, needed = GRADING_TARGETS[data.source][kind]
    reached = retrained_accuracy(net, learning_rate, batch_size, epochs)
    require(
        reached >= needed,
        f"{data.source}: test accuracy {reached:.2%} after {epochs} epochs, below the target of {needed:.0%}",
    )


@probe(
    "softmax_accuracy",
    "the 1-layer network, trained again from scratch by the grader, reaches the target accuracy",
    f"""
settings = softmax_settings()
net = build_softmax_regression(N_FEATURES, 10, np.random.default_rng(0))
return {{**_miniflow_probe_network(net), **{SETTINGS_FOUND}}}
""",
)
def softmax_accuracy(reply):
    judge_accuracy(reply, "softmax", SOFTMAX_CHAIN)


@probe(
    "mlp_accuracy",
    "the lab's network, trained again from scratch by the grader, reaches the target accuracy",
    f"""
settings = mlp_settings()
net = build_two_layer_network(N_FEATURES, settings.n_hidden, 10, np.random.default_rng(0))
return {{**_miniflow_probe_network(net), **{SETTINGS_FOUND}}}
""",
)
def mlp_accuracy(reply):
    judge_accuracy(reply, "mlp", MLP_CHAIN)


@probe(
    "train_epoch_learns",
    "three epochs of train_epoch on 500 images lower the loss and raise the accuracy",
    """
net = build_softmax_regression(N_FEATURES, 10, np.random.default_rng(0))
found = _miniflow_probe_network(net)
epoch_rng = np.random.default_rng(1)
losses = [train_epoch(net, splits.X_train[:500], splits.y_train[:500], 50, 0.1, epoch_rng) for _ in range(3)]
trained = _miniflow_probe_network(net)
found.update({"trained_" + key: value for key, value in trained.items() if key.startswith("weight")})
return {**found, "losses": losses, "loss_types": [type(loss).__name__ for loss in losses]}
""",
)
def train_epoch_learns(reply):
    losses, types = reply.values.get("losses"), reply.values.get("loss_types")
    require(isinstance(losses, list) and len(losses) == 3, "train_epoch returned no losses")
    require(types[0] == "float", f"train_epoch should return a Python float, not {types[0]}")
    require(
        losses[-1] < losses[0], f"the losses of three epochs, {np.round(losses, 3).tolist()}, should go down"
    )
    data, reference = grading_data(), load_reference()
    accuracies = []
    for prefix in ("", "trained_"):  # the weights before and after the three epochs
        net = network_of(reply, prefix)
        feed = {net.X: data.X_train[:500], net.y: data.y_train[:500], **net.weights}
        try:
            accuracies.append(reference.accuracy(net.loss, feed))
        except reference.MiniflowError as error:
            raise WrongAnswerError(f"the network does not run: {error}") from None
    before, after = accuracies
    require(
        after > before + 0.3,
        f"accuracy on the 500 images went from {before:.0%} to {after:.0%}; "
        "it should rise by more than 30 points",
    )


TRAIN_EPOCH_DATA = recorder_data(80, 50, 3, classes=3)

# Kernel code: a one-layer classifier with nodes that record each batch's rows and loss.
TRAIN_EPOCH_RECORDERS = (
    """
class BatchRecorder(Node):
    def __init__(self, images, weight):
        super().__init__((images, weight))
        self.rows_seen = []

    def forward(self, images, weight):
        return images

    def backward(self, grad, images, weight):
        self.rows_seen.append([int(row) for row in np.rint(images[:, 0])])
        return grad, np.zeros_like(weight)


class RecordingCrossEntropy(CrossEntropyWithSoftmax):
    def __init__(self, logits, labels):
        super().__init__(logits, labels)
        self.batch_losses = []

    def backward(self, grad, logits, labels):
        self.batch_losses.append(float(self.value))
        return super().backward(grad, logits, labels)


def recorded_network(n_features):
    X, y, W, b = Input(name="X"), Input(name="y"), Input(name="W"), Input(name="b")
    rows = BatchRecorder(X, W)
    loss = RecordingCrossEntropy(Linear(rows, W, b), y)
    weights = {W: np.full((n_features, 3), 0.01), b: np.zeros(3)}
    return Network(X, y, loss, weights), rows
"""
    + f"""
X_data, y_data = {literal(TRAIN_EPOCH_DATA[0])}, {literal(TRAIN_EPOCH_DATA[1])}
"""
)


@probe(
    "train_epoch_batches",
    "train_epoch uses every example once, in a shuffled order, with one step per batch",
    TRAIN_EPOCH_RECORDERS
    + """
net, rows = recorded_network(4)
train_epoch(net, X_data, y_data, 12, 0.001, np.random.default_rng(0))
return {"rows_seen": rows.rows_seen}
""",
)
def train_epoch_batches(reply):
    judge_batches(reply.values.get("rows_seen"), 50, 12, "use batches(X_data, y_data, batch_size, rng)")


@probe(
    "train_epoch_steps",
    "train_epoch steps by the learning rate and returns the mean batch loss",
    TRAIN_EPOCH_RECORDERS
    + """
net, rows = recorded_network(4)
W_node = next(iter(net.weights))
loss_before, (dW, db) = value_and_grad(net.loss, net.feed(X_data, y_data), wrt=list(net.weights))
expected_W = np.array(net.weights[W_node] - 0.05 * dW, dtype=float)
returned_one = train_epoch(net, X_data, y_data, 50, 0.05, np.random.default_rng(0))
results = {"returned_one": returned_one, "W_after": np.array(net.weights[W_node], dtype=float)}
results.update(loss_before=loss_before, expected_W=expected_W)
net, rows = recorded_network(4)
returned = train_epoch(net, X_data, y_data, 20, 0.05, np.random.default_rng(1))
results.update(returned=returned, losses=net.loss.batch_losses)
return results
""",
)
def train_epoch_steps(reply):
    judge_steps(reply, "train_epoch", 3)
