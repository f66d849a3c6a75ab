"""The gradient-flow widget, the self-check and the training views, without a browser.

The pictures are read back through their SVG text, by node, edge and role,
as a student reads them; expected numbers are worked out from the inputs.
"""

import importlib
import re
import shutil
import sys
import textwrap

import numpy as np
import pytest
from browser.svg_text import caption, edge_text, node_texts
from conftest import REFERENCE, ROOT, STARTER


@pytest.fixture(scope="module")
def widgets(mf):
    return importlib.import_module(f"{mf.__name__}.widgets")


@pytest.fixture(scope="module")
def starter_widgets(starter):
    return importlib.import_module(f"{starter.__name__}.widgets")


def lab_graph(pkg):
    """The lab's f = x*y + x*z, with named nodes."""
    x, y, z = pkg.Input("x"), pkg.Input("y"), pkg.Input("z")
    f = pkg.Add(pkg.Mul(x, y, name="g"), pkg.Mul(x, z, name="h"), name="f")
    return x, y, z, f


def slider(flow, description):
    (found,) = [s for s in flow.sliders if s.description == description]
    return found


def numbers_in(text):
    return [float(n) for n in re.findall(r"-?\d+\.?\d*(?:e[-+]?\d+)?", text)]


# -- gradient flow: the lab's graph --------------------------------------------------------------


def test_each_edge_shows_its_contribution_and_a_shared_input_shows_the_sum(mf, widgets):
    x, y, z, f = lab_graph(mf)
    flow = widgets.GradientFlow(f, {x: 3, y: 5, z: -4})
    svg = flow.svg
    assert edge_text(svg, "x->g") == "5"  # d(x*y)/dx = y
    assert edge_text(svg, "x->h") == "-4"  # d(x*z)/dx = z
    assert edge_text(svg, "y->g") == "3"
    assert edge_text(svg, "g->f") == "1"
    assert node_texts(svg, "x")["grad"] == "grad 5 + (-4) = 1"
    assert node_texts(svg, "g")["value"] == "value 15"
    assert node_texts(svg, "f")["value"] == "value 3"


@pytest.mark.parametrize("new_y", [6.5, -2.0])
def test_moving_a_slider_recomputes_forward_and_backward(mf, widgets, new_y):
    x, y, z, f = lab_graph(mf)
    flow = widgets.GradientFlow(f, {x: 3, y: 5, z: -4})
    slider(flow, "y").value = new_y
    svg = flow.svg
    shown_y = f"{new_y:g}"
    assert edge_text(svg, "x->g") == shown_y
    assert node_texts(svg, "x")["grad"] == f"grad {new_y:g} + (-4) = {new_y - 4:g}"
    assert node_texts(svg, "g")["value"] == f"value {3 * new_y:g}"
    assert edge_text(svg, "y->g") == "3"


def test_sliders_take_ranges_and_steps(mf, widgets):
    x, y, z, f = lab_graph(mf)
    flow = widgets.GradientFlow(f, {x: 3, y: 5, z: -4}, sliders={x: (-2, 8, 0.25), y: (0, 1)})
    assert [s.description for s in flow.sliders] == ["x", "y"]
    x_slider, y_slider = flow.sliders
    assert (x_slider.min, x_slider.max, x_slider.step) == (-2, 8, 0.25)
    assert (y_slider.min, y_slider.max) == (0, 5)  # widened to hold the fed 5
    assert x_slider.value == 3


def test_every_scalar_input_gets_a_slider_by_default(mf, widgets):
    x, y, z, f = lab_graph(mf)
    flow = widgets.GradientFlow(f, {x: 3, y: 5, z: -4})
    assert sorted(s.description for s in flow.sliders) == ["x", "y", "z"]


