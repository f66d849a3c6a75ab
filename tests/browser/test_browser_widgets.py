"""The widgets of the release notebooks in a real JupyterLab and Notebook 7, in Chromium.

Each test copies a student notebook from release/miniflow-lab/ into a course
folder beside a package (the reference, or the starter as students get it),
opens it, runs all its cells as a student would (going on past the cells that
raise because the notebook's own exercises are still stubs), works a widget,
and checks what its SVG says. A screenshot of each is saved under
test-artifacts/.
"""

import json
import re

import pytest
from conftest import REFERENCE, ROOT, STARTER

from .jupyter_driver import cell_states, cells, open_notebook, run_all_cells, run_cell, set_cell_source
from .svg_text import edge_text, node_texts

pytestmark = pytest.mark.browser

RELEASE = ROOT / "release" / "miniflow-lab"
ASSIGNMENT = ROOT / "assignments" / "miniflow-lab"
CHAIN_RULE = "01-chain-rule.ipynb"
LINEAR = "02-linear-and-sigmoid.ipynb"
DESCENT = "04-gradient-descent.ipynb"


def notebook_cells(folder, notebook):
    return json.loads((folder / notebook).read_text())["cells"]


def cell_index(notebook, cell_id):
    """The index of the release notebook's cell with this id (e.g. 'nb1-flow')."""
    ids = [cell.get("id") for cell in notebook_cells(RELEASE, notebook)]
    assert cell_id in ids, f"{notebook} has no cell {cell_id!r}"
    return ids.index(cell_id)


def release_source(notebook, cell_id):
    return "".join(notebook_cells(RELEASE, notebook)[cell_index(notebook, cell_id)]["source"])


def solution_source(notebook, cell_id):
    """The instructors' version of a solution cell, from the nbgrader source notebook."""
    for cell in notebook_cells(ASSIGNMENT, notebook):
        if cell.get("id") == cell_id:
            return "".join(cell["source"])
    raise KeyError(f"{notebook} in assignments/ has no cell {cell_id!r}")


def open_and_run(page, jupyter, path, ui="lab"):
    """Open a release notebook, run all its cells, and check that only stubs raised.

    Returns the indices of the cells that raised. Each must say
    NotImplementedError: a release notebook fails only where its exercises
    are not written yet.
    """
    open_notebook(page, jupyter, path, ui=ui, workspace=path.split("/")[0])
    raised = run_all_cells(page)
    states = cell_states(page)
    assert [i for i, state in enumerate(states) if state["traceback"]] == raised
    for index in raised:
        assert "NotImplementedError" in cells(page).nth(index).locator(".jp-OutputArea").text_content()
    return raised


def assert_runs_cleanly(page, index, raised):
    """The cell ran without a traceback or anything on stderr."""
    assert index not in raised
    output = cells(page).nth(index).locator(".jp-OutputArea")
    assert output.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0


def picture(cell):
    """The SVG text of the gradient-flow picture in this cell's output."""
    view = cell.locator(".mf-svg-view .mf-picture").first
    view.locator("svg").wait_for(timeout=60_000)
    return view.inner_html()


def wait_for_picture_change(page, cell, old_svg):
    handle = cell.locator(".mf-svg-view .mf-picture").first.element_handle()
    page.wait_for_function("([view, old]) => view.innerHTML !== old", arg=[handle, old_svg], timeout=30_000)
    return picture(cell)


def wait_for_node_text(page, cell, node, role, text):
    """Wait until the node's text of this role (e.g. 'grad') in the cell's picture reads `text`."""
    handle = cell.locator(".mf-svg-view .mf-picture").first.element_handle()
    page.wait_for_function(
        """([view, node, role, text]) => {
            const element = view.querySelector(`[data-node="${node}"] [data-role="${role}"]`);
            const own = element && [...element.childNodes].filter(n => n.nodeType === Node.TEXT_NODE);
            return own !== null && own.map(n => n.textContent).join('') === text;
        }""",
        arg=[handle, node, role, text],
        timeout=30_000,
    )


def slider(cell, description):
    label = cell.page.locator(".widget-label", has_text=re.compile(f"^{re.escape(description)}$"))
    return cell.locator(".widget-slider", has=label).first


def slider_value(cell, description):
    return float(slider(cell, description).locator(".widget-readout").text_content().replace("−", "-"))


def move_slider(page, cell, description, key, presses):
    """Press `key` on the slider's handle, as a student moving it with the keyboard."""
    handle = slider(cell, description).locator(".noUi-handle")
    handle.focus()
    for _ in range(presses):
        page.keyboard.press(key)


def signed(number):
    """A number as the picture writes it inside a sum: (-5) for a negative one."""
    return f"({number:g})" if number < 0 else f"{number:g}"


