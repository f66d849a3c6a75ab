"""Small HTML tables of a node's value and gradient, shown when a node is clicked."""

from html import escape

import numpy as np

from .numbers import format_number

MAX_ROWS = MAX_COLUMNS = 12


def array_table(value):
    """An HTML table of a scalar, vector or matrix (larger arrays: their shape only)."""
    array = np.asarray(value)
    if array.ndim > 2:
        return f"<p>an array of shape {array.shape}</p>"
    rows = array.reshape(1, -1) if array.ndim < 2 else array
    cells = "".join(
        "<tr>" + "".join(f"<td>{format_number(v)}</td>" for v in row[:MAX_COLUMNS]) + "</tr>"
        for row in rows[:MAX_ROWS]
    )
    cut = " (first 12 rows and columns)" if rows.shape[0] > MAX_ROWS or rows.shape[1] > MAX_COLUMNS else ""
    return f'<table class="mf-table"><caption>shape {array.shape}{cut}</caption>{cells}</table>'


def node_details(trace, node):
    """The clicked node's value and gradient side by side."""
    record = trace.records[node]
    parts = [f"<b>{escape(record.label)}</b> ({type(node).__name__})"]
    value = trace.value(node)
    parts.append("<div><i>value</i>" + (array_table(value) if value is not None else " ?") + "</div>")
    gradient = trace.total_gradient(node)
    parts.append(
        "<div><i>gradient</i>" + (array_table(gradient) if gradient is not None else " ?") + "</div>"
    )
    if record.numeric_gradient is not None:
        parts.append(
            "<div><i>finite-difference estimate</i>" + array_table(record.numeric_gradient) + "</div>"
        )
    if record.error:
        parts.append(f"<div><i>{record.failed_in} raised</i><pre>{escape(record.error)}</pre></div>")
    return '<div class="mf-details-row">' + "".join(parts) + "</div>"
