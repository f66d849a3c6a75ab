"""The engine: puts a graph in order, runs it forward and sends gradients back."""

import numpy as np

from .losses import CrossEntropyWithSoftmax
from .node import Input, MiniflowError, Node, gradient_dtype


def order_after_inputs(roots):
    """Every node the roots depend on, each listed after all of its inputs.

    A depth-first walk over inbound nodes that visits each node once, so it
    takes time linear in the size of the graph and always gives the same order.
    It keeps its own stack rather than recursing, so deep graphs cannot hit
    Python's recursion limit.
    """
    order, seen = [], set()
    for root in roots:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(root.inbound_nodes))]
        while stack:
            node, inputs = stack[-1]
            for child in inputs:
                if child not in seen:
                    seen.add(child)
                    stack.append((child, iter(child.inbound_nodes)))
                    break
            else:  # all inputs of `node` are listed: list it
                stack.pop()
                order.append(node)
    return order


def graph_of(output_node):
    """The nodes `output_node` depends on, inputs first and `output_node` last.

    Built once per node: a node's inputs never change after it is created.
    Nodes that merely share an input (say, left over from an earlier run of a
    notebook cell) are not part of it and never send gradients.
    """
    if output_node.cached_graph is None:
        output_node.cached_graph = order_after_inputs([output_node])
    return output_node.cached_graph


def topological_sort(feed_dict):
    """Feed the values in `feed_dict` and return every node that depends on them.

    Each node comes after its inputs. The last node is the output: of the
    nodes that nothing consumes, the one created last.
    """
    check_feed_keys(feed_dict)
    feed_values(feed_dict)
    reachable, frontier = set(feed_dict), list(feed_dict)
    while frontier:
        for consumer in frontier.pop().outbound_nodes:
            if consumer not in reachable:
                reachable.add(consumer)
                frontier.append(consumer)
    outputs = sorted(
        (node for node in reachable if not node.outbound_nodes),
        key=lambda node: node.creation_index,
    )
    return order_after_inputs(outputs)


def feed(nodes, feed_dict, output_node):
    """Give every fed node among `nodes` its value from `feed_dict`."""
    check_feed_keys(feed_dict)
    values = {}
    for node in nodes:
        if node.is_fed:
            if node not in feed_dict:
                raise MiniflowError(
                    f"{node} is part of the graph of {output_node} but has no entry in feed_dict"
                )
            values[node] = feed_dict[node]
    feed_values(values)


def check_feed_keys(feed_dict):
    """Raise a MiniflowError for a key of `feed_dict` that is not an Input or a DummyGrad."""
    for key in feed_dict:
        if not isinstance(key, Node):
            raise MiniflowError(
                f"feed_dict has the key {key!r}, a {type(key).__name__}; "
                "its keys are the Input nodes themselves"
            )
        if not key.is_fed:
            key.feed(feed_dict[key])  # refuses, naming the node: its value is computed


def feed_values(feed_dict):
    """Call `node.feed(value)` for each entry of `feed_dict`.

    A Python number (a constant such as 2.0) fed beside float32 data is fed as
    float32, as numpy itself treats it (float32 data * 2.0 is float32): else it
    would become a float64 array and turn the whole graph float64. The data is
    what Inputs are fed; a DummyGrad's gradient takes its input's dtype anyway.
    """
    data_float_types = {
        value.dtype
        for node, value in feed_dict.items()
        if isinstance(node, Input) and isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind == "f"
    }
    numbers_as_float32 = data_float_types == {np.dtype(np.float32)}
    for node, value in feed_dict.items():
        if numbers_as_float32 and type(value) in (int, float):
            value = np.float32(value)
        node.feed(value)


def name_failing_node(error, node, method):
    """Record which node's method raised `error`: as `error.failing_node`, and in its message."""
    error.failing_node = node
    if hasattr(error, "add_note") and not isinstance(error, MiniflowError):  # Python 3.11+
        error.add_note(f"raised in {method} of {node}")


def run_forward(nodes):
    """Compute each node's value, in order."""
    for node in nodes:
        try:
            node.value = node.forward(*[inbound.value for inbound in node.inbound_nodes])
        except Exception as error:
            name_failing_node(error, node, "forward")
            raise
        if node.value is None:
            node.fail("forward returned None; return the value instead of storing it")


def nodes_needing_gradients(nodes, wrt):
    """The nodes in `wrt` and every node computed from one of them."""
    needing = set(wrt)
    for node in nodes:
        if any(inbound in needing for inbound in node.inbound_nodes):
            needing.add(node)
    return needing


def backward_steps(nodes, needing):
    """What run_backward does at each node of `needing`, last node first.

    Each step is (node, its needs_grad, the (position, inbound) pairs to send
    gradients to).
    """
    steps = []
    for node in reversed(nodes):
        if node in needing:
            needs_grad = tuple(inbound in needing for inbound in node.inbound_nodes)
            targets = tuple(
                (position, inbound)
                for position, inbound in enumerate(node.inbound_nodes)
                if needs_grad[position]
            )
            steps.append((node, needs_grad, targets))
    return steps


