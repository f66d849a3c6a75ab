"""The local rule of each kind of node, in words, for the step-through.

A node is looked up by its class name, so your own classes are described
even after the autoreload extension has reloaded them. A kind of node not
listed here is described by its method names.
"""

import numpy as np

from .numbers import format_array, format_number, is_scalar

FORWARD_RULES = {
    "Add": "{out} = {sum}",
    "Mul": "{out} = {product}",
    "Linear": "{out} = {0} @ {1} + {2}",
    "Sigmoid": "{out} = 1 / (1 + exp(-{0}))",
    "MSE": "{out} = mean(({0} - {1})**2)",
    "CrossEntropyWithSoftmax": "{out} = mean(-log(softmax({0})[row, {1}]))",
    "DummyGrad": "{out} = {0}, passed through unchanged",
}

# d(out)/d(input) in words: one text for every input, or one per input position.
BACKWARD_RULES = {
    "Add": "d({sum})/d{this} = 1",
    "Mul": "d({product})/d{this} = {others}",
    # In index form: turning these sums into matrix code is the student's exercise.
    "Linear": (
        "d{this}[i, k] = sum over j of grad[i, j] * {1}[k, j]",
        "d{this}[k, j] = sum over i of {0}[i, k] * grad[i, j]",
        "d{this}[j] = sum over i of grad[i, j]",
    ),
    "Sigmoid": "d sigmoid({0})/d{0} = {out} * (1 - {out})",
    "MSE": ("{this} gets 2 * ({0} - {1}) / n * grad", "{this} gets -2 * ({0} - {1}) / n * grad"),
    "CrossEntropyWithSoftmax": (
        "{this} gets (softmax({0}) - one_hot({1})) / m * grad",
        "labels get no gradient",
    ),
    "DummyGrad": "{this} is sent the fed gradient instead",
}


def names(trace, node, position=0):
    """The words a rule is filled in with: the node, its inputs, their sum and product."""
    inputs = [trace.label(inbound) for inbound in node.inbound_nodes]
    others = inputs[:position] + inputs[position + 1 :]
    words = {
        "out": trace.label(node),
        "sum": " + ".join(inputs),
        "product": " * ".join(inputs),
        "this": inputs[position] if inputs else "",
        "others": " * ".join(others) or "1",
    }
    return inputs, words


def forward_text(trace, node):
    """One line saying how `node` computed its value, with the numbers when they are scalars."""
    kind = type(node).__name__
    inputs, words = names(trace, node)
    rule = FORWARD_RULES.get(kind, f"{{out}} = {kind}.forward({', '.join(inputs)})")
    text = "forward: " + rule.format(*inputs, **words)
    values = [trace.value(inbound) for inbound in node.inbound_nodes]
    if kind in ("Add", "Mul") and all(is_scalar(value) for value in values):
        operator = " + " if kind == "Add" else " * "
        text += " = " + operator.join(format_number(v, in_sum=i > 0) for i, v in enumerate(values))
    return text + " = " + result_text(trace.value(node), trace.records[node])


def backward_text(trace, node, inbound):
    """One line saying how the gradient flows from `node` back to `inbound`."""
    kind = type(node).__name__
    position = node.inbound_nodes.index(inbound)
    inputs, words = names(trace, node, position)
    rule = BACKWARD_RULES.get(kind, f"{{this}} gets what {kind}.backward returns for it")
    if isinstance(rule, tuple):
        rule = rule[position]
    text = f"backward through {trace.label(node)}: " + rule.format(*inputs, **words)
    upstream = trace.total_gradient(node)
    if kind == "Mul" and len(node.inbound_nodes) == 2 and is_scalar(upstream):
        other = trace.value(node.inbound_nodes[1 - position])
        if is_scalar(other):
            factor = format_number(other, in_sum=True)
            text += f" = {format_number(other)}; upstream {format_number(upstream)} * {factor}"
    elif kind == "Add" and is_scalar(upstream):
        text += f"; upstream {format_number(upstream)} * 1"
    if trace.reached(node) or trace.records[node].failed_in == "backward":
        return text + f" -> {trace.label(inbound)} receives " + received_text(trace, node, inbound)
    return text


def received_text(trace, node, inbound):
    record = trace.records[node]
    if record.failed_in == "backward":
        return "nothing: " + ("not implemented yet" if record.not_implemented else "backward raised")
    contribution = trace.contribution(node, inbound)
    if contribution is None:
        return "no gradient"
    return format_array(contribution) if not is_scalar(contribution) else format_number(contribution)


def result_text(value, record):
    if record.failed_in == "forward":
        return "not implemented yet" if record.not_implemented else "error"
    if value is None:
        return "?"
    return format_number(value) if is_scalar(value) else f"an array of shape {np.shape(value)}"