def test_a_correct_gradient_gets_a_check_mark_beside_its_numeric_estimate(mf, widgets):
    x, y, z, f = lab_graph(mf)
    svg = widgets.GradientFlow(f, {x: 3, y: 5, z: -4}).svg
    assert node_texts(svg, "x")["numeric"] == "✓ numeric 1"
    assert node_texts(svg, "z")["numeric"] == "✓ numeric 3"


def make_square_node(mf, factor):
    class Square(mf.Node):
        """x**2, with a backward that is right only for factor == 2."""

        def __init__(self, x, name=None):
            super().__init__((x,), name=name)

        def forward(self, x):
            return x * x

        def backward(self, grad, x):
            return (factor * grad * x,)

    return Square


def test_a_wrong_gradient_is_marked_and_the_estimate_shows_the_right_one(mf, widgets):
    square = make_square_node(mf, factor=1)
    x = mf.Input("x")
    svg = widgets.GradientFlow(square(x, name="s"), {x: 3.0}).svg
    texts = node_texts(svg, "x")
    assert texts["grad"] == "grad 3"
    assert texts["numeric"].startswith("✗ numeric")
    assert numbers_in(texts["numeric"]) == pytest.approx([6.0], rel=1e-6)


def test_a_node_used_twice_by_one_consumer_has_one_edge_with_both_parts(mf, widgets):
    x = mf.Input("x")
    svg = widgets.GradientFlow(mf.Mul(x, x, name="sq"), {x: 3}).svg
    assert edge_text(svg, "x->sq") == "6"
    assert node_texts(svg, "x")["numeric"] == "✓ numeric 6"


def test_a_dummygrad_output_starts_from_its_fed_gradient(mf, widgets):
    x, y, z, f = lab_graph(mf)
    dummy = mf.DummyGrad(f, name="d")
    svg = widgets.GradientFlow(dummy, {x: 3, y: 5, z: -4, dummy: 0.5}).svg
    assert edge_text(svg, "x->g") == "2.5"
    assert node_texts(svg, "x")["grad"] == "grad 2.5 + (-2) = 0.5"
    assert node_texts(svg, "x")["numeric"] == "✓ numeric 0.5"


# -- unfinished nodes ------------------------------------------------------------------------------


def test_the_starters_mul_is_drawn_as_not_implemented_with_its_message(starter, starter_widgets, capsys):
    x, y, z, f = lab_graph(starter)
    flow = starter_widgets.GradientFlow(f, {x: 3, y: 5, z: -4})
    g, f_texts = node_texts(flow.svg, "g"), node_texts(flow.svg, "f")
    assert g["status"] == "forward: not implemented yet"
    assert g["message"].startswith("NotImplementedError: Mul.forward:")
    assert f_texts["value"] == "waiting for its inputs"
    assert node_texts(flow.svg, "x")["value"] == "value 3"
    slider(flow, "y").value = 1.0  # still no traceback when redrawn
    assert node_texts(flow.svg, "h")["status"] == "forward: not implemented yet"
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_the_stub_message_with_its_hint_is_written_in_the_box(starter, starter_widgets):
    x, y, z, f = lab_graph(starter)
    flow = starter_widgets.GradientFlow(f, {x: 3, y: 5, z: -4})
    with pytest.raises(NotImplementedError) as stub:
        starter.Mul(x, y).forward(3, 5)
    message = node_texts(flow.svg, "g")["message"]
    assert message.startswith(f"NotImplementedError: {str(stub.value)[:20]}")
    full_text = re.search(r'data-node="g".*?<title>(.*?)</title>', flow.svg, re.S).group(1)
    assert str(stub.value) in full_text  # the whole message is in the tooltip


