"""Add and Mul: the nodes of the lab's first graph, f = x*y + x*z."""

import numpy as np

from .node import Node


def sum_to_shape(grad, shape):
    """Undo numpy broadcasting: sum `grad` over the axes that broadcasting added or stretched."""
    while np.ndim(grad) > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and np.shape(grad)[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


class Add(Node):
    """The sum of its inputs: x + y (+ z ...).

    Shapes broadcast as in numpy; the value has the broadcast shape.
    """

    def __init__(self, *nodes, name=None):
        super().__init__(nodes, name=name)
        if not nodes:
            self.fail("needs at least one input")

    def forward(self, *values):
        try:
            np.broadcast_shapes(*(np.shape(value) for value in values))
        except ValueError:
            self.fail(f"input shapes {[np.shape(v) for v in values]} do not broadcast together")
        total = values[0]
        for value in values[1:]:
            total = total + value
        return total

    def backward(self, grad, *values):
        # d(x + y)/dx = 1: every input receives the upstream gradient as it is,
        # summed back to the input's own shape where broadcasting stretched it.
        return [sum_to_shape(grad, np.shape(value)) for value in values]


class Mul(Node):
    """The elementwise product of its inputs: x * y (* z ...).

    All inputs have the same shape (scalars, or arrays of one shape); the value
    has that shape too.
    """

    def __init__(self, *nodes, name=None):
        super().__init__(nodes, name=name)
        if not nodes:
            self.fail("needs at least one input")

    def forward(self, *values):
        shapes = [np.shape(value) for value in values]
        if len(set(shapes)) > 1:
            self.fail(f"inputs have shapes {shapes}; Mul multiplies elementwise and needs one shape")
        # YOUR CODE HERE: replace the line below.
        raise NotImplementedError('Mul.forward: multiply all the input values together, elementwise')

    def backward(self, grad, *values):
        # YOUR CODE HERE: replace the line below.
        raise NotImplementedError("Mul.backward: d(x*y)/dx = y, so x's gradient is grad times every other input's value")
