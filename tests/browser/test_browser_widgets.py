"""The widgets in a real JupyterLab and Notebook 7, in Chromium.

Each test writes a notebook with the cells a release notebook uses, opens
it, runs all cells, works the widget as a student would, and checks what
the SVG says. A screenshot of each is saved under test-artifacts/.
"""

import re

import pytest

from .jupyter_driver import open_notebook, run_all_cells, wait_for_cells_done, write_notebook
from .svg_text import edge_text, node_texts

pytestmark = pytest.mark.browser

LAB_GRAPH_CELLS = [
    "from miniflow import *\nfrom miniflow.widgets import GradientFlow",
    "x, y, z = Input(), Input(), Input()\n"
    "g = Mul(x, y)\n"
    "h = Mul(x, z)\n"
    "f = Add(g, h)\n"
    "GradientFlow(f, {x: 3, y: 5, z: -4})",
]


def picture(page, index=0):
    """The SVG text of the index-th gradient-flow picture on the page."""
    view = page.locator(".mf-svg-view .mf-picture").nth(index)
    view.locator("svg").wait_for(timeout=60_000)
    return view.inner_html()


def slider(page, description):
    label = page.locator(".widget-label", has_text=re.compile(f"^{re.escape(description)}$"))
    return page.locator(".widget-slider", has=label).first


def slider_value(page, description):
    return float(slider(page, description).locator(".widget-readout").inner_text().replace("−", "-"))


def move_slider(page, description, key, presses):
    """Press `key` on the slider's handle, as a student moving it with the keyboard."""
    handle = slider(page, description).locator(".noUi-handle")
    handle.focus()
    for _ in range(presses):
        page.keyboard.press(key)


def wait_for_picture_change(page, old_svg, index=0):
    page.wait_for_function(
        "([index, old]) => document.querySelectorAll('.mf-svg-view .mf-picture')[index].innerHTML !== old",
        arg=[index, old_svg],
        timeout=30_000,
    )
    return picture(page, index)


def run_notebook(page, jupyter, folder, name, cells, ui="lab"):
    write_notebook(jupyter.root / folder / name, cells)
    open_notebook(page, jupyter, f"{folder}/{name}", ui=ui, workspace=name.removesuffix(".ipynb"))
    run_all_cells(page)
    wait_for_cells_done(page)


def assert_lab_graph_labels(svg, x, y, z):
    """The gradients a student should read for f = x*y + x*z at these values."""
    assert edge_text(svg, "x->g") == f"{y:g}"
    assert edge_text(svg, "x->h") == f"{z:g}"
    assert edge_text(svg, "y->g") == f"{x:g}"
    assert edge_text(svg, "z->h") == f"{x:g}"
    z_in_sum = f"({z:g})" if z < 0 else f"{z:g}"
    assert node_texts(svg, "x")["grad"] == f"grad {y:g} + {z_in_sum} = {y + z:g}"
    assert node_texts(svg, "x")["numeric"] == f"✓ numeric {y + z:g}"


@pytest.mark.parametrize("ui, key", [("lab", "ArrowRight"), ("notebook", "PageUp")])
def test_moving_a_slider_repaints_the_gradients(page, jupyter, screenshot, ui, key):
    # In Notebook 7 a focused slider loses arrow keys to notebook shortcuts; PageUp still works.
    run_notebook(page, jupyter, "reference", f"flow-{ui}.ipynb", LAB_GRAPH_CELLS, ui=ui)
    svg = picture(page)
    assert_lab_graph_labels(svg, 3, 5, -4)
    move_slider(page, "y", key, presses=2)
    page.wait_for_function(
        '() => !document.querySelector(\'.mf-svg-view [data-node="x"] [data-role="grad"]\')'
        ".textContent.startsWith('grad 5 ')",
        timeout=30_000,
    )
    new_y = slider_value(page, "y")
    assert new_y > 5
    page.wait_for_timeout(500)  # let every key's repaint arrive before reading the last
    assert_lab_graph_labels(picture(page), 3, slider_value(page, "y"), -4)
    screenshot()


def test_the_starter_draws_unwritten_nodes_as_not_implemented(page, jupyter, screenshot):
    run_notebook(page, jupyter, "starter", "flow-starter.ipynb", LAB_GRAPH_CELLS)
    svg = picture(page)
    for name in ("g", "h"):
        texts = node_texts(svg, name)
        assert texts["status"] == "forward: not implemented yet"
        assert texts["message"].startswith("NotImplementedError: Mul.forward:")
    assert node_texts(svg, "f")["value"] == "waiting for its inputs"
    outputs = page.locator(".jp-OutputArea-output")
    assert outputs.filter(has_text="Traceback").count() == 0
    assert page.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    move_slider(page, "x", "ArrowRight", presses=1)  # a repaint stays a picture, not a traceback
    page.wait_for_timeout(1000)
    assert node_texts(picture(page), "g")["status"] == "forward: not implemented yet"
    assert page.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    screenshot()


