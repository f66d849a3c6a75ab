"""miniflow: a small differentiable-graph library, built one node at a time."""

from .arithmetic import Add, Mul
from .graph import accuracy, forward_and_backward, forward_pass, topological_sort, value_and_grad
from .layers import Linear, Sigmoid
from .losses import MSE, CrossEntropyWithSoftmax
from .node import DummyGrad, Input, MiniflowError, Node
from .optim import sgd_update
from .selfcheck import check

__all__ = [
    "Node",
    "Input",
    "Add",
    "Mul",
    "Linear",
    "Sigmoid",
    "MSE",
    "CrossEntropyWithSoftmax",
    "DummyGrad",
    "MiniflowError",
    "value_and_grad",
    "topological_sort",
    "forward_pass",
    "forward_and_backward",
    "sgd_update",
    "accuracy",
    "check",
]