def test_a_node_without_backward_stops_the_backward_pass_there(mf, widgets):
    class Cube(mf.Node):  # forward only: Node.backward raises NotImplementedError
        def __init__(self, x, name=None):
            super().__init__((x,), name=name)

        def forward(self, x):
            return x**3

    x, y = mf.Input("x"), mf.Input("y")
    f = mf.Add(Cube(x, name="c"), mf.Mul(x, y, name="m"), name="f")
    svg = widgets.GradientFlow(f, {x: 2.0, y: 5.0}).svg
    cube = node_texts(svg, "c")
    assert cube["value"] == "value 8"
    assert cube["status"] == "backward: not implemented yet"
    assert edge_text(svg, "x->c") == "?"
    assert edge_text(svg, "c->f") == "1"  # Add's backward ran before the failure
    assert node_texts(svg, "x")["grad"] == "grad ?"
    # The estimate still shows what x's gradient should be: 3 x**2 + y.
    assert numbers_in(node_texts(svg, "x")["numeric"]) == pytest.approx([3 * 2.0**2 + 5.0], rel=1e-6)


def test_a_node_whose_forward_raises_another_error_shows_that_error(mf, widgets):
    class Broken(mf.Node):
        def __init__(self, x, name=None):
            super().__init__((x,), name=name)

        def forward(self, x):
            return x + "one"

    x = mf.Input("x")
    svg = widgets.GradientFlow(Broken(x, name="b"), {x: 2.0}).svg
    assert node_texts(svg, "b")["status"] == "forward raised an error"
    assert "TypeError" in svg


def test_warnings_inside_a_node_are_shown_not_printed(mf, widgets, capsys):
    x = mf.Input("x")
    svg = widgets.GradientFlow(mf.Mul(x, x, name="sq"), {x: np.float32(1e30)}).svg
    assert "overflow" in node_texts(svg, "sq")["warning"]
    assert capsys.readouterr().err == ""


# -- tensors ---------------------------------------------------------------------------------------


@pytest.fixture
def linear_sigmoid(mf):
    rng = np.random.default_rng(5)
    X, W, b = mf.Input("X"), mf.Input("W"), mf.Input("b")
    output = mf.Sigmoid(mf.Linear(X, W, b, name="Z"), name="s")
    feed_dict = {X: rng.normal(size=(3, 4)), W: rng.normal(size=(4, 2)), b: rng.normal(size=2)}
    return X, W, b, output, feed_dict


def test_arrays_are_shown_by_shape_with_their_values_on_hover(widgets, linear_sigmoid):
    X, _W, _b, output, feed_dict = linear_sigmoid
    svg = widgets.GradientFlow(output, feed_dict).svg
    assert node_texts(svg, "X")["value"] == "value [3 x 4]"
    assert node_texts(svg, "s")["value"] == "value [3 x 2]"
    assert edge_text(svg, "W->Z") == "[4 x 2]"
    tooltip = re.search(r'data-node="X".*?data-role="value"><title>(.*?)</title>', svg, re.S).group(1)
    assert numbers_in(tooltip.split(":", 1)[1]) == pytest.approx(feed_dict[X].ravel(), rel=1e-3)


def test_array_inputs_pass_the_finite_difference_check(widgets, linear_sigmoid):
    _X, _W, _b, output, feed_dict = linear_sigmoid
    svg = widgets.GradientFlow(output, feed_dict).svg
    for name in "XWb":
        assert node_texts(svg, name)["numeric"].startswith("✓ numeric check")


def test_a_slider_on_one_entry_of_an_array_changes_the_gradients(mf, widgets, linear_sigmoid):
    X, W, _b, output, feed_dict = linear_sigmoid
    flow = widgets.GradientFlow(output, feed_dict, sliders={(W, (0, 1)): (-3, 3, 0.1)})
    (w_slider,) = flow.sliders
    assert w_slider.description == "W[0, 1]"
    w_slider.value = 2.5
    new_W = feed_dict[W].copy()
    new_W[0, 1] = 2.5
    _, (expected_dX,) = mf.value_and_grad(output, {**feed_dict, W: new_W}, [X])
    tooltip = re.search(r'data-edge="X-&gt;Z".*?<title>(.*?)</title>', flow.svg, re.S).group(1)
    assert numbers_in(tooltip.split(":", 1)[1]) == pytest.approx(expected_dX.ravel(), rel=1e-3)


