"""Draw a traced graph as SVG text: nodes left to right, gradients on the edges.

The same text is shown live in the widget and kept as a static picture in
the notebook, so an exported notebook shows the graph without a kernel.
Everything is styled inline for that reason. Elements carry `data-` names
(data-node, data-edge, data-role) so tests can find them.
"""

from dataclasses import dataclass
from html import escape

import numpy as np

from . import rules
from .numbers import format_array, format_number, format_value, is_scalar
from .trace import distinct, gradient_matches

NODE_WIDTH = 220
COLUMN_PITCH = 340  # node width plus room for the edge labels
LINE_HEIGHT = 17
PADDING = 8
ROW_GAP = 28
MARGIN = 20
LEGEND_HEIGHT = 64

POSITIVE, NEGATIVE, ZERO, MIXED = "#2b6cb0", "#c53030", "#a0aec0", "#805ad5"
GOOD, BAD, HIGHLIGHT = "#2f855a", "#c53030", "#d69e2e"
TEXT, FAINT = "#1a202c", "#a0aec0"


@dataclass
class Visible:
    """What a picture shows: everything, or the state after some step of the step-through."""

    values: set
    edges: set  # (consumer, inbound) pairs whose gradient has been sent
    backward_started: bool
    current_node: object = None
    current_edge: tuple = None
    caption: str = ""


def visible_after(trace, step_index):
    """The Visible for step `step_index` of trace.steps, or for the whole pass if None."""
    edges_all = {(node, inbound) for node in trace.nodes for inbound in distinct(node.inbound_nodes)}
    if step_index is None:
        return Visible(values=set(trace.nodes), edges=edges_all, backward_started=trace.forward_ok)
    steps = trace.steps[: step_index + 1]
    step = steps[-1]
    visible = Visible(
        values={node for node in trace.nodes if not node.inbound_nodes},
        edges={(s.node, s.inbound) for s in steps if s.kind == "backward"},
        backward_started=step.kind == "backward",
    )
    visible.values |= {s.node for s in steps if s.kind == "forward"}
    if step.kind == "forward":
        visible.current_node = step.node
        text = rules.forward_text(trace, step.node)
    else:
        visible.values = set(trace.nodes)
        visible.current_edge = (step.node, step.inbound)
        text = rules.backward_text(trace, step.node, step.inbound)
    visible.caption = f"step {step_index + 1} of {len(trace.steps)}  ·  {text}"
    return visible


def draw_graph(trace, visible):
    """The whole picture as one <svg> element."""
    boxes = layout(trace, visible)
    width = max(box.x + NODE_WIDTH for box in boxes.values()) + MARGIN
    width = max(width, 760)
    graph_height = max(box.y + box.height for box in boxes.values()) + MARGIN
    magnitudes = [edge_magnitude(trace, visible, *edge) for edge in visible.edges]
    largest = max(magnitudes, default=0.0)
    parts = []
    for node in trace.nodes:
        for port, inbound in enumerate(distinct(node.inbound_nodes)):
            parts.append(draw_edge(trace, visible, boxes, node, inbound, port, largest))
    parts += [draw_node(trace, visible, node, boxes[node]) for node in trace.nodes]
    parts.append(draw_legend(graph_height, visible.caption))
    height = graph_height + LEGEND_HEIGHT + (LINE_HEIGHT + 6 if visible.caption else 0)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="mf-graph" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" '
        f'font-size="12">' + "".join(parts) + "</svg>"
    )


# -- layout -----------------------------------------------------------------------------------


@dataclass
class Box:
    x: float
    y: float
    height: float
    lines: list  # (role, text, colour, tooltip)


