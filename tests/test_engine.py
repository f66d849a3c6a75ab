"""Regression tests: one per bug of the original lab code that the engine fixes."""

import os
import subprocess
import sys
import textwrap
import warnings
from collections import Counter

import numpy as np
import pytest
from conftest import REFERENCE


def f_xy_plus_xz(mf):
    x, y, z = mf.Input("x"), mf.Input("y"), mf.Input("z")
    return mf.Add(mf.Mul(x, y, name="g"), mf.Mul(x, z, name="h"), name="f"), (x, y, z)


# --- an input used more than once ------------------------------------------


def test_an_input_used_twice_by_one_node_gets_both_gradients(mf):
    x = mf.Input("x")
    square = mf.Mul(x, x)

    value, (grad,) = mf.value_and_grad(square, {x: np.array([3.0, -2.0, 0.5])}, [x])

    np.testing.assert_array_equal(value, [9.0, 4.0, 0.25])
    np.testing.assert_array_equal(grad, [6.0, -4.0, 1.0])


def test_an_input_feeding_several_consumers_gets_the_sum_of_their_gradients(mf):
    f, (x, y, z) = f_xy_plus_xz(mf)
    feed_dict = {x: np.array([1.0, 2.0, 3.0]), y: np.array([4.0, 5.0, 6.0]), z: np.array([-7.0, 8.0, 0.5])}

    _, (grad_x,) = mf.value_and_grad(f, feed_dict, [x])
    graph = mf.topological_sort(feed_dict)
    mf.forward_and_backward(graph)

    np.testing.assert_array_equal(grad_x, feed_dict[y] + feed_dict[z])
    np.testing.assert_array_equal(x.gradients[x], feed_dict[y] + feed_dict[z])


# --- the sort ----------------------------------------------------------------


def ladder(mf, rungs, node_class):
    """Two rails joined at every rung: the number of paths doubles with each rung."""
    left, right = mf.Input("left"), mf.Input("right")
    a, b = left, right
    for rung in range(rungs):
        a, b = node_class(a, b, name=f"a{rung}"), node_class(a, b, name=f"b{rung}")
    return node_class(a, b, name="top"), left, right


def test_the_sort_visits_each_node_once_on_a_ladder_with_two_to_the_200_paths(mf):
    forward_calls = Counter()

    class CountingAdd(mf.Add):
        def forward(self, *values):
            forward_calls[self] += 1
            return super().forward(*values)

    top, left, right = ladder(mf, 200, CountingAdd)
    feed_dict = {left: 1.0, right: 0.5}

    graph = mf.topological_sort(feed_dict)
    value, grads = mf.value_and_grad(top, feed_dict, [left, right])

    assert len(graph) == len(set(graph)) == 2 + 2 * 200 + 1
    assert graph[-1] is top
    assert len(forward_calls) == 401 and set(forward_calls.values()) == {1}
    # Every rung doubles: top = 2**200 * (left + right), summed over 2**200 paths.
    assert value == 2.0**200 * 1.5
    assert grads == [2.0**200, 2.0**200]


def node_names_in_sorted_order(mf):
    """A graph with fan-out, a DummyGrad and a leftover consumer, sorted; the nodes' names."""
    f, (x, y, z) = f_xy_plus_xz(mf)
    mf.Sigmoid(mf.Mul(y, z, name="leftover"), name="leftover_sigmoid")
    dummy = mf.DummyGrad(f, name="dummy")
    w = mf.Input("w")
    mf.Add(mf.Mul(w, x, name="wx"), mf.Mul(dummy, w, name="dw"), name="out")
    feed_dict = {x: 1.0, y: 2.0, z: 3.0, w: 4.0, dummy: 1.0}
    return [node.name for node in mf.topological_sort(feed_dict)]


def test_the_sort_gives_the_same_order_for_two_identical_graphs(mf):
    first = node_names_in_sorted_order(mf)

    assert node_names_in_sorted_order(mf) == first
    assert first[-1] == "out"


SORT_IN_A_FRESH_PROCESS = textwrap.dedent(
    """
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location(
        "miniflow_reference", sys.argv[1] + "/__init__.py", submodule_search_locations=[sys.argv[1]]
    )
    mf = importlib.util.module_from_spec(spec)
    sys.modules["miniflow_reference"] = mf
    spec.loader.exec_module(mf)
    x, y, z, w = (mf.Input(name) for name in "xyzw")
    f = mf.Add(mf.Mul(x, y, name="g"), mf.Mul(x, z, name="h"), mf.Mul(w, x, name="wx"), name="f")
    mf.Sigmoid(mf.Mul(y, z, name="leftover"), name="leftover_sigmoid")
    print(" ".join(node.name for node in mf.topological_sort({x: 1.0, y: 2.0, z: 3.0, w: 4.0})))
    """
)