def test_clicking_a_node_shows_its_values_in_a_table(widgets, linear_sigmoid):
    _X, _W, b, output, feed_dict = linear_sigmoid
    flow = widgets.GradientFlow(output, feed_dict)
    assert flow.view.details == ""
    flow.view.selected = "b"
    assert flow.view.details.count("<table") == 3  # value, gradient, estimate
    cells = re.findall(r"<td>(.*?)</td>", flow.view.details)
    assert [float(c) for c in cells[:2]] == pytest.approx(feed_dict[b], rel=1e-3)


# -- step-through ----------------------------------------------------------------------------------


def test_step_through_runs_forward_node_by_node_then_backward_edge_by_edge(mf, widgets):
    x, y, z, f = lab_graph(mf)
    flow = widgets.GradientFlow(f, {x: 3, y: 5, z: -4})
    flow.step_forward()
    svg = flow.svg
    assert "forward: g = x * y = 3 * 5 = 15" in caption(svg)
    assert caption(svg).startswith("step 1 of 9")  # 3 computed nodes, then 6 edges
    assert node_texts(svg, "h")["value"] == "value ?"
    assert edge_text(svg, "x->g") == ""
    flow.step_forward()
    flow.step_forward()
    flow.step_forward()  # the first backward step: f sends its gradient to g
    svg = flow.svg
    assert "backward through f: d(g + h)/dg = 1" in caption(svg)
    assert edge_text(svg, "g->f") == "1"
    assert edge_text(svg, "h->f") == ""
    flow.step_forward()
    flow.step_forward()  # h sends x its part
    svg = flow.svg
    assert "d(x * z)/dx = z = -4" in caption(svg)
    assert "x receives -4" in caption(svg)
    assert node_texts(svg, "x")["grad"] == "grad -4"  # g's part has not arrived yet
    assert node_texts(svg, "x")["numeric"] == "numeric estimate 1"  # so no mark yet
    for _ in range(5):
        flow.step_forward()  # past the end it stays on the last step
    svg = flow.svg
    assert caption(svg).startswith("step 9 of 9")
    assert node_texts(svg, "x")["grad"] == "grad 5 + (-4) = 1"
    flow.step_back()
    assert caption(flow.svg).startswith("step 8 of 9")
    flow.show_all()
    assert caption(flow.svg) == ""


def test_step_through_of_an_unfinished_graph_has_only_forward_steps(starter, starter_widgets):
    x, y, z, f = lab_graph(starter)
    flow = starter_widgets.GradientFlow(f, {x: 3, y: 5, z: -4})
    flow.step_forward()
    assert "not implemented yet" in caption(flow.svg)
    assert len(flow.trace.steps) == 3


# -- labels and the static snapshot --------------------------------------------------------------


def test_nodes_are_labelled_by_name_then_by_variable_then_by_kind(mf, widgets):
    a, b = mf.Input(), mf.Input("bee")
    product = mf.Mul(a, b)
    flow = widgets.GradientFlow(product, {a: 1.0, b: 2.0}, names={"a": a, "_hidden": b})
    assert set(flow.labels.values()) == {"a", "bee", f"Mul#{product.creation_index}"}


def test_the_output_keeps_a_static_svg_picture_for_exports(mf, widgets):
    x, y, z, f = lab_graph(mf)
    flow = widgets.GradientFlow(f, {x: 3, y: 5, z: -4})
    bundle = flow._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["image/svg+xml"] == bundle["text/html"] == flow.svg
    assert node_texts(bundle["image/svg+xml"], "x")["grad"] == "grad 5 + (-4) = 1"


# -- self-check ------------------------------------------------------------------------------------


