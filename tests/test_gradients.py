"""Finite-difference checks of every node's gradients, in float64 and float32.

Each check wraps the node under test in a DummyGrad fed a random upstream
gradient g, so the analytic gradients are those of sum(g * node.value). The
same sum is differentiated numerically with central differences on float64
copies of the inputs. Inputs are random and non-symmetric, batches have three
or more rows: the lab's own asserts let many classic bugs through.
"""

import numpy as np
import pytest

STEP = 1e-6
# float64 agrees with central differences to ~1e-9; float32 keeps ~7 digits,
# of which its own rounding costs a few.
TOLERANCE = {np.float64: 1e-6, np.float32: 1e-3}
DTYPES = [np.float64, np.float32]


def as_dtype(value, dtype):
    """Floating data in `dtype`; integer data (labels) as it is."""
    value = np.asarray(value)
    return value.astype(dtype) if np.issubdtype(value.dtype, np.floating) else value


def forward_value(mf, node, feed_dict):
    value, _ = mf.value_and_grad(node, feed_dict)
    return np.asarray(value, dtype=np.float64)


def objective_with_one_element_moved(objective, feed_dict, node, index, step):
    moved = feed_dict[node].copy()
    moved[index] += step
    return objective({**feed_dict, node: moved})


def central_difference(objective, feed_dict, node):
    """d objective / d feed_dict[node], one element at a time."""
    gradient = np.zeros_like(feed_dict[node])
    for index in np.ndindex(gradient.shape):
        plus = objective_with_one_element_moved(objective, feed_dict, node, index, STEP)
        minus = objective_with_one_element_moved(objective, feed_dict, node, index, -STEP)
        gradient[index] = (plus - minus) / (2 * STEP)
    return gradient


def assert_close(actual, expected, tolerance):
    """Elementwise relative agreement, measured against the largest entry (entries near 0 are common)."""
    scale = max(np.abs(expected).max(), 1e-12)
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * scale)


def check_gradients(mf, node, feed_dict, wrt, dtype, rng):
    """Assert that `node`'s gradients with respect to `wrt` match finite differences.

    The analytic pass runs on `feed_dict` converted to `dtype`; its value and
    every gradient must stay in `dtype` and have the shape of its node's value.
    """
    feed_in_dtype = {n: as_dtype(v, dtype) for n, v in feed_dict.items()}
    feed_in_float64 = {n: as_dtype(v, np.float64) for n, v in feed_in_dtype.items()}
    value_shape = np.shape(forward_value(mf, node, feed_in_float64))
    upstream = rng.standard_normal(value_shape).astype(dtype)
    dummy = mf.DummyGrad(node)

    value, grads = mf.value_and_grad(dummy, {**feed_in_dtype, dummy: upstream}, wrt)

    tolerance = TOLERANCE[dtype]
    assert np.asarray(value).dtype == dtype
    assert_close(value, forward_value(mf, node, feed_in_float64), tolerance)
    upstream = upstream.astype(np.float64)

    def objective(feed):
        return np.sum(upstream * forward_value(mf, node, feed))

    for target, grad in zip(wrt, grads, strict=True):
        assert np.asarray(grad).dtype == dtype, f"gradient of {target}"
        assert np.shape(grad) == np.shape(feed_dict[target]), f"gradient of {target}"
        assert_close(grad, central_difference(objective, feed_in_float64, target), tolerance)