def assert_lab_graph_labels(svg, x, y, z):
    """The gradients a student should read for f = x*y + x*z: df/dx = y + z, df/dy = df/dz = x."""
    assert node_texts(svg, "f")["value"] == f"value {x * y + x * z:g}"
    assert edge_text(svg, "x->g") == f"{y:g}"
    assert edge_text(svg, "x->h") == f"{z:g}"
    assert edge_text(svg, "y->g") == f"{x:g}"
    assert edge_text(svg, "z->h") == f"{x:g}"
    assert node_texts(svg, "x")["grad"] == f"grad {y:g} + {signed(z)} = {y + z:g}"
    assert node_texts(svg, "x")["numeric"] == f"✓ numeric {y + z:g}"
    assert node_texts(svg, "y")["grad"] == f"grad {x:g}"
    assert node_texts(svg, "z")["grad"] == f"grad {x:g}"


@pytest.mark.parametrize("ui, key", [("lab", "ArrowRight"), ("notebook", "PageUp")])
def test_chain_rule_gradients_follow_a_slider(page, jupyter, course, screenshot, ui, key):
    # Notebook 1's picture of f = x*y + x*z at x=3, y=4, z=-5, drawn by the reference Mul.
    # In Notebook 7 a focused slider loses arrow keys to notebook shortcuts; PageUp still works.
    raised = open_and_run(page, jupyter, course(REFERENCE, RELEASE / CHAIN_RULE), ui=ui)
    flow = cell_index(CHAIN_RULE, "nb1-flow")
    assert_runs_cleanly(page, flow, raised)
    cell = cells(page).nth(flow)
    assert_lab_graph_labels(picture(cell), 3, 4, -5)

    move_slider(page, cell, "y", key, presses=2)
    readout = slider(cell, "y").locator(".widget-readout").element_handle()
    page.wait_for_function("(readout) => readout.textContent.trim() !== '4.0'", arg=readout, timeout=30_000)
    y = slider_value(cell, "y")
    assert y > 4
    # Each key press repaints; wait for the picture of the value the slider ended on.
    wait_for_node_text(page, cell, "x", "grad", f"grad {y:g} + (-5) = {y - 5:g}")
    assert_lab_graph_labels(picture(cell), 3, y, -5)
    cell.scroll_into_view_if_needed()
    screenshot()


def test_step_through_buttons_walk_forward_then_backward(page, jupyter, course, screenshot):
    raised = open_and_run(page, jupyter, course(REFERENCE, RELEASE / CHAIN_RULE))
    flow = cell_index(CHAIN_RULE, "nb1-flow")
    assert_runs_cleanly(page, flow, raised)
    cell = cells(page).nth(flow)
    old = picture(cell)
    step = cell.get_by_role("button", name="step ▶")
    step.click()
    svg = wait_for_picture_change(page, cell, old)
    assert "forward: g = x * y = 3 * 4 = 12" in svg
    for _ in range(5):
        step.click()
    page.wait_for_function(
        "(view) => view.querySelector('[data-role=\"caption\"]').textContent.startsWith('step 6')",
        arg=cell.locator(".mf-svg-view .mf-picture").first.element_handle(),
        timeout=30_000,
    )
    svg = picture(cell)
    assert "d(x * z)/dx = z = -5" in svg
    assert node_texts(svg, "x")["grad"] == "grad -5"
    cell.scroll_into_view_if_needed()
    screenshot()


def test_the_starter_draws_unwritten_nodes_as_not_implemented(page, jupyter, course, screenshot):
    # The same notebook as a student first opens it: Mul is still a stub in the package.
    raised = open_and_run(page, jupyter, course(STARTER, RELEASE / CHAIN_RULE))
    flow = cell_index(CHAIN_RULE, "nb1-flow")
    assert cell_index(CHAIN_RULE, "mul-lab-f") in raised  # the test cell above the picture fails
    assert_runs_cleanly(page, flow, raised)  # the picture does not
    cell = cells(page).nth(flow)
    svg = picture(cell)
    for name in ("g", "h"):
        texts = node_texts(svg, name)
        assert texts["status"] == "forward: not implemented yet"
        assert texts["message"].startswith("NotImplementedError: Mul.forward:")
    assert node_texts(svg, "f")["value"] == "waiting for its inputs"

    move_slider(page, cell, "x", "ArrowRight", presses=1)  # a repaint stays a picture, not a traceback
    svg = wait_for_picture_change(page, cell, svg)
    assert node_texts(svg, "x")["value"] == "value 3.5"
    assert node_texts(svg, "g")["status"] == "forward: not implemented yet"
    assert_runs_cleanly(page, flow, raised)
    cell.scroll_into_view_if_needed()
    screenshot()


