"""Line charts as SVG text: the training curves."""

from html import escape

WIDTH, HEIGHT = 330, 210
FONTS = "DejaVu Sans, Helvetica, Arial, sans-serif"
GREY = "#4a5568"
LEFT, RIGHT, TOP, BOTTOM = 46, 12, 26, 30
MAX_POINTS = 300  # longer series are averaged down to this many points


def thin_out(points):
    """At most MAX_POINTS (step, value) pairs: the means of equal runs of consecutive points."""
    if len(points) <= MAX_POINTS:
        return points
    size = len(points) / MAX_POINTS
    runs = [points[int(i * size) : int((i + 1) * size)] for i in range(MAX_POINTS)]
    return [(sum(s for s, _ in run) / len(run), sum(v for _, v in run) / len(run)) for run in runs if run]


def line_chart(title, series, y_range=None, x_max=None):
    """An <svg> chart of several named series, each a list of (step, value), with a legend.

    series maps a name to (colour, dashed, points). y_range is (low, high), or
    None to fit the data; x_max is the last step of the x axis.
    """
    all_points = [point for _, _, points in series.values() for point in points]
    x_high = max([x_max or 1] + [step for step, _ in all_points])
    if y_range is None:
        values = [value for _, value in all_points] or [0.0, 1.0]
        y_range = (min(0.0, min(values)), max(values) if max(values) > 0 else 1.0)
    low, high = y_range
    high = high if high > low else low + 1.0

    def x_of(step):
        return LEFT + (WIDTH - LEFT - RIGHT) * step / x_high

    def y_of(value):
        return HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * (value - low) / (high - low)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'font-family="{FONTS}" font-size="11" data-chart="{escape(title)}">',
        f'<text x="{LEFT}" y="14" font-weight="bold" font-size="12">{escape(title)}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" '
        'fill="#ffffff" stroke="#cbd5e0"/>',
    ]
    for value in (low, (low + high) / 2, high):
        out.append(
            f'<text x="{LEFT - 4}" y="{y_of(value) + 4:.1f}" text-anchor="end" fill="{GREY}">'
            f"{value:.3g}</text>"
        )
    out.append(f'<text x="{LEFT}" y="{HEIGHT - 12}" fill="{GREY}">0</text>')
    out.append(
        f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 12}" text-anchor="end" fill="{GREY}">'
        f"step {x_high:.0f}</text>"
    )
    legend_x = LEFT + 8
    for name, (colour, dashed, points) in series.items():
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        if points:
            path = " ".join(f"{x_of(s):.1f},{y_of(v):.1f}" for s, v in thin_out(points))
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.8"{dash} '
                f'data-series="{escape(name)}" data-count="{len(points)}" data-last="{points[-1][1]:.6g}"/>'
            )
        out.append(
            f'<line x1="{legend_x}" y1="{TOP + 10}" x2="{legend_x + 18}" y2="{TOP + 10}" stroke="{colour}" '
            f'stroke-width="2"{dash}/><text x="{legend_x + 22}" y="{TOP + 14}">{escape(name)}</text>'
        )
        legend_x += 34 + 7 * len(name)
    out.append("</svg>")
    return "".join(out)


def side_by_side(*charts):
    """Several <svg> charts in one <svg>, left to right."""
    parts = [f'<g transform="translate({i * WIDTH},0)">{chart}</g>' for i, chart in enumerate(charts)]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH * len(charts)}" height="{HEIGHT}">'
        + "".join(parts)
        + "</svg>"
    )
