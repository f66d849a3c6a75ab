"""Run a graph node by node and record what happened, failures included.

The widgets draw from this record. It drives your own nodes through the
engine (graph.py), one node at a time going forward, so a node whose
`forward` raises (an exercise not written yet, say) is recorded with its
message and the nodes after it wait, instead of the whole pass stopping
with a traceback.
"""

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..graph import backward_steps, feed, graph_of, run_backward, run_forward

FINITE_DIFFERENCE_LIMIT = 64  # inputs with more entries than this are not checked numerically


@dataclass
class NodeRecord:
    """What one node did in the last pass.

    status is "ok", "failed" (its forward or backward raised) or "waiting"
    (an input of it has no value, so it was not run).
    """

    label: str
    status: str = "ok"
    failed_in: str = ""  # "forward" or "backward"
    error: str = ""  # the exception's type and message
    not_implemented: bool = False
    warnings: list = field(default_factory=list)
    numeric_gradient: object = None  # a finite-difference estimate, for inputs


@dataclass
class Step:
    """One step of the step-through: a node's forward, or one edge's backward."""

    kind: str  # "forward" or "backward"
    node: object
    inbound: object = None  # for a backward step: the input the gradient goes to


@dataclass
class Trace:
    """The nodes of a graph in the engine's order, and what each one did.

    Values and gradients are copied out of the nodes at the end of the pass,
    so running the graph again elsewhere does not change the picture.
    """

    nodes: list
    records: dict
    forward_ok: bool = False
    values: dict = field(default_factory=dict)  # node -> value, for nodes whose forward ran
    gradients: dict = field(default_factory=dict)  # node -> its gradients dict, for nodes reached
    steps: list = field(default_factory=list)

    @property
    def output(self):
        return self.nodes[-1]

    def label(self, node):
        return self.records[node].label

    def value(self, node):
        """The node's value, or None if its forward did not run in this pass."""
        return self.values.get(node)

    def reached(self, node):
        """Whether the backward pass got to this node."""
        return node in self.gradients

    def total_gradient(self, node):
        """The node's whole gradient, or None if the backward pass never reached it."""
        return self.gradients[node][node] if self.reached(node) else None

    def contribution(self, consumer, inbound):
        """The part of `inbound`'s gradient that flowed through `consumer` (None: none sent)."""
        return self.gradients[consumer].get(inbound) if self.reached(consumer) else None

    def consumers(self, node):
        """The nodes of this graph that read `node`'s value, in forward order."""
        return [other for other in self.nodes if node in other.inbound_nodes]


def distinct(nodes):
    """`nodes` without repeats, in order (Mul(x, x) has one edge from x)."""
    return list(dict.fromkeys(nodes))


def describe(error):
    return f"{type(error).__name__}: {error}"


def trace_graph(output, feed_dict, labels):
    """Feed `feed_dict`, run `output`'s graph forward and backward, and record every node.

    `labels` maps each node to the name to show. Never raises for an error
    inside a node's forward or backward: that error is recorded instead.
    """
    nodes = graph_of(output)
    feed(nodes, feed_dict, output)
    records = {node: NodeRecord(label=labels[node]) for node in nodes}
    trace = Trace(nodes=nodes, records=records)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_forward_one_by_one(trace, caught)
        if trace.forward_ok:
            run_backward_recording_failure(trace)
        keep_results(trace)
        if trace.forward_ok:  # the estimate needs forward passes only, so it works without backward
            add_numeric_gradients(trace, feed_dict)
    trace.steps = list_steps(trace)
    return trace


def keep_results(trace):
    """Copy each node's value and gradients into the trace (the nodes' own may change later)."""
    for node in trace.nodes:
        record = trace.records[node]
        if record.status == "ok" or record.failed_in == "backward":
            trace.values[node] = node.value
        # run_backward empties every node's gradients before it starts, so a
        # node holding its own gradient was reached in this pass.
        if trace.forward_ok and node in node.gradients:
            trace.gradients[node] = dict(node.gradients)


def run_forward_one_by_one(trace, caught):
    """Run each node's forward on its own, so one failure does not hide the rest."""
    for node in trace.nodes:
        record = trace.records[node]
        if any(trace.records[inbound].status != "ok" for inbound in node.inbound_nodes):
            record.status = "waiting"
            continue
        caught.clear()
        try:
            run_forward([node])
        except Exception as error:
            record_failure(record, "forward", error)
        record.warnings = [str(warning.message) for warning in caught]
    trace.forward_ok = all(record.status == "ok" for record in trace.records.values())


def run_backward_recording_failure(trace):
    """Run the engine's backward pass; if a node raises, record which one."""
    try:
        run_backward(trace.nodes, backward_steps(trace.nodes, needing=set(trace.nodes)))
    except Exception as error:
        failing = getattr(error, "failing_node", trace.output)  # set by the engine
        record_failure(trace.records[failing], "backward", error)


def record_failure(record, method, error):
    record.status = "failed"
    record.failed_in = method
    record.error = describe(error)
    record.not_implemented = isinstance(error, NotImplementedError)


def output_seed(output):
    """The gradient the engine starts the output with: ones, or a DummyGrad's fed gradient."""
    injected = getattr(output, "injected_gradient", None)  # only a DummyGrad has one
    if injected is not None:
        return np.broadcast_to(injected, np.shape(output.value))
    return np.ones(np.shape(output.value))


def add_numeric_gradients(trace, feed_dict):
    """Estimate each fed input's gradient by central finite differences.

    Only inputs that some node sent a gradient to are checked (labels get
    none), and only small ones.
    """
    output = trace.output
    seed = output_seed(output)
    for node in trace.nodes:
        if node.inbound_nodes or not node.is_fed or np.size(node.value) > FINITE_DIFFERENCE_LIMIT:
            continue
        if all(trace.contribution(consumer, node) is None for consumer in trace.consumers(node)):
            continue
        try:
            trace.records[node].numeric_gradient = finite_difference(trace.nodes, node, seed)
        except Exception:  # a pass that worked once failed on a nudged input: show no estimate
            trace.records[node].numeric_gradient = None
        finally:
            node.feed(feed_dict[node])
            run_forward(trace.nodes)  # put every value back as it was


def finite_difference(nodes, node, seed):
    """d sum(seed * output) / d node, one entry at a time: (f(v + h) - f(v - h)) / 2h."""
    output = nodes[-1]
    base = np.array(node.value, dtype=np.float64)
    estimate = np.zeros_like(base)
    for index in np.ndindex(base.shape):
        h = 1e-6 * max(1.0, abs(base[index]))
        results = []
        for shift in (h, -h):
            nudged = base.copy()
            nudged[index] += shift
            node.feed(nudged)
            run_forward(nodes)
            results.append(np.sum(seed * output.value))
        estimate[index] = (results[0] - results[1]) / (2 * h)
    return estimate


def gradient_matches(analytic, numeric):
    """Whether a computed gradient agrees with its finite-difference estimate."""
    if analytic is None or numeric is None or np.shape(analytic) != np.shape(numeric):
        return False
    return bool(np.allclose(analytic, numeric, rtol=1e-3, atol=1e-5))


def list_steps(trace):
    """The step-through: each computed node forward, then each edge backward, in the engine's order."""
    steps = [Step("forward", node) for node in trace.nodes if node.inbound_nodes]
    if trace.forward_ok:
        for node in reversed(trace.nodes):
            steps += [Step("backward", node, inbound) for inbound in distinct(node.inbound_nodes)]
    return steps