def inputs(mf, *names):
    return [mf.Input(name) for name in names]


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_with_broadcasting(mf, dtype):
    rng = np.random.default_rng(1)
    x, row, column, scalar = inputs(mf, "x", "row", "column", "scalar")
    node = mf.Add(x, row, column, scalar)
    feed_dict = {
        x: rng.standard_normal((4, 3)),
        row: rng.standard_normal(3),
        column: rng.standard_normal((4, 1)),
        scalar: rng.standard_normal(()),
    }
    check_gradients(mf, node, feed_dict, [x, row, column, scalar], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_of_a_row_shaped_one_by_p(mf, dtype):
    rng = np.random.default_rng(2)
    x, row = inputs(mf, "x", "row")
    feed_dict = {x: rng.standard_normal((3, 5)), row: rng.standard_normal((1, 5))}
    check_gradients(mf, mf.Add(x, row), feed_dict, [x, row], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mul_of_two_inputs(mf, dtype):
    rng = np.random.default_rng(3)
    x, y = inputs(mf, "x", "y")
    feed_dict = {x: rng.standard_normal((3, 4)), y: rng.standard_normal((3, 4))}
    check_gradients(mf, mf.Mul(x, y), feed_dict, [x, y], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mul_of_three_inputs(mf, dtype):
    rng = np.random.default_rng(4)
    x, y, z = inputs(mf, "x", "y", "z")
    feed_dict = {name: rng.standard_normal((4, 2)) for name in (x, y, z)}
    check_gradients(mf, mf.Mul(x, y, z), feed_dict, [x, y, z], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mul_with_an_input_used_twice(mf, dtype):
    rng = np.random.default_rng(5)
    x, y = inputs(mf, "x", "y")
    feed_dict = {x: rng.standard_normal((3, 3)), y: rng.standard_normal((3, 3))}
    check_gradients(mf, mf.Mul(x, x, y), feed_dict, [x, y], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mul_fan_out_through_two_consumers(mf, dtype):
    rng = np.random.default_rng(6)
    x, y, z = inputs(mf, "x", "y", "z")
    node = mf.Add(mf.Mul(x, y), mf.Mul(x, z))
    feed_dict = {name: rng.standard_normal((5, 2)) for name in (x, y, z)}
    check_gradients(mf, node, feed_dict, [x, y, z], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias_shape", [(5,), (1, 5)])
def test_linear(mf, dtype, bias_shape):
    rng = np.random.default_rng(7)
    X, W, b = inputs(mf, "X", "W", "b")
    feed_dict = {
        X: rng.standard_normal((4, 3)),
        W: rng.standard_normal((3, 5)),
        b: rng.standard_normal(bias_shape),
    }
    check_gradients(mf, mf.Linear(X, W, b), feed_dict, [X, W, b], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid(mf, dtype):
    rng = np.random.default_rng(8)
    (x,) = inputs(mf, "x")
    feed_dict = {x: 3 * rng.standard_normal((4, 3))}
    check_gradients(mf, mf.Sigmoid(x), feed_dict, [x], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("target_shape", "prediction_shape"),
    [((4, 3), (4, 3)), ((4,), (4, 1)), ((4, 1), (4,))],
    ids=["(m,k) vs (m,k)", "(m,) vs (m,1)", "(m,1) vs (m,)"],
)
def test_mse(mf, dtype, target_shape, prediction_shape):
    rng = np.random.default_rng(9)
    y, a = inputs(mf, "y", "a")
    feed_dict = {y: rng.standard_normal(target_shape), a: rng.standard_normal(prediction_shape)}
    check_gradients(mf, mf.MSE(y, a), feed_dict, [y, a], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_with_softmax(mf, dtype):
    rng = np.random.default_rng(10)
    logits, labels = inputs(mf, "logits", "labels")
    feed_dict = {logits: 2 * rng.standard_normal((5, 4)), labels: np.array([3, 0, 2, 2, 1])}
    check_gradients(mf, mf.CrossEntropyWithSoftmax(logits, labels), feed_dict, [logits], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_layer_mlp(mf, dtype):
    rng = np.random.default_rng(11)
    X, W1, b1, W2, b2, labels = inputs(mf, "X", "W1", "b1", "W2", "b2", "labels")
    hidden = mf.Sigmoid(mf.Linear(X, W1, b1))
    loss = mf.CrossEntropyWithSoftmax(mf.Linear(hidden, W2, b2), labels)
    feed_dict = {
        X: rng.standard_normal((5, 4)),
        W1: rng.standard_normal((4, 6)),
        b1: rng.standard_normal(6),
        W2: rng.standard_normal((6, 3)),
        b2: rng.standard_normal((1, 3)),
        labels: np.array([2, 0, 1, 1, 0]),
    }
    check_gradients(mf, loss, feed_dict, [X, W1, b1, W2, b2], dtype, rng)