def test_step_through_buttons_walk_forward_then_backward(page, jupyter, screenshot):
    run_notebook(page, jupyter, "reference", "flow-steps.ipynb", LAB_GRAPH_CELLS)
    old = picture(page)
    page.get_by_role("button", name="step ▶").click()
    svg = wait_for_picture_change(page, old)
    assert "forward: g = x * y = 3 * 5 = 15" in svg
    for _ in range(5):
        page.get_by_role("button", name="step ▶").click()
    page.wait_for_function(
        "() => document.querySelector('.mf-svg-view [data-role=\"caption\"]')"
        ".textContent.startsWith('step 6')",
        timeout=30_000,
    )
    svg = picture(page)
    assert "d(x * z)/dx = z = -4" in svg
    assert node_texts(svg, "x")["grad"] == "grad -4"
    screenshot()


def test_array_graph_shows_shapes_and_a_table_on_click(page, jupyter, screenshot):
    cells = [
        "import numpy as np\nfrom miniflow import *\nfrom miniflow.widgets import GradientFlow",
        "X, W, b = Input(), Input(), Input()\n"
        "Z = Linear(X, W, b)\n"
        "s = Sigmoid(Z)\n"
        "rng = np.random.default_rng(0)\n"
        "feed_dict = {X: rng.normal(size=(3, 4)), W: rng.normal(size=(4, 2)), b: np.zeros(2)}\n"
        "GradientFlow(s, feed_dict, sliders={(W, (0, 0)): (-2, 2, 0.1)})",
    ]
    run_notebook(page, jupyter, "reference", "flow-arrays.ipynb", cells)
    svg = picture(page)
    assert node_texts(svg, "X")["value"] == "value [3 x 4]"
    assert node_texts(svg, "W")["numeric"].startswith("✓ numeric check")
    page.locator(".mf-svg-view [data-node='b']").click()
    table = page.locator(".mf-svg-view .mf-details table").first
    table.wait_for(timeout=30_000)
    assert table.locator("td").count() == 2  # b's value: 2 zeros
    move_slider(page, "W[0, 0]", "ArrowRight", presses=3)
    svg = wait_for_picture_change(page, svg)
    assert node_texts(svg, "W")["numeric"].startswith("✓ numeric check")
    screenshot()


TRAINING_CELLS = [
    "import time\nimport numpy as np\nfrom miniflow import *\n"
    "from miniflow.widgets import Playground, TrainingView",
    # A tiny softmax regression, slowed down so that the curves visibly grow while it runs.
    "rng = np.random.default_rng(0)\n"
    "data, labels = rng.normal(size=(90, 2)), np.arange(90) % 3\n"
    "data += 2 * np.eye(3)[labels][:, :2]\n"
    "X, y, W, b = Input(), Input(), Input(), Input()\n"
    "cost = CrossEntropyWithSoftmax(Linear(X, W, b), y)\n"
    "weights = {W: np.zeros((2, 3)), b: np.zeros(3)}\n"
    "view = TrainingView(total_steps=60, redraw_every=0.2)\n"
    "display(view)\n"
    "for step in range(1, 61):\n"
    "    loss, _ = value_and_grad(cost, {X: data, y: labels, **weights}, list(weights))\n"
    "    sgd_update(list(weights), 0.5)\n"
    "    view.log(step, train_loss=loss)\n"
    "    if step % 10 == 0:\n"
    "        view.log(step, val_accuracy=accuracy(cost, {X: data, y: labels, **weights}))\n"
    "    time.sleep(0.05)\n"
    "view.finish()",
    "Playground(dataset='blobs', steps_per_frame=5)",
]


def test_training_view_and_playground_update_live(page, jupyter, screenshot):
    write_notebook(jupyter.root / "reference" / "training.ipynb", TRAINING_CELLS)
    open_notebook(page, jupyter, "reference/training.ipynb", workspace="training")
    run_all_cells(page)
    bar = page.locator(".widget-hprogress").first
    bar.wait_for(timeout=60_000)
    seen = set()  # the steps the status showed while the cell ran
    for _ in range(600):  # at most about a minute
        text = page.evaluate(
            "() => [...document.querySelectorAll('.widget-label')].map(l => l.textContent)"
            ".find(t => /^step \\d+ of 60/.test(t)) || ''"
        )
        match = re.match(r"step (\d+) of 60", text)
        if match:
            seen.add(int(match.group(1)))
        if 60 in seen:
            break
        page.wait_for_timeout(100)
    assert len([step for step in seen if 0 < step < 60]) >= 2  # it moved while training ran
    wait_for_cells_done(page)
    chart = page.locator(".mf-svg-view").first.inner_html()
    count, last = re.search(r'data-series="train" data-count="(\d+)" data-last="([^"]+)"', chart).groups()
    assert int(count) == 60 and float(last) < 1.0986  # below the loss of a uniform guess, log 3
    assert len(re.findall(r'data-series="validation"', chart)) == 1

    status = page.locator(".widget-label", has_text=re.compile(r"^epoch \d+")).last
    assert status.inner_text().startswith("epoch 0")
    page.get_by_role("button", name="step").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.widget-label')]"
        ".some(l => l.textContent.startsWith('epoch 5 '))",
        timeout=30_000,
    )
    page.get_by_role("button", name="▶ play").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.widget-label')]"
        ".some(l => /^epoch ([3-9]\\d|\\d{3,}) /.test(l.textContent))",
        timeout=30_000,
    )
    page.get_by_role("button", name="⏸ pause").click()
    page.get_by_role("button", name="▶ play").wait_for(timeout=30_000)
    page.wait_for_timeout(500)
    paused_at = status.inner_text()
    page.wait_for_timeout(1000)
    assert status.inner_text() == paused_at  # pause stopped the training
    screenshot()
