"""Linear and Sigmoid: the layers of a neural network."""

import numpy as np

from .node import Node


class Linear(Node):
    """A fully connected layer: X @ W + b.

    Shapes: X (m, n) is a batch of m rows with n features each; W (n, p);
    b (p,) or (1, p). The value has shape (m, p).
    """

    def __init__(self, X, W, b, name=None):
        super().__init__((X, W, b), name=name)

    def forward(self, X, W, b):
        x_shape, w_shape, b_shape = np.shape(X), np.shape(W), np.shape(b)
        if len(x_shape) != 2 or len(w_shape) != 2 or x_shape[1] != w_shape[0]:
            self.fail(f"needs X (m, n) and W (n, p); got X {x_shape} and W {w_shape}")
        p = w_shape[1]
        if b_shape not in ((p,), (1, p)):
            self.fail(f"b must have shape ({p},) or (1, {p}) to match W {w_shape}; got {b_shape}")
        # YOUR CODE HERE: replace the line below.
        raise NotImplementedError('Linear.forward: a matrix product and a bias; the result has shape (m, p)')

    def backward(self, grad, X, W, b):
        """grad has shape (m, p); return the gradients for X (m, n), W (n, p) and b (b's shape)."""
        # YOUR CODE HERE: replace the line below.
        raise NotImplementedError('Linear.backward: write Z[i, j] = sum_k X[i, k] W[k, j] + b[j] and differentiate one entry; return (dX, dW, db)')


class Sigmoid(Node):
    """The logistic function 1 / (1 + exp(-x)), elementwise.

    Any shape; the value has the shape of x.
    """

    def __init__(self, x, name=None):
        super().__init__((x,), name=name)

    def forward(self, x):
        # YOUR CODE HERE: replace the line below.
        raise NotImplementedError('Sigmoid.forward: 1 / (1 + exp(-x)) overflows for x = -1000; exp(-abs(x)) never does, nor does np.tanh')

    def backward(self, grad, x):
        # YOUR CODE HERE: replace the line below.
        raise NotImplementedError('Sigmoid.backward: the derivative of the sigmoid s is s * (1 - s), and s is self.value')