def layout(trace, visible):
    """A Box per node: column by depth (inputs on the left), stacked in forward order."""
    depth = {}
    for node in trace.nodes:
        depth[node] = 1 + max((depth[inbound] for inbound in node.inbound_nodes), default=-1)
    columns = {}
    for node in trace.nodes:
        columns.setdefault(depth[node], []).append(node)
    lines = {node: node_lines(trace, visible, node) for node in trace.nodes}
    heights = {node: 2 * PADDING + LINE_HEIGHT * len(lines[node]) for node in trace.nodes}
    column_heights = {
        column: sum(heights[node] for node in members) + ROW_GAP * (len(members) - 1)
        for column, members in columns.items()
    }
    tallest = max(column_heights.values())
    boxes = {}
    for column, members in columns.items():
        y = MARGIN + (tallest - column_heights[column]) / 2
        for node in members:
            boxes[node] = Box(MARGIN + column * COLUMN_PITCH, y, heights[node], lines[node])
            y += heights[node] + ROW_GAP
    return boxes


# -- nodes ------------------------------------------------------------------------------------


def node_lines(trace, visible, node):
    """The text lines of a node's box: title, value, gradient, check, and any error."""
    record = trace.records[node]
    kind = type(node).__name__
    lines = [("title", f"{record.label}  ·  {kind}", TEXT, "")]
    value = trace.value(node) if node in visible.values else None
    if record.failed_in == "forward":
        lines.append(
            (
                "status",
                "forward: not implemented yet" if record.not_implemented else "forward raised an error",
                BAD,
                record.error,
            )
        )
    elif record.status == "waiting":
        lines.append(("value", "waiting for its inputs", FAINT, ""))
    elif value is None:
        lines.append(("value", "value ?", FAINT, ""))
    else:
        lines.append(("value", f"value {format_value(value)}", TEXT, array_tooltip("value", value)))
    lines.append(gradient_line(trace, visible, node))
    numeric = record.numeric_gradient
    if numeric is not None and (visible.backward_started or not node.inbound_nodes):
        lines.append(numeric_line(trace, visible, node, numeric))
    if record.failed_in == "backward":
        lines.append(
            (
                "status",
                "backward: not implemented yet" if record.not_implemented else "backward raised an error",
                BAD,
                record.error,
            )
        )
    if record.status == "failed":
        lines += [("message", text, BAD, record.error) for text in wrap(record.error, width=29, count=4)]
    if record.warnings:
        lines.append(
            ("warning", "warning: " + shorten(record.warnings[0], 20), HIGHLIGHT, "\n".join(record.warnings))
        )
    return lines


def gradient_line(trace, visible, node):
    """'grad 1', or for a node with several consumers the sum: 'grad 5 + (-4) = 1'."""
    if not visible.backward_started or not trace.reached(node):
        return ("grad", "grad ?", FAINT, "the backward pass has not reached this node")
    total = trace.total_gradient(node)
    if node is trace.output:
        return ("grad", f"grad {format_value(total)} (start)", TEXT, array_tooltip("gradient", total))
    parts = [
        trace.contribution(consumer, node)
        for consumer in distinct(trace.consumers(node))
        if (consumer, node) in visible.edges and trace.contribution(consumer, node) is not None
    ]
    if not parts:
        return ("grad", "grad: none sent yet" if visible.edges else "grad: none", FAINT, "")
    everything_arrived = len(parts) == len(
        [c for c in distinct(trace.consumers(node)) if trace.contribution(c, node) is not None]
    )
    shown_total = total if everything_arrived else sum(parts[1:], parts[0])
    if len(parts) == 1:
        text = f"grad {format_value(shown_total)}"
    elif all(is_scalar(part) for part in parts):
        text = "grad " + " + ".join(format_number(p, in_sum=i > 0) for i, p in enumerate(parts))
        text += f" = {format_number(shown_total)}"
    else:
        text = f"grad {format_value(shown_total)}, sum of {len(parts)} parts"
    return ("grad", text, TEXT, array_tooltip("gradient", shown_total))


