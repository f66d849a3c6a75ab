"""Nodes: the boxes of a differentiable graph.

A node computes its value from the values of its inbound nodes. Each kind of
node describes only its own local rule, in two methods side by side:

    forward(*input_values)         -> this node's value
    backward(grad, *input_values)  -> one gradient per inbound node, in order

`grad` is the gradient of the graph's output with respect to this node's
value; it always has the shape of that value. The engine (graph.py) calls
these methods in order, adds up the gradients a node receives from all of its
consumers, resets them before every pass and starts the output with a gradient
of ones, so a node never does that bookkeeping itself.
"""

import itertools

import numpy as np


class MiniflowError(ValueError):
    """A graph was built, fed or computed wrongly; the message names the node."""


_creation_counter = itertools.count()


def gradient_dtype(value):
    """The dtype of a gradient of `value`: its own float dtype (float32 stays float32), else float64."""
    dtype = np.asarray(value).dtype
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


class Node:
    """Base class of every node.

    Attributes:
        name: an optional label used in error messages.
        inbound_nodes: the nodes whose values this node reads (a tuple, fixed).
        outbound_nodes: the nodes that read this node's value.
        value: the result of the last forward pass.
        gradients: after a backward pass, `gradients[self]` is the gradient of
            the output with respect to this node, and `gradients[n]` for each
            inbound node `n` is the part of n's gradient that flows through here.
        needs_grad: set by the engine before `backward`: one bool per inbound
            node, False where nobody asked for that gradient. A `backward` may
            return None for those to save work; it never has to.
    """

    is_fed = False  # True for the nodes a feed_dict gives values to

    def __init__(self, inbound_nodes, name=None):
        inbound_nodes = tuple(inbound_nodes)
        for position, node in enumerate(inbound_nodes):
            if not isinstance(node, Node):
                raise MiniflowError(
                    f"{type(self).__name__}: input {position} is a {type(node).__name__}, "
                    "not a Node; wrap data in an Input() and feed it"
                )
        self.name = name
        self.inbound_nodes = inbound_nodes
        self.outbound_nodes = []
        self.value = None
        self.gradients = {}
        self.needs_grad = (True,) * len(inbound_nodes)
        # Nodes are told apart by creation order in messages and in sorting.
        self.creation_index = next(_creation_counter)
        self.cached_graph = None
        self.cached_backward_plans = {}  # see value_and_grad
        for node in inbound_nodes:
            node.outbound_nodes.append(self)

    def forward(self, *input_values):
        """Return this node's value computed from its inputs' values."""
        raise NotImplementedError(f"{type(self).__name__}.forward is not written")

    def backward(self, grad, *input_values):
        """Return one gradient per inbound node, each shaped like that input's value."""
        raise NotImplementedError(f"{type(self).__name__}.backward is not written")

    def feed(self, value):
        raise MiniflowError(
            f"{self} computes its value from its inputs; only Input and DummyGrad nodes are fed"
        )

    def fail(self, message):
        """Raise a MiniflowError that names this node."""
        raise MiniflowError(f"{self}: {message}")

    def __repr__(self):
        kind = type(self).__name__
        return f"{kind} '{self.name}'" if self.name else f"{kind}#{self.creation_index}"


class Input(Node):
    """A value fed from outside the graph: data, labels or weights."""

    is_fed = True

    def __init__(self, name=None):
        super().__init__((), name=name)

    def feed(self, value):
        if value is None:
            self.fail("was fed None; feed it a number or an array")
        # No copy: weights fed as arrays are updated in place by sgd_update.
        self.value = np.asarray(value)

    def forward(self):
        if self.value is None:
            self.fail("has no value; give it one in the feed_dict")
        return self.value

    def backward(self, grad):
        return ()


class DummyGrad(Node):
    """Passes its input through unchanged; going back, it sends the fed gradient.

    A testing tool: feed it the upstream gradient to inject, for instance
    `feed_dict = {x: 3, dummy: 0.5}`, to check a node's backward with an
    upstream gradient other than ones. The fed gradient is broadcast to the
    shape of the input's value.
    """

    is_fed = True

    def __init__(self, node, name=None):
        super().__init__((node,), name=name)
        self.injected_gradient = None

    def feed(self, gradient):
        if gradient is None:
            self.fail("was fed None; feed it the upstream gradient to inject, a number or an array")
        self.injected_gradient = np.asarray(gradient)

    def forward(self, x):
        return x

    def backward(self, grad, x):
        if self.injected_gradient is None:
            self.fail("has no gradient to inject; give it one in the feed_dict")
        try:
            injected = np.broadcast_to(self.injected_gradient, np.shape(x))
        except ValueError:
            self.fail(
                f"the fed gradient has shape {self.injected_gradient.shape}, which does not "
                f"broadcast to its input's shape {np.shape(x)}"
            )
        return (injected.astype(gradient_dtype(x)),)