def test_array_graph_shows_shapes_and_a_table_on_click(page, jupyter, course, screenshot):
    # Notebook 2's Linear -> Sigmoid on a batch of 3 examples with 4 features.
    raised = open_and_run(page, jupyter, course(REFERENCE, RELEASE / LINEAR))
    flow = cell_index(LINEAR, "nb2-flow")
    assert_runs_cleanly(page, flow, raised)
    cell = cells(page).nth(flow)
    svg = picture(cell)
    assert node_texts(svg, "X")["value"] == "value [3 x 4]"
    assert node_texts(svg, "W")["numeric"].startswith("✓ numeric check")
    cell.locator(".mf-svg-view [data-node='b']").click()
    table = cell.locator(".mf-svg-view .mf-details table").first
    table.wait_for(timeout=30_000)
    assert table.locator("td").count() == 2  # b's value: 2 zeros
    move_slider(page, cell, "W[0, 0]", "ArrowRight", presses=3)
    svg = wait_for_picture_change(page, cell, svg)
    assert node_texts(svg, "W")["numeric"].startswith("✓ numeric check")
    cell.scroll_into_view_if_needed()
    screenshot()


# Every "step n of m" status the page shows, recorded as it changes: a poll could miss a redraw.
RECORD_STATUS_TEXTS = """() => {
    window.seenStatus = [];
    new MutationObserver(() => {
        for (const label of document.querySelectorAll('.widget-label')) {
            const text = label.textContent;
            if (text.startsWith('step ') && !window.seenStatus.includes(text)) window.seenStatus.push(text);
        }
    }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""

EPOCHS = 2000  # about 3 s of training on an idle machine: long enough to watch it redraw


def test_training_view_and_playground_update_live(page, jupyter, course, screenshot):
    raised = open_and_run(page, jupyter, course(REFERENCE, RELEASE / DESCENT))
    training = cell_index(DESCENT, "nb4-training-view")
    # run_epoch (Exercise 4.2) is still a stub: the view says so instead of a traceback.
    assert_runs_cleanly(page, training, raised)
    cell = cells(page).nth(training)
    assert "Not implemented yet: run_epoch" in cell.locator(".jp-OutputArea").text_content()

    # Do the exercise as a student would: write run_epoch in its cell and run it, then
    # train for longer than the notebook's 100 epochs (a fraction of a second) and watch.
    answer = cell_index(DESCENT, "run-epoch-answer")
    set_cell_source(page, answer, solution_source(DESCENT, "run-epoch-answer"))
    run_cell(page, answer)
    assert_runs_cleanly(page, answer, [])
    source = release_source(DESCENT, "nb4-training-view")
    settings = "learning_rate, batch_size, epochs = 0.05, 16, 100"
    assert settings in source
    set_cell_source(page, training, source.replace(settings, settings.replace("100", str(EPOCHS))))
    page.evaluate(RECORD_STATUS_TEXTS)
    run_cell(page, training)
    assert_runs_cleanly(page, training, [])
    seen = page.evaluate("() => window.seenStatus")
    steps = {int(m.group(1)) for text in seen if (m := re.match(rf"step (\d+) of {EPOCHS}\b", text))}
    assert EPOCHS in steps
    assert len([step for step in steps if 0 < step < EPOCHS]) >= 2, seen  # it redrew while training ran
    chart = cell.locator(".mf-svg-view").first.inner_html()
    series_pattern = r'data-series="(\w+)" data-count="(\d+)" data-last="([^"]+)"'
    series = {name: (int(count), float(last)) for name, count, last in re.findall(series_pattern, chart)}
    assert series["train"][0] == EPOCHS and series["validation"][0] == EPOCHS
    assert series["train"][1] < 0.5  # mean squared error; predicting the average scores about 1
    assert series["validation"][1] < 1.0
    cell.scroll_into_view_if_needed()
    screenshot()

    # The playground at the end: step, play, pause.
    playground = cells(page).nth(cell_index(DESCENT, "nb4-playground"))
    status = playground.locator(".widget-label", has_text=re.compile(r"^epoch \d+")).first
    status.wait_for(timeout=30_000)
    assert status.text_content().startswith("epoch 0")
    playground.get_by_role("button", name="step").click()
    page.wait_for_function(
        "(label) => label.textContent.startsWith('epoch 10 ')", arg=status.element_handle(), timeout=30_000
    )
    playground.get_by_role("button", name="▶ play").click()
    page.wait_for_function(
        "(label) => /^epoch ([3-9]\\d|\\d{3,}) /.test(label.textContent)",
        arg=status.element_handle(),
        timeout=30_000,
    )
    playground.get_by_role("button", name="⏸ pause").click()
    # The kernel relabels the button between two frames, after the last frame's update was sent.
    playground.get_by_role("button", name="▶ play").wait_for(timeout=30_000)
    paused_at = status.text_content()
    page.wait_for_timeout(1000)
    assert status.text_content() == paused_at  # pause stopped the training
    playground.scroll_into_view_if_needed()
    screenshot("-playground")
