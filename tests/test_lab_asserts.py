"""Every assert and expected value of the original lab's three texts, through our API.

`draft` is lab-draft-neural-network-from-scratch.md, `taught` is
lab-build-your-own-tensorflow.txt and `walkthrough` is blog-miniflow-walkthrough.md.
Where the lab compared exactly (`value == -3`), so do we; where it used
`np.allclose` with a tolerance, we use the same tolerance and also check shapes,
which `np.allclose` cannot see.
"""

import numpy as np
import pytest


def f_xy_plus_xz(mf):
    """The lab's first graph, f = x*y + x*z, and its three inputs."""
    x, y, z = mf.Input("x"), mf.Input("y"), mf.Input("z")
    return mf.Add(mf.Mul(x, y), mf.Mul(x, z), name="f"), (x, y, z)


def test_draft_f_value_and_gradients_with_implicit_upstream_of_ones(mf):
    f, (x, y, z) = f_xy_plus_xz(mf)

    value, grad = mf.value_and_grad(f, {x: 3, y: 4, z: -5}, [x, y, z])

    assert value == -3
    assert grad == [-1, 3, 3]


def test_taught_f_with_dummygrad_half(mf):
    f, (x, y, z) = f_xy_plus_xz(mf)
    dummy = mf.DummyGrad(f)

    loss, grads = mf.value_and_grad(dummy, {x: 3, y: 4, z: -5, dummy: 0.5}, (x, y, z))

    assert loss == -3
    assert grads == [-0.5, 1.5, 1.5]


def linear_graph(mf):
    x_in, w_in, b_in = mf.Input("X"), mf.Input("W"), mf.Input("b")
    return mf.Linear(x_in, w_in, b_in), (x_in, w_in, b_in)


LAB_X = np.array([[-1.0, -2.0], [-1, -2]])
LAB_W = np.array([[2.0, -3], [2.0, -3]])


def test_draft_linear_with_row_bias_and_implicit_ones(mf):
    f, inputs = linear_graph(mf)
    b = np.array([-3.0, -3]).reshape(1, -1)

    loss, grad = mf.value_and_grad(f, dict(zip(inputs, (LAB_X, LAB_W, b), strict=True)), inputs)

    assert np.allclose(loss, np.array([[-9.0, 6.0], [-9.0, 6.0]]))
    assert np.allclose(grad[0], np.array([[-1.0, -1.0], [-1.0, -1.0]]))
    assert np.allclose(grad[1], np.array([[-2.0, -2.0], [-4.0, -4.0]]))
    assert np.allclose(grad[2], np.array([[2.0, 2.0]]))
    assert [np.shape(g) for g in grad] == [(2, 2), (2, 2), (1, 2)]


def test_taught_linear_with_dummygrad_and_a_flat_bias(mf):
    f, inputs = linear_graph(mf)
    dummy = mf.DummyGrad(f)
    b = np.array([-3.0, -5])
    feed_dict = {**dict(zip(inputs, (LAB_X, LAB_W, b), strict=True)), dummy: np.array([[1.0, 2.0], [3, 4]])}

    loss, grads = mf.value_and_grad(dummy, feed_dict, inputs)

    assert np.allclose(loss, np.array([[-9.0, 4.0], [-9.0, 4.0]]))
    assert np.allclose(grads[0], np.array([[-4.0, -4.0], [-6.0, -6.0]]))
    assert np.allclose(grads[1], np.array([[-4.0, -6.0], [-8.0, -12.0]]))
    # The lab wrote [[4., 6.]], which np.allclose accepts for any shape that
    # broadcasts; the gradient of a (2,) bias has shape (2,).
    assert np.allclose(grads[2], np.array([[4.0, 6.0]]))
    assert grads[2].shape == (2,)
    assert grads[0].shape == grads[1].shape == (2, 2)


def test_draft_sigmoid_with_implicit_ones(mf):
    x_in = mf.Input("x")
    f = mf.Sigmoid(x_in)

    loss, grad = mf.value_and_grad(f, {x_in: np.array([-10.0, 0, 10])}, [x_in])

    assert np.allclose(loss, np.array([0.0, 0.5, 1.0]), atol=1.0e-4)
    assert np.allclose(grad, np.array([0.0, 0.25, 0.0]), atol=1.0e-4)
    assert grad[0].shape == (3,)


def test_taught_sigmoid_with_dummygrad_half(mf):
    x_in = mf.Input("x")
    dummy = mf.DummyGrad(mf.Sigmoid(x_in))

    loss, grads = mf.value_and_grad(dummy, {x_in: np.array([-10.0, 0, 10]), dummy: 0.5}, [x_in])

    assert np.allclose(loss, np.array([0.0, 0.5, 1.0]), atol=1.0e-4)
    assert np.allclose(grads, np.array([0.0, 0.125, 0.0]), atol=1.0e-4)
    assert grads[0].shape == (3,)


def test_cross_entropy_with_softmax_loss_gradient_and_softmax(mf):
    x_in, y_in = mf.Input("logits"), mf.Input("labels")
    f = mf.CrossEntropyWithSoftmax(x_in, y_in)
    x = np.array([[0.5, 1.0, 1.5]])

    loss, grads = mf.value_and_grad(f, {x_in: x, y_in: np.array([1])}, wrt=[x_in])

    assert np.allclose(f._softmax(x), [[0.1863, 0.3072, 0.5064]], atol=1.0e-4)
    assert np.allclose(loss, 1.1802, atol=1.0e-4)
    assert np.allclose(grads, np.array([[0.1863, -0.6928, 0.5064]]), atol=1.0e-4)
    assert grads[0].shape == (1, 3)