def numeric_line(trace, visible, node, numeric):
    """The finite-difference estimate beside an input's gradient, with a pass/fail mark.

    The mark waits until every part of the gradient has arrived (in the step-through).
    """
    arrived = all((consumer, node) in visible.edges for consumer in trace.consumers(node))
    analytic = trace.total_gradient(node) if arrived else None
    if analytic is None:
        return (
            "numeric",
            f"numeric estimate {format_value(numeric)}",
            TEXT,
            array_tooltip("finite-difference estimate", numeric),
        )
    ok = gradient_matches(analytic, numeric)
    mark = "✓" if ok else "✗"
    if is_scalar(numeric):
        text = f"{mark} numeric {format_number(numeric)}"
    else:
        text = f"{mark} numeric check (off by {np.max(np.abs(analytic - numeric)):.0e})"
    tooltip = "finite differences " + ("agree" if ok else "DISAGREE") + " with grad\n"
    return ("numeric", text, GOOD if ok else BAD, tooltip + array_tooltip("estimate", numeric))


def draw_node(trace, visible, node, box):
    record = trace.records[node]
    stroke, fill, dash = "#4a5568", "#ffffff", ""
    if not node.inbound_nodes:
        fill = "#f7fafc"
    if record.status == "failed":
        stroke, fill, dash = BAD, "#fff5f5", ' stroke-dasharray="5 3"'
    elif record.status == "waiting":
        stroke = FAINT
    width = 3 if node is visible.current_node else 1.2
    if node is visible.current_node:
        stroke = HIGHLIGHT
    out = [
        f'<g class="mf-node" data-node="{escape(record.label)}" data-status="{record.status}" '
        f'style="cursor:pointer"><title>{escape(node_tooltip(trace, node))}</title>',
        f'<rect x="{box.x}" y="{box.y}" width="{NODE_WIDTH}" height="{box.height}" rx="6" '
        f'fill="{fill}" stroke="{stroke}" stroke-width="{width}"{dash}/>',
    ]
    for row, (role, text, colour, tooltip) in enumerate(box.lines):
        y = box.y + PADDING + LINE_HEIGHT * (row + 1) - 4
        weight = ' font-weight="bold"' if role == "title" else ""
        title = f"<title>{escape(tooltip)}</title>" if tooltip else ""
        out.append(
            f'<text x="{box.x + PADDING}" y="{y}" fill="{colour}" data-role="{role}"{weight}>'
            f"{title}{escape(text)}</text>"
        )
    out.append("</g>")
    return "".join(out)


def node_tooltip(trace, node):
    record = trace.records[node]
    text = f"{record.label}: {type(node).__name__}"
    if record.error:
        text += f"\n{record.failed_in} raised {record.error}"
    return text + "\n(click for a table of values)"


def array_tooltip(what, value):
    if value is None or is_scalar(value):
        return ""
    return f"{what}, shape {np.shape(value)}:\n{format_array(value)}"


# -- edges ------------------------------------------------------------------------------------


def edge_colour(gradient):
    """Blue for positive, red for negative, grey for zero or none, purple for mixed signs."""
    if gradient is None or not np.any(gradient):
        return ZERO
    if np.all(np.asarray(gradient) >= 0):
        return POSITIVE
    if np.all(np.asarray(gradient) <= 0):
        return NEGATIVE
    return MIXED


def edge_magnitude(trace, visible, node, inbound):
    gradient = trace.contribution(node, inbound) if (node, inbound) in visible.edges else None
    if gradient is None or np.size(gradient) == 0:
        return 0.0
    return float(np.max(np.abs(gradient)))


