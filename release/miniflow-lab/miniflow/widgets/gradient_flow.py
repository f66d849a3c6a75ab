"""GradientFlow: a live picture of a graph's values and gradients, with sliders."""

import ipywidgets as widgets
import numpy as np

from ..graph import graph_of
from .svg import draw_graph, visible_after
from .svg_view import SvgView, with_static_picture
from .tables import node_details
from .trace import trace_graph

DEFAULT_RANGE = (-10.0, 10.0, 0.5)


class GradientFlow(widgets.VBox):
    """Draws `output`'s graph: each node's value, each edge's gradient, and checks.

    Every slider move feeds the new value, runs your nodes forward and
    backward through the engine, and repaints. A node whose forward or
    backward raises is drawn with its message instead.

    Example:
        x, y, z = Input(), Input(), Input()
        f = Add(Mul(x, y), Mul(x, z))
        GradientFlow(f, {x: 3, y: 4, z: -5}, sliders={x: (-5, 5, 0.5)})

    Args:
        output: the node whose gradient is drawn (a DummyGrad's fed value starts it, else ones).
        feed_dict: a value for every Input (and DummyGrad) of the graph.
        sliders: which fed values get a slider, as {node: (min, max)} or
            {node: (min, max, step)}; a key (W, (0, 1)) is a slider for the one
            entry W[0, 1] of an array. By default each scalar input gets one,
            from -10 to 10 in steps of 0.5.
        names: a dict from names to nodes, such as globals(), to label the
            nodes with. By default a node shows its `name`, else the name of
            the notebook variable that holds it.
    """

    def __init__(self, output, feed_dict, sliders=None, names=None):
        self.output = output
        self.feed_dict = dict(feed_dict)
        self.step = None  # None: show the whole pass; a number: the step-through's position
        self.view = SvgView()
        nodes = graph_of(output)
        self.labels = node_labels(nodes, notebook_variables() if names is None else names)
        if sliders is None:
            sliders = default_sliders(nodes, self.feed_dict)
        self.sliders = [self.make_slider(key, spec) for key, spec in sliders.items()]
        self.view.observe(self.show_selected, "selected")
        super().__init__(
            [
                widgets.HBox(self.sliders, layout=widgets.Layout(flex_flow="row wrap")),
                self.view,
                self.step_controls(),
            ]
        )
        self.recompute()

    # -- sliders ---------------------------------------------------------------------------------

    def make_slider(self, key, spec):
        node, index = key if isinstance(key, tuple) else (key, ())
        start = float(np.asarray(self.feed_dict[node])[index])
        spec = spec or DEFAULT_RANGE
        low, high = spec[0], spec[1]
        step = spec[2] if len(spec) > 2 else DEFAULT_RANGE[2]
        slider = widgets.FloatSlider(
            value=start,
            min=min(low, start),
            max=max(high, start),
            step=step,
            description=self.labels[node] + (str(list(index)) if index else ""),
            continuous_update=True,
            readout_format=f".{decimals(step)}f",
            style={"description_width": "initial"},
        )
        slider.observe(lambda change: self.set_value(node, change["new"], index), "value")
        return slider

    def set_value(self, node, value, index=()):
        """Feed `node` a new value (or change its entry `index`) and redraw, as a slider does."""
        if index:
            array = np.array(self.feed_dict[node], dtype=np.float64)
            array[index] = value
            value = array
        self.feed_dict[node] = value
        self.recompute()

    # -- step-through ----------------------------------------------------------------------------

    def step_controls(self):
        buttons = {
            "◀ back": self.step_back,
            "step ▶": self.step_forward,
            "show all": self.show_all,
        }
        row = []
        for text, action in buttons.items():
            button = widgets.Button(description=text, layout=widgets.Layout(width="auto"))
            button.on_click(lambda _, action=action: action())
            row.append(button)
        return widgets.HBox(row)

    def step_forward(self):
        """Show one more step: forward node by node, then backward edge by edge."""
        last = len(self.trace.steps) - 1
        self.step = 0 if self.step is None else min(self.step + 1, last)
        self.repaint()

    def step_back(self):
        self.step = 0 if self.step is None else max(self.step - 1, 0)
        self.repaint()

    def show_all(self):
        self.step = None
        self.repaint()

    # -- drawing ---------------------------------------------------------------------------------

    def recompute(self):
        """Run the graph again with the current feed_dict and repaint."""
        self.trace = trace_graph(self.output, self.feed_dict, self.labels)
        if self.step is not None and self.step >= len(self.trace.steps):
            self.step = len(self.trace.steps) - 1 if self.trace.steps else None
        self.repaint()

    def repaint(self):
        if self.step is not None and not self.trace.steps:
            self.step = None
        self.view.svg = draw_graph(self.trace, visible_after(self.trace, self.step))
        self.show_selected()

    def show_selected(self, _change=None):
        chosen = [node for node in self.trace.nodes if self.labels[node] == self.view.selected]
        self.view.details = node_details(self.trace, chosen[0]) if chosen else ""

    @property
    def svg(self):
        """The picture as SVG text, as it is shown now."""
        return self.view.svg

    def _repr_mimebundle_(self, **kwargs):
        # The picture travels with the live widget, so a notebook saved or
        # exported without a kernel (HTML, feedback) still shows the graph.
        return with_static_picture(super()._repr_mimebundle_(**kwargs), self.svg)


def decimals(step):
    """How many decimals a slider's readout needs to show its steps: 0.5 -> 1, 0.25 -> 2."""
    text = f"{step:g}"
    return len(text.split(".")[1]) if "." in text else 0


def default_sliders(nodes, feed_dict):
    """A slider for every input fed a single number."""
    return {
        node: DEFAULT_RANGE
        for node in nodes
        if not node.inbound_nodes and node in feed_dict and np.ndim(feed_dict[node]) == 0
    }


def notebook_variables():
    """The notebook's variables, or {} outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return {}
    shell = get_ipython()
    return shell.user_ns if shell is not None else {}


def node_labels(nodes, names):
    """A distinct label for each node: its name, else a variable holding it, else Kind#number."""
    in_graph = {id(node) for node in nodes}
    held_by = {}
    for name, value in names.items():
        if id(value) in in_graph and not name.startswith("_"):
            held_by.setdefault(id(value), name)
    labels, used = {}, set()
    for node in nodes:
        label = node.name or held_by.get(id(node)) or f"{type(node).__name__}#{node.creation_index}"
        if label in used:
            label = f"{label}#{node.creation_index}"
        labels[node] = label
        used.add(label)
    return labels