def lab_folder(tmp_path, notebooks, package, edit=None):
    """A student's folder: the notebooks of `notebooks` beside a copy of `package` as miniflow/.

    `edit`, (file, old, new), changes one line of the package.
    """
    folder = tmp_path / "lab"
    folder.mkdir()
    for notebook in (ROOT / notebooks).glob("*.ipynb"):
        shutil.copy(notebook, folder)
    shutil.copytree(package, folder / "miniflow", ignore=shutil.ignore_patterns("__pycache__"))
    if edit:
        file, old, new = edit
        source = (folder / "miniflow" / file).read_text()
        assert old in source
        (folder / "miniflow" / file).write_text(source.replace(old, new))
    return folder


@pytest.fixture(scope="module")
def answered_lab(tmp_path_factory):
    """The source notebooks (every answer written) beside the reference package."""
    return lab_folder(tmp_path_factory.mktemp("answered"), "assignments/miniflow-lab", REFERENCE)


def test_self_check_runs_the_notebooks_own_visible_tests_and_the_reference_passes(mf, answered_lab):
    report = mf.check(answered_lab)
    exercises = [r.exercise for r in report.results]
    assert "Exercise 1.3: the `Mul` node (in `miniflow/arithmetic.py`)" in exercises
    tests = {test.grade_id for result in report.results for test in result.tests}
    assert {"mul_lab_f", "linear_lab_dummygrad", "cross_entropy_lab", "settings_in_range"} <= tests
    assert not tests & {"mul_backward", "linear_float32"}  # hidden tests are not run
    assert report.passed, str(report)
    assert f"All {len(report.results)} exercises pass" in str(report)


def test_self_check_of_the_starter_says_what_to_write(mf, tmp_path, capsys):
    report = mf.check(lab_folder(tmp_path, "release/miniflow-lab", STARTER))
    assert not any(r.passed for r in report.results)
    assert all(r.status == "not written yet" for r in report.results)
    mul = next(r for r in report.results if "`Mul`" in r.exercise)
    assert "Mul.forward" in mul.message and "multiply" in mul.message  # the stub's hint
    assert capsys.readouterr().err == ""


def test_self_check_shows_the_failing_assert(mf, tmp_path):
    edit = ("arithmetic.py", "grad_i = grad_i * value", "grad_i = grad_i + value")
    report = mf.check(lab_folder(tmp_path, "assignments/miniflow-lab", REFERENCE, edit))
    first = report.first_failure
    assert "`Mul`" in first.exercise and first.status == "fail"
    assert "this check failed: assert grads == [-1, 3, 3]" in first.message
    assert report.results[0].passed  # the exercises that do not use Mul
    html = report._repr_html_()
    assert "✓ pass" in html and "✗ fail" in html


def test_self_check_names_a_wrong_value(mf, tmp_path):
    edit = ("layers.py", "return 0.5 * (1 + np.tanh(0.5 * x))", "return np.tanh(x)")
    report = mf.check(lab_folder(tmp_path, "assignments/miniflow-lab", REFERENCE, edit))
    sigmoid = next(r for r in report.results if "`Sigmoid`" in r.exercise)
    assert not sigmoid.passed and "assert np.allclose(value, [0.0, 0.5, 1.0], atol=1e-4)" in sigmoid.message


