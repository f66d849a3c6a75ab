"""MSE and CrossEntropyWithSoftmax: the losses a network is trained to minimise."""

import numpy as np

from .node import Node, gradient_dtype


class MSE(Node):
    """Mean squared error: the mean over every element of (y - a)**2.

    y holds the targets, a the predictions, both of one shape; (m,) targets
    against (m, 1) predictions are also accepted. The value is a scalar.
    """

    def __init__(self, y, a, name=None):
        super().__init__((y, a), name=name)

    def difference(self, y, a):
        """y - a, as an array of the predictions' float dtype."""
        y_shape, a_shape = np.shape(y), np.shape(a)
        m = np.size(a)
        if y_shape != a_shape and {y_shape, a_shape} != {(m,), (m, 1)}:
            self.fail(f"targets y {y_shape} and predictions a {a_shape} need the same shape")
        y, a = np.reshape(y, a_shape), np.asarray(a)
        return (y - a).astype(gradient_dtype(a), copy=False)

    def forward(self, y, a):
        diff = self.difference(y, a)
        return np.mean(diff * diff)

    def backward(self, grad, y, a):
        diff = self.difference(y, a)
        grad_y = (2 / diff.size) * grad * diff
        return grad_y.reshape(np.shape(y)), (-grad_y).reshape(np.shape(a))


class CrossEntropyWithSoftmax(Node):
    """Softmax over each row of logits, then the mean cross-entropy against the labels.

    Shapes: logits (m, k) hold k class scores for each of m rows; labels (m,)
    are integer class indices in [0, k). The value is a scalar: the mean over
    the rows of -log(softmax(logits)[i, labels[i]]).
    """

    def __init__(self, logits, labels, name=None):
        super().__init__((logits, labels), name=name)

    def check_inputs(self, logits, labels):
        if np.ndim(logits) != 2:
            self.fail(f"logits must have shape (m, k); got {np.shape(logits)}")
        m, k = np.shape(logits)
        if np.shape(labels) != (m,):
            self.fail(f"labels must have shape ({m},) for logits {np.shape(logits)}; got {np.shape(labels)}")
        if np.asarray(labels).dtype.kind not in "iu":  # signed or unsigned integers
            self.fail(f"labels must be integer class indices; got dtype {np.asarray(labels).dtype}")
        if m and (labels.min() < 0 or labels.max() >= k):
            row = int(np.flatnonzero((labels < 0) | (labels >= k))[0])
            self.fail(f"labels must lie in [0, {k}); row {row} has label {labels[row]}")

    def _softmax(self, x):
        """Each row of x (m, k) turned into probabilities that sum to 1."""
        ### BEGIN SOLUTION
        # hint: exp(x) / exp(x).sum(axis=1, keepdims=True), after subtracting each row's max from x
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
        ### END SOLUTION

    def forward(self, logits, labels):
        self.check_inputs(logits, labels)
        ### BEGIN SOLUTION
        # hint: mean of -log(softmax) at the labels; log(softmax(z)) = z - log(sum(exp(z))), z minus its max
        shifted = logits - logits.max(axis=1, keepdims=True)  # the same softmax, and exp cannot overflow
        exps = np.exp(shifted)
        sums = exps.sum(axis=1, keepdims=True)
        self.probabilities = exps / sums  # kept for backward, which needs exactly these
        # log(softmax) at each row's label: that row's shifted logit minus the log of its sum
        log_probabilities = shifted[np.arange(len(labels)), labels] - np.log(sums[:, 0])
        return -log_probabilities.mean()
        ### END SOLUTION

    def backward(self, grad, logits, labels):
        """grad is a scalar; return (gradient for logits (m, k), None: labels get none)."""
        ### BEGIN SOLUTION
        # hint: grad * (softmax - one_hot(labels)) / m; keep the softmax from forward or use self._softmax
        d_logits = self.probabilities.copy()
        d_logits[np.arange(len(labels)), labels] -= 1
        d_logits *= grad / len(labels)
        return d_logits, None
        ### END SOLUTION