def run_backward(nodes, steps):
    """Send gradients from the last node of `nodes` back, following `steps` (see backward_steps).

    Fills each node's `gradients` dict afresh (see Node).
    """
    output = nodes[-1]
    totals = {output: np.ones(np.shape(output.value), dtype=gradient_dtype(output.value))}
    for node in nodes:
        node.gradients = {}
    for node, needs_grad, targets in steps:
        grad = totals.get(node)
        if grad is None:  # every consumer said "no gradient" (labels, say)
            grad = np.zeros(np.shape(node.value), dtype=gradient_dtype(node.value))
        node.gradients[node] = grad
        if not targets:
            continue
        node.needs_grad = needs_grad
        try:
            input_grads = node.backward(grad, *[inbound.value for inbound in node.inbound_nodes])
        except Exception as error:
            name_failing_node(error, node, "backward")
            raise
        input_grads = as_gradient_list(node, input_grads)
        for position, inbound in targets:
            input_grad = input_grads[position]
            if input_grad is None:
                continue
            if shape_of(input_grad) != shape_of(inbound.value):
                node.fail(
                    f"backward returned a gradient of shape {np.shape(input_grad)} for input "
                    f"{position} ({inbound}), whose value has shape {np.shape(inbound.value)}; "
                    "a gradient has the shape of the value it belongs to"
                )
            # Sums, never in-place adds: a node used twice (Mul(x, x)) gets both parts.
            if inbound in node.gradients:
                node.gradients[inbound] = node.gradients[inbound] + input_grad
            else:
                node.gradients[inbound] = input_grad
            totals[inbound] = totals[inbound] + input_grad if inbound in totals else input_grad


def shape_of(value):
    """np.shape(value), quicker for arrays: run_backward checks every gradient of every batch."""
    return value.shape if isinstance(value, np.ndarray) else np.shape(value)


def as_gradient_list(node, input_grads):
    """Check that `backward` gave one gradient per input; a lone array counts for one input."""
    if len(node.inbound_nodes) == 1 and not isinstance(input_grads, (tuple, list)):
        input_grads = (input_grads,)
    if not isinstance(input_grads, (tuple, list)) or len(input_grads) != len(node.inbound_nodes):
        node.fail(
            f"backward must return one gradient per input ({len(node.inbound_nodes)}), "
            f"as a tuple or list; it returned {type(input_grads).__name__}"
            + (f" of length {len(input_grads)}" if isinstance(input_grads, (tuple, list)) else "")
        )
    return input_grads


def forward_pass(output_node, sorted_nodes):
    """Run the forward pass of `output_node`'s graph and return its value.

    `sorted_nodes` is the result of `topological_sort`; nodes in it that
    `output_node` does not depend on are not run.
    """
    needed = set(graph_of(output_node))
    run_forward([node for node in sorted_nodes if node in needed])
    return output_node.value


def forward_and_backward(graph):
    """Run forward and backward through `graph` (from `topological_sort`); return the output's value.

    The output is the last node of `graph`. Afterwards every node's gradient
    is in `node.gradients[node]`, ready for `sgd_update`.
    """
    nodes = graph_of(graph[-1])
    run_forward(nodes)
    run_backward(nodes, backward_steps(nodes, needing=set(nodes)))
    return graph[-1].value


def value_and_grad(node, feed_dict, wrt=()):
    """Feed, run forward and backward, and return `(value, [gradient for each node in wrt])`.

    Every Input (and DummyGrad) that `node` depends on must be in `feed_dict`.
    The gradient starts from ones at `node`, or from the fed value of a
    DummyGrad. Only the gradients that `wrt` asks for are computed.
    """
    nodes = graph_of(node)
    feed(nodes, feed_dict, node)
    run_forward(nodes)
    if not wrt:
        return node.value, []
    # What backward does at each node depends only on the graph and wrt: work it
    # out on the first batch, not on every one.
    wrt = tuple(wrt)
    plans = node.cached_backward_plans
    if wrt not in plans:
        in_graph = set(nodes)
        for target in wrt:
            if target not in in_graph:
                raise MiniflowError(f"{target} (in wrt) is not part of the graph of {node}")
        plans[wrt] = backward_steps(nodes, nodes_needing_gradients(nodes, wrt))
    run_backward(nodes, plans[wrt])
    return node.value, [target.gradients[target] for target in wrt]


def accuracy(node, feed_dict):
    """The fraction of rows whose largest logit is at the label, for a CrossEntropyWithSoftmax node.

    Runs the forward pass only (no gradients), with the values in `feed_dict`.
    """
    if not isinstance(node, CrossEntropyWithSoftmax):
        raise MiniflowError(f"accuracy needs a CrossEntropyWithSoftmax node, got {node}")
    value_and_grad(node, feed_dict)
    logits, labels = (inbound.value for inbound in node.inbound_nodes)
    return float(np.mean(np.argmax(logits, axis=1) == labels))
