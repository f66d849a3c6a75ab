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
        ### BEGIN SOLUTION
        # hint: a matrix product and a bias; the result has shape (m, p)
        return X @ W + b
        ### END SOLUTION

    def backward(self, grad, X, W, b):
        """grad has shape (m, p); return the gradients for X (m, n), W (n, p) and b (b's shape)."""
        ### BEGIN SOLUTION
        # hint: write Z[i, j] = sum_k X[i, k] W[k, j] + b[j] and differentiate one entry; return (dX, dW, db)
        # X is usually data nobody needs a gradient for; skipping it saves a third of the work.
        dX = grad @ W.T if self.needs_grad[0] else None
        dW = X.T @ grad
        db = grad.sum(axis=0).reshape(np.shape(b))
        return dX, dW, db
        ### END SOLUTION


class Sigmoid(Node):
    """The logistic function 1 / (1 + exp(-x)), elementwise.

    Any shape; the value has the shape of x.
    """

    def __init__(self, x, name=None):
        super().__init__((x,), name=name)

    def forward(self, x):
        ### BEGIN SOLUTION
        # hint: 1 / (1 + exp(-x)) overflows for x = -1000; exp(-abs(x)) never does, nor does np.tanh
        # The same function as 1 / (1 + exp(-x)), with one cheap, bounded np.tanh.
        return 0.5 * (1 + np.tanh(0.5 * x))
        ### END SOLUTION

    def backward(self, grad, x):
        ### BEGIN SOLUTION
        # hint: the derivative of the sigmoid s is s * (1 - s), and s is self.value
        s = self.value
        return grad * s * (1 - s)
        ### END SOLUTION
