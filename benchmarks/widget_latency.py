"""Slider-to-repaint latency of GradientFlow in JupyterLab, measured in the browser.

    .venv/bin/python benchmarks/widget_latency.py [--moves 20] [--server kit|stock|both] [--strict]

Starts JupyterLab on 127.0.0.1 with a copy of the reference package, opens
a notebook with two graphs (the lab's f = x*y + x*z, and Linear -> Sigmoid
on a 3x4 batch), and moves a slider of each with the keyboard. One move is
timed in the page, from the keydown event to the first animation frame
after the new SVG is in the DOM, so it covers the round trip to the kernel,
the forward and backward pass, the finite-difference check and the drawing.
Prints the median and spread of each; the target is a median of 30 ms or
less (--strict: exit 1 if missed). A third slider that only sends a
one-word SVG to the same kind of view measures the floor of the machine
as it is loaded now, for comparison within one run.

The same notebook is measured twice, one server after the other: "kit" is
JupyterLab as this project's environment starts it, with the
jupyterlab_miniflow.kernel_websocket extension (kernel messages sent with
TCP_NODELAY); "stock" turns that extension off, as a plain jupyter_server
runs. The target is for the kit. Needs Debian's /usr/bin/chromium and
playwright, as the browser tests do.
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser.jupyter_driver import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    JupyterServer,
    open_notebook,
    run_all_cells,
    write_notebook,
)

TARGET_MS = 30

CELLS = [
    "import numpy as np\nfrom miniflow import *\nfrom miniflow.widgets import GradientFlow",
    "x, y, z = Input(), Input(), Input()\ng = Mul(x, y)\nh = Mul(x, z)\nf = Add(g, h)\n"
    "GradientFlow(f, {x: 3, y: 5, z: -4}, sliders={y: (-10, 10, 0.5)})",
    "X, W, b = Input(), Input(), Input()\ns = Sigmoid(Linear(X, W, b))\nrng = np.random.default_rng(0)\n"
    "GradientFlow(s, {X: rng.normal(size=(3, 4)), W: rng.normal(size=(4, 2)), b: np.zeros(2)},\n"
    "             sliders={(W, (0, 0)): (-3, 3, 0.1)})",
    # The floor: a slider whose every move sends a one-word SVG to the same kind of view.
    "import ipywidgets as widgets\nfrom miniflow.widgets.svg_view import SvgView\n"
    "def tiny_svg(value):\n"
    '    return f\'<svg xmlns="http://www.w3.org/2000/svg"><text y="20">{value}</text></svg>\'\n'
    "floor_view = SvgView(svg=tiny_svg(0))\n"
    "floor_slider = widgets.FloatSlider(description='floor')\n"
    "floor_slider.observe(lambda change: setattr(floor_view, 'svg', tiny_svg(change['new'])), 'value')\n"
    "widgets.VBox([floor_slider, floor_view])",
]

# One per slider of CELLS, in order; the target is for the first two.
GRAPHS = [
    "x*y + x*z, slider y",
    "Linear -> Sigmoid 3x4, slider W[0,0]",
    "floor: slider -> tiny SVG, no graph",
]

# Stamps the time of each keydown, and of the first frame after each change of a picture.
TIMING_SCRIPT = """
() => {
    window.mfKeyAt = 0;
    window.mfPaintAt = 0;
    document.addEventListener('keydown', () => { window.mfKeyAt = performance.now(); }, true);
    for (const picture of document.querySelectorAll('.mf-svg-view .mf-picture')) {
        new MutationObserver(() => {
            requestAnimationFrame(() => { window.mfPaintAt = performance.now(); });
        }).observe(picture, { childList: true, subtree: true });
    }
}
"""


def measure(page, slider_index, moves):
    """Latencies in ms of `moves` keyboard moves of the slider_index-th slider."""
    handle = page.locator(".widget-slider .noUi-handle").nth(slider_index)
    handle.focus()
    latencies = []
    for move in range(moves):
        page.evaluate("() => { window.mfPaintAt = 0; }")
        page.keyboard.press("ArrowRight" if move % 4 < 2 else "ArrowLeft")
        page.wait_for_function("() => window.mfPaintAt > window.mfKeyAt", timeout=30_000)
        latencies.append(page.evaluate("() => window.mfPaintAt - window.mfKeyAt"))
        page.wait_for_timeout(150)  # let the kernel settle: moves one at a time, not a burst
    return latencies


def report(name, latencies):
    median = statistics.median(latencies)
    print(
        f"{name:<38} median {median:6.1f} ms   min {min(latencies):6.1f}   "
        f"max {max(latencies):6.1f}   ({len(latencies)} moves)"
    )


SERVERS = {
    "kit": (),
    "stock": ("--ServerApp.jpserver_extensions=jupyterlab_miniflow.kernel_websocket=False",),
}
EXTENSION_LOADED = "jupyterlab_miniflow.kernel_websocket | extension was successfully loaded"


def measure_server(name, moves):
    """{graph: latencies in ms} for the three sliders, on the JupyterLab SERVERS[name]."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="widget-latency-") as scratch:
        scratch = Path(scratch)
        shutil.copytree(
            ROOT / "solutions" / "miniflow",
            scratch / "notebooks" / "miniflow",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        write_notebook(scratch / "notebooks" / "latency.ipynb", CELLS)
        (scratch / "state").mkdir()
        server = JupyterServer(scratch / "notebooks", scratch / "state", extra_args=SERVERS[name])
        try:
            loaded = EXTENSION_LOADED in (scratch / "state" / "jupyter.log").read_text()
            if loaded != (name == "kit"):
                wrong = "lacks" if name == "kit" else "has"
                sys.exit(f"the {name} JupyterLab {wrong} the jupyterlab_miniflow.kernel_websocket extension")
            with sync_playwright() as driver:
                context = driver.chromium.launch_persistent_context(
                    str(scratch / "profile"),
                    executable_path=str(CHROMIUM),
                    headless=True,
                    args=CHROMIUM_ARGS,
                    viewport={"width": 1400, "height": 1000},
                )
                page = context.pages[0] if context.pages else context.new_page()
                started = time.monotonic()
                open_notebook(page, server, "latency.ipynb", workspace="latency")
                run_all_cells(page)
                page.locator(".mf-svg-view svg").nth(2).wait_for(timeout=60_000)
                print(f"notebook open and run in {time.monotonic() - started:.1f} s")
                page.evaluate(TIMING_SCRIPT)
                latencies = {graph: measure(page, index, moves) for index, graph in enumerate(GRAPHS)}
                context.close()
        finally:
            server.stop()
    return latencies


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=20)
    parser.add_argument("--server", choices=[*SERVERS, "both"], default="both")
    parser.add_argument(
        "--strict", action="store_true", help=f"exit 1 if a kit median exceeds {TARGET_MS} ms"
    )
    args = parser.parse_args(argv)
    names = list(SERVERS) if args.server == "both" else [args.server]
    results = {}
    for name in names:
        print(f"-- {name} JupyterLab")
        results[name] = measure_server(name, args.moves)
        for graph, latencies in results[name].items():
            report(graph, latencies)
    if len(names) > 1:
        print("-- side by side: median, mean (share of moves over 40 ms)")
        for graph in GRAPHS:
            cells = "   ".join(f"{name} {summary(results[name][graph])}" for name in names)
            print(f"{graph:<38} {cells}")
    met = None
    if "kit" in results:
        met = all(statistics.median(results["kit"][graph]) <= TARGET_MS for graph in GRAPHS[:2])
        print(f"target: kit median <= {TARGET_MS} ms: {'met' if met else 'NOT met'}")
    return 1 if args.strict and met is False else 0


def summary(latencies):
    slow = sum(latency > 40 for latency in latencies) / len(latencies)
    return f"{statistics.median(latencies):5.1f}, {statistics.mean(latencies):5.1f} ms ({slow:3.0%})"


if __name__ == "__main__":
    sys.exit(main())