def test_softmax_example_from_the_prose(mf):
    f = mf.CrossEntropyWithSoftmax(mf.Input(), mf.Input())

    probabilities = f._softmax(np.array([[0.2, 1.0, 0.3]]))

    assert np.allclose(probabilities, [[0.2309, 0.5138, 0.2551]], atol=1.0e-4)
    assert np.allclose(probabilities.sum(axis=1), 1)


def test_walkthrough_add_of_three_inputs(mf):
    x, y, z = mf.Input("x"), mf.Input("y"), mf.Input("z")
    f = mf.Add(x, y, z)

    graph = mf.topological_sort({x: 4, y: 5, z: 10})

    assert mf.forward_pass(f, graph) == 19


def test_walkthrough_mul_of_three_inputs(mf):
    x, y, z = mf.Input("x"), mf.Input("y"), mf.Input("z")
    f1 = mf.Mul(x, y, z)

    graph = mf.topological_sort({x: 4, y: 5, z: 10})

    assert mf.forward_pass(f1, graph) == 200


def test_walkthrough_linear_forward(mf):
    f, (X, W, b) = linear_graph(mf)
    feed_dict = {
        X: np.array([[1.0, 2.0], [3.0, 4.0]]),
        W: np.array([[5.0, 6.0], [7.0, 8.0]]),
        b: np.array([-1.0, -1]),
    }

    output = mf.forward_pass(f, mf.topological_sort(feed_dict))

    np.testing.assert_array_equal(output, [[18.0, 21.0], [42.0, 49.0]])


def test_walkthrough_linear_then_sigmoid_forward(mf):
    f, (X, W, b) = linear_graph(mf)
    g = mf.Sigmoid(f)
    feed_dict = {X: LAB_X, W: LAB_W, b: np.array([-3.0, -5])}

    output = mf.forward_pass(g, mf.topological_sort(feed_dict))

    expected_row = [1.23394576e-04, 9.82013790e-01]
    np.testing.assert_allclose(output, [expected_row, expected_row], rtol=1e-8)


def test_walkthrough_mse(mf):
    y, a = mf.Input("y"), mf.Input("a")
    cost = mf.MSE(y, a)

    mf.forward_pass(cost, mf.topological_sort({y: np.array([1, 2, 3]), a: np.array([4.5, 5, 10])}))

    assert cost.value == pytest.approx(23.4166666667, abs=1e-10)


def test_walkthrough_chain_rule_example_f_equals_x_plus_y_times_z(mf):
    x, y, z = mf.Input("x"), mf.Input("y"), mf.Input("z")
    f = mf.Mul(mf.Add(x, y), z)

    value, grads = mf.value_and_grad(f, {x: -2, y: 5, z: -4}, [x, y, z])

    assert value == -12
    assert grads == [-4, -4, 3]


def test_walkthrough_linear_sigmoid_mse_gradients(mf):
    X, y, W1, b = mf.Input("X"), mf.Input("y"), mf.Input("W1"), mf.Input("b")
    cost = mf.MSE(y, mf.Sigmoid(mf.Linear(X, W1, b)))
    feed_dict = {
        X: np.array([[-1.0, -2.0], [-1, -2]]),
        y: np.array([1, 2]),
        W1: np.array([[2.0], [3.0]]),
        b: np.array([-3.0]),
    }

    graph = mf.topological_sort(feed_dict)
    mf.forward_and_backward(graph)
    gradients = [t.gradients[t] for t in [X, y, W1, b]]

    # The walkthrough printed these with nine significant digits. Its y
    # gradient was (2, 1) because its MSE reshaped y; y here has shape (2,).
    expected = [
        np.array([[-3.34017280e-05, -5.01025919e-05], [-6.68040138e-05, -1.00206021e-04]]),
        np.array([0.9999833, 1.9999833]),
        np.array([[5.01028709e-05], [1.00205742e-04]]),
        np.array([-5.01028709e-05]),
    ]
    assert graph[-1] is cost
    assert cost.value == pytest.approx(2.4999498960133932, rel=1e-12)
    for gradient, want in zip(gradients, expected, strict=True):
        assert gradient.shape == want.shape
        np.testing.assert_allclose(gradient, want, rtol=1e-6)


def test_walkthrough_gradient_descent_on_a_quartic(mf):
    """x**4 - 3x**3 + 2 from x = 6, step 0.01, until a step moves x by less than 1e-5.

    The derivative comes from the graph, not from a hand-written formula.
    """
    x, minus_three, two = mf.Input("x"), mf.Input("-3"), mf.Input("2")
    f = mf.Add(mf.Mul(x, x, x, x), mf.Mul(minus_three, x, x, x), two)
    cur_x = np.array(6.0)  # updated in place by sgd_update
    feed_dict = {x: cur_x, minus_three: -3.0, two: 2.0}

    previous_step_size = float(cur_x)
    while previous_step_size > 0.00001:
        prev_x = float(cur_x)
        mf.value_and_grad(f, feed_dict, [x])
        mf.sgd_update([x], learning_rate=0.01)
        previous_step_size = abs(float(cur_x) - prev_x)

    assert f"{float(cur_x):f}" == "2.249965"
