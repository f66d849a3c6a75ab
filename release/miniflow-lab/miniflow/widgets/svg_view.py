"""The one front-end piece: a view that shows SVG text sent from the kernel.

Built with anywidget, so it needs no build step: the JavaScript and CSS are
the two files beside this one.
"""

from pathlib import Path

import anywidget
import traitlets

HERE = Path(__file__).parent


class SvgView(anywidget.AnyWidget):
    """Shows `svg`; a click on an element with a data-node attribute sets `selected`.

    `details` is HTML shown under the picture (the clicked node's tables).
    """

    _esm = HERE / "svg_view.js"
    _css = HERE / "svg_view.css"
    svg = traitlets.Unicode("").tag(sync=True)
    details = traitlets.Unicode("").tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)


def with_static_picture(bundle, svg):
    """Add `svg` to a widget's display bundle, as HTML and as an image.

    The live widget is shown wherever widgets work; a notebook exported or
    opened without a kernel (HTML export, nbgrader feedback) shows this
    picture instead. As HTML the SVG stays text, so its tooltips still work.
    """
    return {**bundle, "text/html": svg, "image/svg+xml": svg}
