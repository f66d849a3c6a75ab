"""Stochastic gradient descent."""

import numpy as np

from .node import MiniflowError


def sgd_update(trainables, learning_rate=1e-2):
    """Move each trainable node's value one step against its gradient.

    Reads `t.gradients[t]` as left by `value_and_grad` or
    `forward_and_backward`, and updates `t.value` in place, so arrays you
    keep in a feed_dict see the new weights.
    """
    for t in trainables:
        grad = t.gradients.get(t)
        if grad is None:
            raise MiniflowError(f"{t} has no gradient yet; compute it (wrt=[...]) before sgd_update")
        if np.asarray(t.value).dtype.kind != "f":  # not a float array
            raise MiniflowError(
                f"{t} holds {np.asarray(t.value).dtype} values, which cannot take a fractional "
                "step; feed weights as floats, e.g. np.asarray(W, dtype=np.float32)"
            )
        t.value -= learning_rate * grad
