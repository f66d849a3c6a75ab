"""How the widgets write numbers and arrays: short, and the same everywhere."""

import numpy as np


def is_scalar(value):
    """Whether `value` is a single number (a 0-d array counts); None is not."""
    return value is not None and np.ndim(value) == 0


def format_number(value, in_sum=False):
    """12, -4, 0.1192 or 1.5e+08; a negative number in a sum is put in parentheses: (-4)."""
    number = float(value)
    if number == 0:
        text = "0"  # also for -0.0
    elif number.is_integer() and abs(number) < 1e6:
        text = str(int(number))
    else:
        text = f"{number:.4g}"
    return f"({text})" if in_sum and number < 0 else text


def format_shape(value):
    return " x ".join(str(size) for size in np.shape(value)) or "scalar"


def format_array(value, limit=8):
    """A whole array on a few lines, for tooltips: at most `limit` rows and columns."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim > 2:
        return f"an array of shape {array.shape}"
    rows = array.reshape(1, -1) if array.ndim < 2 else array

    def row_text(row):
        cells = [f"{number:.4g}" for number in row[:limit]]
        return "[" + ", ".join(cells) + (", …" if len(row) > limit else "") + "]"

    lines = [row_text(row) for row in rows[:limit]] + (["…"] if len(rows) > limit else [])
    return "\n".join(lines)


def format_value(value):
    """A number as a number, an array as its shape."""
    return format_number(value) if is_scalar(value) else f"[{format_shape(value)}]"