def draw_edge(trace, visible, boxes, node, inbound, port, largest):
    """A curve from `inbound` to `node` labelled with the gradient `node` sent back to it."""
    source, target = boxes[inbound], boxes[node]
    ports = len(distinct(node.inbound_nodes))
    consumers = distinct(trace.consumers(inbound))
    out_port = consumers.index(node)
    x1, y1 = source.x + NODE_WIDTH, source.y + source.height * (out_port + 1) / (len(consumers) + 1)
    x2, y2 = target.x, target.y + target.height * (port + 1) / (ports + 1)
    middle = (x1 + x2) / 2
    shown = (node, inbound) in visible.edges and trace.reached(node)
    gradient = trace.contribution(node, inbound) if shown else None
    magnitude = edge_magnitude(trace, visible, node, inbound) if shown else 0.0
    width = 1.5 + (6 * magnitude / largest if largest > 0 else 0)
    colour = edge_colour(gradient) if shown else "#cbd5e0"
    edge_name = f"{trace.label(inbound)}->{trace.label(node)}"
    path = f"M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}"
    out = [f'<g class="mf-edge" data-edge="{escape(edge_name)}">']
    if (node, inbound) == visible.current_edge:
        out.append(
            f'<path d="{path}" fill="none" stroke="{HIGHLIGHT}" stroke-width="{width + 6}" opacity="0.6"/>'
        )
    out.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="{width:.1f}"/>')
    out.append(f'<polygon points="{x2},{y2} {x2 - 8},{y2 - 4} {x2 - 8},{y2 + 4}" fill="{colour}"/>')
    label = edge_label(trace, node, inbound, shown, gradient)
    if label:
        label_width = 7 * len(label) + 10
        lx, ly = point_on_curve(x1, y1, middle, x2, y2, 0.7)  # near the target, where ports differ
        tooltip = f"gradient sent back from {trace.label(node)} to {trace.label(inbound)}"
        if gradient is not None and not is_scalar(gradient):
            tooltip += f", shape {np.shape(gradient)}:\n{format_array(gradient)}"
        out.append(
            f'<rect x="{lx - label_width / 2}" y="{ly - 10}" width="{label_width}" height="18" rx="4" '
            f'fill="#ffffff" stroke="{colour}"/>'
            f'<text x="{lx}" y="{ly + 3}" text-anchor="middle" fill="{colour}" data-role="edge-grad">'
            f"<title>{escape(tooltip)}</title>{escape(label)}</text>"
        )
    out.append("</g>")
    return "".join(out)


def point_on_curve(x1, y1, middle, x2, y2, t):
    """The point at `t` (0 to 1) of the curve drawn by draw_edge."""
    a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
    return a * x1 + (b + c) * middle + d * x2, (a + b) * y1 + (c + d) * y2


def edge_label(trace, node, inbound, shown, gradient):
    if trace.records[node].failed_in == "backward":
        return "?"
    if not shown:
        return ""
    if gradient is None:
        return "no grad"
    return format_value(gradient)


# -- legend -----------------------------------------------------------------------------------


def draw_legend(top, caption):
    """The key to colours and widths, and the step-through caption."""
    y = top + 16
    out = [f'<g class="mf-legend" data-role="legend" transform="translate({MARGIN},{y})">']
    x = 0
    for colour, text in (
        (POSITIVE, "positive gradient"),
        (NEGATIVE, "negative"),
        (ZERO, "zero or none"),
        (MIXED, "mixed signs (arrays)"),
    ):
        out.append(f'<line x1="{x}" y1="0" x2="{x + 24}" y2="0" stroke="{colour}" stroke-width="4"/>')
        out.append(f'<text x="{x + 30}" y="4" fill="{TEXT}">{escape(text)}</text>')
        x += 40 + 7 * len(text)
    out.append(
        f'<text x="0" y="24" fill="{TEXT}">Edges point forward; the label is the gradient sent back '
        "along the edge. Thicker: a larger gradient (largest entry for arrays).</text>"
        f'<text x="0" y="42" fill="{TEXT}">✓/✗: the gradient agrees/disagrees with a finite-difference '
        "estimate. Arrays: hover for values, click a node for a table.</text>"
    )
    if caption:
        out.append(
            f'<text x="0" y="{LEGEND_HEIGHT + 2}" fill="{TEXT}" font-size="13" font-weight="bold" '
            f'data-role="caption">{escape(caption)}</text>'
        )
    out.append("</g>")
    return "".join(out)


# -- text helpers -----------------------------------------------------------------------------


def shorten(text, width):
    return text if len(text) <= width else text[: width - 1] + "…"


def wrap(text, width, count):
    """At most `count` lines of at most `width` characters, broken at spaces where possible."""
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    lines = [shorten(line, width) for line in lines]
    if len(lines) > count:
        lines = [*lines[: count - 1], shorten(lines[count - 1] + " …", width)]
    return lines
