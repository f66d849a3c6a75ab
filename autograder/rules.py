"""Rules: values of a test cell that the grading process computes itself, with the reference package.

A test cell names a rule in a directive (`# grading: retrain=retrained_test_accuracy`);
the kernel then records only the arguments of that function's calls in the cell's
asserts, and the grader computes the call (testcells.RULES).

retrain(net, settings, epochs)
    The test accuracy of the student's network, trained again from its initial
    weights: the network is rebuilt from what the kernel recorded of it (its nodes,
    how they connect, its initial weights) with the reference classes, and trained
    with plain SGD for `epochs` epochs on notebook 5's data (batches from
    miniflow.data.batches, the training cells' seed 1), as the notebook's
    `retrained_test_accuracy` does. A bug in a node costs points once, in that
    node's tests; a doctored `accuracy` or training loop changes nothing.
"""

import functools
import importlib
import importlib.util
import numbers
import sys

import numpy as np

from .sandbox import COURSE_ROOT
from .testcells import ObjectRecord, RuleError

REFERENCE = COURSE_ROOT / "solutions" / "miniflow"
REBUILDABLE = frozenset({"Input", "Add", "Mul", "Linear", "Sigmoid", "CrossEntropyWithSoftmax"})
# What grading will train: the notebook's own limits on settings, and a cap on size and time.
LEARNING_RATES = (1e-4, 10)
BATCH_SIZES = (16, 1024)
MAX_EPOCHS = 100
MAX_HIDDEN = 256
MAX_NODES = 50
MAX_WEIGHTS = 784 * MAX_HIDDEN + MAX_HIDDEN + MAX_HIDDEN * 10 + 10  # the largest network the settings allow


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


@functools.cache
def grading_data():
    """Notebook 5's data as grading sees it: MNIST from $MINIFLOW_DATA, or course_splits' fallback."""
    data = importlib.import_module(f"{load_reference().__name__}.data")
    return data.course_splits(seed=0, download=False, progress=False)


def require(condition, message):
    if not condition:
        raise RuleError(message)


def field_of(record, name, what):
    require(
        isinstance(record, ObjectRecord) and any(key == name for key, _ in record.fields),
        f"{what} has no {name}",
    )
    return record.field(name)


def rebuild(net):
    """(X, y, loss, weights): the recorded Network rebuilt with the reference classes."""
    reference = load_reference()
    require(isinstance(net, ObjectRecord), "the network was not recorded")
    X, y, loss, weights = (field_of(net, name, "the network") for name in ("X", "y", "loss", "weights"))
    built = {}

    def build(record):
        require(isinstance(record, ObjectRecord), "the network holds something that is not a node")
        if record.id in built:
            return built[record.id]
        require(len(built) < MAX_NODES, f"the network has more than {MAX_NODES} nodes")
        require(
            record.kind in REBUILDABLE, f"the network holds a {record.kind} node; use the miniflow classes"
        )
        if record.kind == "Input":
            node = reference.Input()
        else:
            try:
                node = getattr(reference, record.kind)(*(build(inbound) for inbound in record.inputs))
            except (TypeError, reference.MiniflowError) as error:
                raise RuleError(f"the {record.kind} node has the wrong inputs: {error}") from None
        built[record.id] = node
        return node

    loss_node = build(loss)
    require(isinstance(weights, dict), "the network's weights are not a dict")
    for node, what in ((X, "X"), (y, "y"), *((key, "each key of weights") for key in weights)):
        require(
            isinstance(node, ObjectRecord) and node.kind == "Input" and node.id in built,
            f"the network's {what} should be one of its Input nodes",
        )
    total = sum(np.size(value) for value in weights.values() if isinstance(value, np.ndarray))
    require(total <= MAX_WEIGHTS, "the network has too many weights to train")
    arrays = {}
    for key, value in weights.items():
        require(
            isinstance(value, np.ndarray) and value.dtype.kind in "iuf",
            "each weight should be a numeric array",
        )
        arrays[built[key.id]] = value.astype(np.float32)
    return built[X.id], built[y.id], loss_node, arrays


def is_number(value, kind):
    return isinstance(value, kind) and not isinstance(value, bool | np.bool_)


def retrain(net, settings, epochs):
    learning_rate = field_of(settings, "learning_rate", "the settings")
    batch_size = field_of(settings, "batch_size", "the settings")
    # Settings may be numpy numbers (np.float32(0.1), np.int64(64)) as well as Python ones.
    require(
        is_number(learning_rate, numbers.Real) and LEARNING_RATES[0] <= learning_rate <= LEARNING_RATES[1],
        f"the learning rate {learning_rate!r} is not within {LEARNING_RATES}",
    )
    require(
        is_number(batch_size, numbers.Integral) and BATCH_SIZES[0] <= batch_size <= BATCH_SIZES[1],
        f"the batch size {batch_size!r} is not within {BATCH_SIZES}",
    )
    learning_rate, batch_size = float(learning_rate), int(batch_size)
    require(
        isinstance(epochs, int) and 0 < epochs <= MAX_EPOCHS, f"{epochs!r} epochs is not a number of epochs"
    )
    from threadpoolctl import threadpool_limits

    reference = load_reference()
    data_module = importlib.import_module(f"{reference.__name__}.data")
    X, y, loss, weights = rebuild(net)
    data = grading_data()
    trainables = list(weights)
    rng = np.random.default_rng(1)  # the seed of notebook 5's training cells
    try:
        with threadpool_limits(1, user_api="blas"):  # workers grade side by side: one core each
            for _ in range(epochs):
                for X_batch, y_batch in data_module.batches(data.X_train, data.y_train, batch_size, rng):
                    reference.value_and_grad(loss, {X: X_batch, y: y_batch, **weights}, wrt=trainables)
                    reference.sgd_update(trainables, learning_rate)
            return reference.accuracy(loss, {X: data.X_test, y: data.y_test, **weights})
    except reference.MiniflowError as error:
        raise RuleError(f"training the network failed: {error}") from None