def test_the_sort_gives_the_same_order_across_processes_with_different_hash_seeds():
    orders = set()
    for seed in ("0", "1", "12345"):
        result = subprocess.run(
            [sys.executable, "-c", SORT_IN_A_FRESH_PROCESS, str(REFERENCE)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        orders.add(result.stdout)

    assert len(orders) == 1
    assert orders.pop().split()[-1] == "leftover_sigmoid"


def test_dummygrad_is_listed_once(mf):
    f, (x, y, z) = f_xy_plus_xz(mf)
    dummy = mf.DummyGrad(f)

    graph = mf.topological_sort({x: 3, y: 4, z: -5, dummy: 0.5})

    assert graph.count(dummy) == 1
    assert len(graph) == len(set(graph))
    assert graph[-1] is dummy


# --- nodes left over from a re-run notebook cell ------------------------------


def classifier_loss(mf, X, W, b, labels, loss_kind):
    """What a notebook cell builds on Inputs made in an earlier cell."""
    scores = mf.Linear(X, W, b)
    if loss_kind == "mse":
        return mf.MSE(labels, scores)
    return mf.CrossEntropyWithSoftmax(scores, labels)


@pytest.mark.parametrize("loss_kind", ["mse", "cross-entropy"])
def test_consumers_left_over_from_a_rerun_cell_change_no_gradient(mf, loss_kind):
    rng = np.random.default_rng(0)
    labels_value = rng.standard_normal((4, 2)) if loss_kind == "mse" else np.array([1, 0, 0, 1])
    values = [rng.standard_normal((4, 3)), rng.standard_normal((3, 2)), rng.standard_normal(2), labels_value]

    def fresh_inputs():
        return [mf.Input(name) for name in ("X", "W", "b", "labels")]

    fresh = fresh_inputs()
    fresh_loss = classifier_loss(mf, *fresh, loss_kind)
    _, expected = mf.value_and_grad(fresh_loss, dict(zip(fresh, values, strict=True)), fresh[1:3])

    reused = fresh_inputs()
    classifier_loss(mf, *reused, loss_kind)  # the cell's first run
    loss = classifier_loss(mf, *reused, loss_kind)  # the same cell, run again
    feed_dict = dict(zip(reused, values, strict=True))
    _, W, b, _ = reused

    _, grads = mf.value_and_grad(loss, feed_dict, [W, b])
    graph = mf.topological_sort(feed_dict)
    mf.forward_and_backward(graph)

    assert graph[-1] is loss
    for got, want in zip(grads, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(W.gradients[W], expected[0])
    np.testing.assert_array_equal(b.gradients[b], expected[1])


# --- extreme values ----------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_entropy_of_logits_of_plus_or_minus_1000_is_finite(mf, dtype):
    logits, labels = mf.Input("logits"), mf.Input("labels")
    loss = mf.CrossEntropyWithSoftmax(logits, labels)
    feed_dict = {
        logits: np.array([[1000.0, -1000.0], [-1000.0, 1000.0]], dtype=dtype),
        labels: np.array([1, 1]),
    }

    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        value, (grad,) = mf.value_and_grad(loss, feed_dict, [logits])
        probabilities = loss._softmax(feed_dict[logits])

    # Row 0 puts all its probability on the wrong class: -log(e**-2000) = 2000. Row 1 costs 0.
    assert value == pytest.approx(1000.0)
    np.testing.assert_allclose(grad, [[0.5, -0.5], [0.0, 0.0]], atol=1e-7)
    np.testing.assert_array_equal(probabilities, [[1.0, 0.0], [0.0, 1.0]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_of_plus_or_minus_1000_is_finite(mf, dtype):
    x = mf.Input("x")
    s = mf.Sigmoid(x)

    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        value, (grad,) = mf.value_and_grad(s, {x: np.array([-1000.0, 0.0, 1000.0], dtype=dtype)}, [x])

    np.testing.assert_array_equal(value, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(grad, [0.0, 0.25, 0.0])


# --- errors that name the node at fault --------------------------------------


def test_a_missing_feed_names_the_input(mf):
    f, (x, y, _) = f_xy_plus_xz(mf)

    with pytest.raises(mf.MiniflowError, match=r"Input 'z'.*feed_dict"):
        mf.value_and_grad(f, {x: 3, y: 4})


def test_an_input_fed_once_then_omitted_is_not_silently_reused(mf):
    f, (x, y, z) = f_xy_plus_xz(mf)
    mf.value_and_grad(f, {x: 3, y: 4, z: -5}, [x])

    with pytest.raises(mf.MiniflowError, match=r"Input 'z'.*feed_dict"):
        mf.value_and_grad(f, {x: 3, y: 4}, [x])


def test_a_never_fed_input_in_a_sorted_graph_names_the_input(mf):
    f, (x, y, _) = f_xy_plus_xz(mf)

    with pytest.raises(mf.MiniflowError, match=r"Input 'z'.*feed_dict"):
        mf.forward_pass(f, mf.topological_sort({x: 3, y: 4}))


def test_a_missing_dummygrad_feed_names_the_dummygrad(mf):
    f, (x, y, z) = f_xy_plus_xz(mf)
    dummy = mf.DummyGrad(f, name="upstream")

    with pytest.raises(mf.MiniflowError, match=r"DummyGrad 'upstream'.*feed_dict"):
        mf.value_and_grad(dummy, {x: 3, y: 4, z: -5}, [x])


def test_a_gradient_of_the_wrong_shape_names_the_node_and_both_shapes(mf):
    class SumOverRows(mf.Node):
        """Forward is right; backward forgets to broadcast the gradient back to (m, n)."""

        def __init__(self, x, name=None):
            super().__init__([x], name=name)

        def forward(self, x):
            return x.sum(axis=0)

        def backward(self, grad, x):
            return [grad]

    x = mf.Input("x")
    node = SumOverRows(x, name="column_sums")

    with pytest.raises(mf.MiniflowError, match=r"SumOverRows 'column_sums'.*\(3,\).*\(4, 3\)"):
        mf.value_and_grad(node, {x: np.ones((4, 3))}, [x])


def test_a_label_out_of_range_names_the_node_and_the_row(mf):
    logits, labels = mf.Input("logits"), mf.Input("labels")
    loss = mf.CrossEntropyWithSoftmax(logits, labels, name="loss")
    feed_dict = {logits: np.zeros((4, 3)), labels: np.array([0, 2, 3, 1])}

    with pytest.raises(mf.MiniflowError, match=r"CrossEntropyWithSoftmax 'loss'.*row 2.*label 3"):
        mf.value_and_grad(loss, feed_dict, [logits])


def test_a_negative_label_is_refused(mf):
    logits, labels = mf.Input("logits"), mf.Input("labels")
    loss = mf.CrossEntropyWithSoftmax(logits, labels, name="loss")

    with pytest.raises(mf.MiniflowError, match=r"'loss'.*row 0.*label -1"):
        mf.value_and_grad(loss, {logits: np.zeros((3, 3)), labels: np.array([-1, 0, 1])})


def test_a_raw_number_given_as_an_input_node_is_refused_at_construction(mf):
    x = mf.Input("x")

    with pytest.raises(mf.MiniflowError, match=r"Add: input 1 is a float, not a Node.*Input"):
        mf.Add(x, 2.0)


def test_a_forward_that_returns_none_gets_a_clear_error(mf):
    class StoresInsteadOfReturning(mf.Node):
        """The original lab's style: forward sets self.value and returns nothing."""

        def __init__(self, x, name=None):
            super().__init__([x], name=name)

        def forward(self, x):
            self.value = 2 * x

    x = mf.Input("x")

    with pytest.raises(mf.MiniflowError, match=r"'double'.*forward returned None"):
        mf.value_and_grad(StoresInsteadOfReturning(x, name="double"), {x: 1.0})


def test_the_base_node_methods_raise_notimplementederror(mf):
    node = mf.Node([])

    with pytest.raises(NotImplementedError, match=r"Node\.forward"):
        node.forward()
    with pytest.raises(NotImplementedError, match=r"Node\.backward"):
        node.backward(np.ones(3))


def test_a_node_without_forward_raises_notimplementederror_in_a_graph(mf):
    class Unwritten(mf.Node):
        pass

    x = mf.Input("x")

    with pytest.raises(NotImplementedError, match=r"Unwritten\.forward"):
        mf.value_and_grad(Unwritten([x]), {x: 1.0})


# --- dtypes and shapes -------------------------------------------------------


def test_int_feeds_give_float_gradients(mf):
    f, (x, y, z) = f_xy_plus_xz(mf)
    dummy = mf.DummyGrad(f)
    feed_dict = {x: np.array([1, 2]), y: np.array([3, 4]), z: np.array([5, -7]), dummy: 0.5}

    value, (grad_x, grad_y) = mf.value_and_grad(dummy, feed_dict, [x, y])

    np.testing.assert_array_equal(value, [8, -6])
    # Halves: an int accumulator would truncate them.
    np.testing.assert_array_equal(grad_x, [4.0, -1.5])
    np.testing.assert_array_equal(grad_y, [0.5, 1.0])


def test_int_data_through_a_linear_layer(mf):
    X, W, b = mf.Input("X"), mf.Input("W"), mf.Input("b")
    feed_dict = {X: np.array([[1, 2], [3, 4], [5, 6]]), W: np.array([[1], [-1]]), b: np.array([2])}

    value, (grad_W, grad_b) = mf.value_and_grad(mf.Linear(X, W, b), feed_dict, [W, b])

    np.testing.assert_array_equal(value, [[1], [1], [1]])
    np.testing.assert_array_equal(grad_W, [[9.0], [12.0]])
    np.testing.assert_array_equal(grad_b, [3.0])


def mlp(mf):
    names = ("X", "W1", "b1", "W2", "b2", "labels")
    X, W1, b1, W2, b2, labels = nodes = [mf.Input(name) for name in names]
    hidden_in = mf.Linear(X, W1, b1)
    hidden = mf.Sigmoid(hidden_in)
    scores = mf.Linear(hidden, W2, b2)
    loss = mf.CrossEntropyWithSoftmax(scores, labels)
    return loss, nodes, [hidden_in, hidden, scores, loss]


def mlp_feed(nodes, dtype, rng):
    shapes = [(6, 4), (4, 5), (5,), (5, 3), (1, 3)]
    arrays = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    return dict(zip(nodes, [*arrays, np.array([0, 2, 1, 1, 0, 2])], strict=True))


def test_float32_stays_float32_end_to_end(mf):
    loss, nodes, computed = mlp(mf)
    feed_dict = mlp_feed(nodes, np.float32, np.random.default_rng(1))
    trainables = nodes[:5]

    value, grads = mf.value_and_grad(loss, feed_dict, trainables)
    after_value_and_grad = [node.gradients[node].dtype for node in computed]
    mf.forward_and_backward(mf.topological_sort(feed_dict))
    mf.sgd_update(trainables[1:], learning_rate=0.1)

    assert value.dtype == np.float32
    assert [grad.dtype for grad in grads] == [np.float32] * 5
    assert [node.value.dtype for node in computed] == [np.float32] * 4
    assert after_value_and_grad == [np.float32] * 4
    assert [node.gradients[node].dtype for node in trainables + computed] == [np.float32] * 9
    assert [feed_dict[node].dtype for node in trainables] == [np.float32] * 5


def test_a_flat_bias_gets_a_flat_gradient(mf):
    X, W, b = mf.Input("X"), mf.Input("W"), mf.Input("b")
    dummy = mf.DummyGrad(mf.Linear(X, W, b))
    upstream = np.arange(12.0).reshape(4, 3)
    feed_dict = {X: np.ones((4, 2)), W: np.ones((2, 3)), b: np.zeros(3), dummy: upstream}

    _, (grad_b,) = mf.value_and_grad(dummy, feed_dict, [b])

    assert grad_b.shape == (3,)
    np.testing.assert_array_equal(grad_b, upstream.sum(axis=0))


def test_mse_with_several_targets_per_row_is_the_mean_over_every_element(mf):
    y, a = mf.Input("y"), mf.Input("a")

    value, (grad_a,) = mf.value_and_grad(mf.MSE(y, a), {y: np.zeros((2, 3)), a: np.ones((2, 3))}, [a])

    assert value == 1.0
    np.testing.assert_allclose(grad_a, np.full((2, 3), 2 / 6))


# --- state between calls -----------------------------------------------------


def test_repeated_value_and_grad_does_not_accumulate(mf):
    loss, nodes, _ = mlp(mf)
    feed_dict = mlp_feed(nodes, np.float64, np.random.default_rng(2))

    first_value, first = mf.value_and_grad(loss, feed_dict, nodes[:5])
    second_value, second = mf.value_and_grad(loss, feed_dict, nodes[:5])

    assert first_value == second_value
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_repeated_forward_and_backward_does_not_accumulate(mf):
    _, nodes, _ = mlp(mf)
    feed_dict = mlp_feed(nodes, np.float64, np.random.default_rng(3))
    graph = mf.topological_sort(feed_dict)

    mf.forward_and_backward(graph)
    first = [node.gradients[node].copy() for node in nodes[:5]]
    mf.forward_and_backward(graph)

    for node, want in zip(nodes[:5], first, strict=True):
        np.testing.assert_array_equal(node.gradients[node], want)


def test_a_gradient_not_asked_for_again_is_not_left_for_sgd_update(mf):
    f, (x, y, z) = f_xy_plus_xz(mf)
    feed_dict = {x: np.array([1.0]), y: np.array([2.0]), z: np.array([3.0])}
    mf.value_and_grad(f, feed_dict, [x, y])

    mf.value_and_grad(f, feed_dict, [x])

    with pytest.raises(mf.MiniflowError, match=r"Input 'y' has no gradient"):
        mf.sgd_update([y])
    np.testing.assert_array_equal(feed_dict[y], [2.0])


def test_nodes_share_no_mutable_default(mf):
    a, b = mf.Input("a"), mf.Input("b")
    mf.Add(a, name="uses_a")

    assert b.outbound_nodes == []
    assert a.outbound_nodes is not b.outbound_nodes
    assert a.gradients is not b.gradients


# --- sgd_update ----------------------------------------------------------------


def test_sgd_update_changes_the_users_array_in_place(mf):
    x, w = mf.Input("x"), mf.Input("w")
    w_value = np.array([1.0, -2.0, 0.5])
    feed_dict = {x: np.array([3.0, 4.0, -1.0]), w: w_value}
    mf.value_and_grad(mf.Mul(x, w), feed_dict, [w])

    mf.sgd_update([w], learning_rate=0.5)

    assert feed_dict[w] is w_value
    np.testing.assert_array_equal(w_value, [1.0 - 1.5, -2.0 - 2.0, 0.5 + 0.5])


def test_sgd_update_refuses_int_weights_clearly(mf):
    x, w = mf.Input("x"), mf.Input("w")
    w_value = np.array([1, 2, 3])
    mf.value_and_grad(mf.Mul(x, w), {x: np.array([0.5, 0.5, 0.5]), w: w_value}, [w])

    with pytest.raises(mf.MiniflowError, match=r"Input 'w'.*int64.*float"):
        mf.sgd_update([w])
    np.testing.assert_array_equal(w_value, [1, 2, 3])


# --- wrt -----------------------------------------------------------------------


def test_value_and_grad_skips_gradients_nobody_asked_for(mf):
    needs_grad_seen = []

    class RecordingLinear(mf.Linear):
        def backward(self, grad, X, W, b):
            needs_grad_seen.append(self.needs_grad)
            return super().backward(grad, X, W, b)

    rng = np.random.default_rng(4)
    X, W, b = mf.Input("X"), mf.Input("W"), mf.Input("b")
    dummy = mf.DummyGrad(RecordingLinear(X, W, b))
    feed_dict = {X: rng.standard_normal((4, 3)), W: rng.standard_normal((3, 2)), b: rng.standard_normal(2)}
    feed_dict[dummy] = rng.standard_normal((4, 2))

    _, all_three = mf.value_and_grad(dummy, feed_dict, [X, W, b])
    _, (grad_W, grad_b) = mf.value_and_grad(dummy, feed_dict, [W, b])

    assert needs_grad_seen == [(True, True, True), (False, True, True)]
    assert X not in X.gradients
    np.testing.assert_array_equal(grad_W, all_three[1])
    np.testing.assert_array_equal(grad_b, all_three[2])


@pytest.mark.parametrize("fed", ["Input", "DummyGrad"])
def test_feeding_none_names_the_node(mf, fed):
    x = mf.Input(name="x")
    dummy = mf.DummyGrad(mf.Sigmoid(x), name="upstream")
    feed_dict = {x: np.ones(3), dummy: np.ones(3)}
    feed_dict[x if fed == "Input" else dummy] = None
    name = "'x'" if fed == "Input" else "'upstream'"
    with pytest.raises(mf.MiniflowError, match=f"{name}: was fed None"):
        mf.value_and_grad(dummy, feed_dict, wrt=[x])
    with pytest.raises(mf.MiniflowError, match="was fed None"):
        mf.topological_sort(feed_dict)


def test_forward_and_backward_names_an_input_set_to_none(mf):
    X, W, b = mf.Input(name="X"), mf.Input(name="W"), mf.Input(name="b")
    mf.Linear(X, W, b)
    graph = mf.topological_sort({X: np.ones((2, 3)), W: np.ones((3, 1)), b: np.zeros(1)})
    X.value = None
    with pytest.raises(mf.MiniflowError, match="Input 'X': has no value"):
        mf.forward_and_backward(graph)


def test_value_and_grad_refuses_a_value_for_a_computed_node_as_topological_sort_does(mf):
    x = mf.Input(name="x")
    doubled = mf.Add(x, x, name="doubled")
    with pytest.raises(mf.MiniflowError, match="'doubled' computes its value from its inputs"):
        mf.value_and_grad(doubled, {x: 1.0, doubled: 5.0})
    with pytest.raises(mf.MiniflowError, match="'doubled' computes its value from its inputs"):
        mf.topological_sort({doubled: 5.0})


def test_a_feed_dict_key_that_is_not_a_node_is_named(mf):
    x = mf.Input(name="x")
    doubled = mf.Add(x, x)
    with pytest.raises(mf.MiniflowError, match="key 'x', a str; its keys are the Input nodes"):
        mf.value_and_grad(doubled, {"x": 1.0})
    with pytest.raises(mf.MiniflowError, match="key 'x', a str; its keys are the Input nodes"):
        mf.topological_sort({"x": 1.0})


def scaled_graph(mf):
    """sigmoid(x * scale) + offset + data, through a DummyGrad: constants fed beside the data.

    Mul needs inputs of one shape: x is a scalar; Add broadcasts it to data's shape.
    """
    x, scale, offset, data = (mf.Input(name=name) for name in ("x", "scale", "offset", "data"))
    dummy = mf.DummyGrad(mf.Add(mf.Sigmoid(mf.Mul(x, scale)), offset, data))
    return dummy, (x, scale, offset, data)


@pytest.mark.parametrize(
    "upstream", [0.5, np.array([0.5, -1.0, 2.0]), np.array([0.5, -1.0, 2.0], dtype=np.float32)]
)
@pytest.mark.parametrize("scale_value", [2.0, 2])
def test_a_python_number_beside_float32_arrays_keeps_the_graph_float32(mf, upstream, scale_value):
    dummy, (x, scale, offset, data) = scaled_graph(mf)
    # A DummyGrad's gradient, even a float64 array, does not decide the graph's dtype.
    feed_dict = {
        x: np.float32(0.75),
        scale: scale_value,
        offset: 1.0,
        data: np.array([0.5, -1.5, 3.0], dtype=np.float32),
        dummy: upstream,
    }

    value, grads = mf.value_and_grad(dummy, feed_dict, wrt=[x, scale, offset, data])
    assert value.dtype == np.float32
    assert [grad.dtype for grad in grads] == [np.float32] * 4

    graph = mf.topological_sort(feed_dict)
    mf.forward_and_backward(graph)
    assert scale.value.dtype == offset.value.dtype == np.float32
    assert [node.gradients[node].dtype for node in graph] == [np.float32] * len(graph)


def test_python_numbers_beside_float64_or_int_data_are_fed_as_before(mf):
    dummy, (x, scale, offset, data) = scaled_graph(mf)
    feed_dict = {x: 0.75, scale: 2.0, offset: 1.0, data: np.array([0.5, -1.5, 3.0]), dummy: np.float32(0.5)}
    value64, grads64 = mf.value_and_grad(dummy, feed_dict, wrt=[x, scale, data])
    assert value64.dtype == np.float64  # float64 data stays float64
    assert [grad.dtype for grad in grads64] == [np.float64] * 3

    mixed = {**feed_dict, x: np.float32(0.75)}
    assert mf.value_and_grad(dummy, mixed)[0].dtype == np.float64  # float32 and float64 data: as numpy

    x, scale = mf.Input(name="x"), mf.Input(name="scale")
    product, (grad_x,) = mf.value_and_grad(mf.Mul(x, scale), {x: 3, scale: 4}, wrt=[x])
    assert product == 12 and product.dtype.kind == "i"  # int feeds work as before
    assert grad_x == 4.0 and grad_x.dtype == np.float64
    ints_and_a_float = {x: np.array([1, 2]), scale: np.array([2.0, 2.0])}
    assert mf.value_and_grad(mf.Mul(x, scale), ints_and_a_float)[0].dtype == np.float64