def test_self_check_without_ipywidgets_shows_the_table_as_html(mf, answered_lab, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets now fails
    monkeypatch.delitem(sys.modules, f"{mf.__name__}.widgets.selfcheck_view", raising=False)
    report = mf.check(answered_lab)
    report._ipython_display_()
    (table,) = shown
    assert type(table).__name__ == "HTML" and table.data.count("✓ pass") == len(report.results)


def test_self_check_widget_reruns_the_checks(mf, answered_lab):
    report = mf.check(answered_lab)
    view = importlib.import_module(f"{mf.__name__}.widgets.selfcheck_view").SelfCheckView(report)
    passes = len(report.results)
    assert view.table.value.count("✓ pass") == passes
    view.table.value = ""
    view.children[1].click()
    assert view.table.value.count("✓ pass") == passes
    assert view._repr_mimebundle_()["text/html"] == report._repr_html_()


# -- headless notebook run -------------------------------------------------------------------------

NOTEBOOK_CELLS = [
    "import numpy as np\nimport miniflow\nfrom miniflow import *\nfrom miniflow.widgets import GradientFlow",
    "x, y, z = Input(), Input(), Input()\ng, h = Mul(x, y), Mul(x, z)\nf = Add(g, h)\n"
    "GradientFlow(f, {x: 3, y: 5, z: -4})",
    "X, W, b = Input(), Input(), Input()\ns = Sigmoid(Linear(X, W, b))\nrng = np.random.default_rng(0)\n"
    "GradientFlow(s, {X: rng.normal(size=(3, 4)), W: rng.normal(size=(4, 2)), b: np.zeros(2)},\n"
    "             sliders={(W, (0, 0)): (-2, 2, 0.1)})",
    "miniflow.check()",
    "from miniflow.widgets import TrainingView, Playground\n"
    "view = TrainingView(total_steps=30)\n"
    "display(view)\n"
    "for step in range(1, 31):\n"
    "    view.log(step, train_loss=1 / step, val_accuracy=step / 30 if step % 10 == 0 else None)\n"
    "view.finish()",
    "Playground(dataset='blobs')",
]


@pytest.mark.slow
@pytest.mark.parametrize("package", ["reference", "starter"])
def test_widget_cells_run_headless_without_errors_or_stderr(tmp_path, package, mf, starter):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    source = REFERENCE if package == "reference" else REFERENCE.parents[1] / "miniflow_starter" / "miniflow"
    shutil.copytree(source, tmp_path / "miniflow", ignore=shutil.ignore_patterns("__pycache__"))
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(textwrap.dedent(cell)) for cell in NOTEBOOK_CELLS]
    # Without the widgets' state in the file, as JupyterLab saves a notebook by default, an
    # export cannot draw the live widgets: it must fall back on the pictures kept beside them.
    nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
        store_widget_state=False,
    ).execute()
    outputs = [output for cell in notebook.cells for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error" or o.get("name") == "stderr"]
    pictures = [o.data["image/svg+xml"] for o in outputs if "image/svg+xml" in o.get("data", {})]
    assert len(pictures) == 3
    assert series(pictures[2], "train", "loss") == (
        30,
        pytest.approx(1 / 30),
    )  # finish() kept the last curves
    assert any("text/html" in o.get("data", {}) and "<table" in o.data["text/html"] for o in outputs)
    html, _ = pytest.importorskip("nbconvert").HTMLExporter().from_notebook_node(notebook)
    assert html.count('class="mf-graph"') == 2  # the exported page shows both graphs
    x_texts = node_texts(pictures[0], "x")  # labelled by the notebook's own variable names
    if package == "reference":
        assert x_texts["grad"] == "grad 5 + (-4) = 1"
    else:
        assert node_texts(pictures[0], "g")["status"] == "forward: not implemented yet"


# -- training view ---------------------------------------------------------------------------------


def series(svg, name, chart):
    """(count, last value) of the polyline of series `name` in the chart titled `chart`."""
    block = re.search(rf'data-chart="{chart}".*?</svg>', svg, re.S).group(0)
    found = re.search(rf'data-series="{name}" data-count="(\d+)" data-last="([^"]+)"', block)
    return (int(found.group(1)), float(found.group(2))) if found else (0, None)


def test_training_view_draws_every_logged_metric_and_advances_the_bar(widgets):
    view = widgets.TrainingView(total_steps=40, redraw_every=0)
    train_losses = [2.0 / step for step in range(1, 41)]
    for step, loss in enumerate(train_losses, start=1):
        view.log(step, train_loss=loss)
        if step % 10 == 0:
            view.log(step, val_loss=loss + 0.1, val_accuracy=step / 50, train_accuracy=step / 45)
    svg = view.chart.svg
    assert series(svg, "train", "loss") == (40, pytest.approx(train_losses[-1]))
    assert series(svg, "validation", "loss") == (4, pytest.approx(train_losses[-1] + 0.1))
    assert series(svg, "validation", "accuracy") == (4, pytest.approx(40 / 50))
    assert view.progress.value == view.progress.max == 40
    assert "val accuracy 80.0%" in view.status.value


def test_training_view_redraws_at_most_every_redraw_every_seconds_and_at_the_end(widgets):
    view = widgets.TrainingView(total_steps=10, redraw_every=3600)
    view.log(1, train_loss=1.0)  # the first log after creation waits for the interval
    assert view.progress.value == 0 and series(view.chart.svg, "train", "loss") == (0, None)
    view.log(10, train_loss=0.5)  # the last step always draws
    assert view.progress.value == 10 and series(view.chart.svg, "train", "loss") == (2, 0.5)


def test_training_view_keeps_a_static_picture_of_its_curves(widgets):
    view = widgets.TrainingView(total_steps=2, redraw_every=0)
    view.log(2, train_loss=0.25)
    assert series(view._repr_mimebundle_()["image/svg+xml"], "train", "loss") == (1, 0.25)


# -- playground ------------------------------------------------------------------------------------


def test_playground_steps_learn_an_easy_data_set(mf, widgets):
    playground = widgets.Playground(dataset="blobs", steps_per_frame=10)
    assert playground.status.value.startswith("epoch 0")
    before = playground.picture.svg
    playground.step_button.click()
    assert playground.epoch == 10 and playground.picture.svg != before
    playground.advance(300)
    first_loss, last_loss = playground.losses[0][1], playground.losses[-1][1]
    assert last_loss < first_loss / 2
    probability = playground.network.class_one_probability(playground.points)
    accuracy = np.mean((probability > 0.5) == playground.labels)
    assert accuracy > 0.9
    assert f"accuracy {100 * accuracy:.0f}%" in playground.status.value
    playground.reset_button.click()
    assert playground.epoch == 0 and playground.losses == []


@pytest.mark.parametrize("name", ["circles", "xor", "moons", "blobs"])
def test_playground_data_sets_have_both_classes(widgets, name):
    points, labels = importlib.import_module(f"{widgets.__name__}.playground").make_dataset(name, count=100)
    assert points.shape == (100, 2) and set(labels) == {0, 1}
    assert np.abs(points).max() < 1.6  # inside the drawn square


def test_playground_plays_until_paused(widgets):
    import asyncio

    playground = widgets.Playground(dataset="blobs", steps_per_frame=2)

    async def press_play_then_pause():
        playground.play_button.value = True
        while playground.epoch < 6:
            await asyncio.sleep(0.01)
        playground.play_button.value = False
        await playground.task
        return playground.epoch

    stopped_at = asyncio.run(press_play_then_pause())
    assert stopped_at >= 6 and playground.epoch == stopped_at
    assert playground.play_button.description == "▶ play"


def test_playground_with_unwritten_nodes_says_so_instead_of_raising(starter_widgets, capsys):
    playground = starter_widgets.Playground()
    playground.step_button.click()
    assert playground.status.value.startswith("not implemented yet: ")
    assert playground.epoch == 0
    assert capsys.readouterr().err == ""


def test_the_picture_keeps_its_pass_when_the_graph_is_run_again_elsewhere(mf, widgets):
    x, y, z, f = lab_graph(mf)
    flow = widgets.GradientFlow(f, {x: 3, y: 5, z: -4})
    mf.value_and_grad(f, {x: 1, y: 1, z: 1}, [x, y, z])  # a later cell reuses the nodes
    flow.step_forward()
    assert node_texts(flow.svg, "g")["value"] == "value 15"
    flow.view.selected = "x"
    assert "<td>3</td>" in flow.view.details
