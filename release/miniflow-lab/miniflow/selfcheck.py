"""check(): run the lab's visible tests on your package and see which exercises pass.

    import miniflow
    miniflow.check()          # in a notebook: a table, with a hint for the first failure
    print(miniflow.check())   # anywhere: the same as plain text

Each exercise is checked with the same values as the assert cells of the
lab, first its forward pass (the value) and then its backward pass (the
gradients), so a failure says which of the two to look at. The checks run
the package as it is imported now: edit a file, rerun the check.
"""

import warnings
from dataclasses import dataclass
from html import escape

import numpy as np

from . import arithmetic, graph, layers, losses, node

HINTS = {
    ("Mul", "forward"): "forward returns the product of all input values.",
    ("Mul", "backward"): "d(x*y)/dx = y: each input gets grad times the product of the other inputs.",
    ("Linear", "forward"): "forward returns X @ W + b, of shape (m, p).",
    ("Linear", "backward"): "differentiate one entry Z[i, j] = sum_k X[i, k] W[k, j] + b[j]; "
    "return (dX, dW, db), each shaped like its input, and multiply by grad.",
    ("Sigmoid", "forward"): "forward returns 1 / (1 + exp(-x)), elementwise.",
    ("Sigmoid", "backward"): "the sigmoid's derivative is s * (1 - s), with s = self.value; times grad.",
    ("CrossEntropyWithSoftmax", "forward"): "_softmax turns each row into probabilities; the loss is the "
    "mean over rows of -log(probability of the label).",
    (
        "CrossEntropyWithSoftmax",
        "backward",
    ): "the gradient for the logits is (softmax - one_hot(labels)) / m, times grad; the labels get None.",
}


class CheckFailedError(Exception):
    """One expectation of a check was not met; `part` says whether in forward or backward."""

    def __init__(self, part, message):
        super().__init__(message)
        self.part = part


@dataclass
class ExerciseResult:
    """The outcome of one exercise's checks."""

    exercise: str
    passed: bool
    part: str = ""  # where the first failure is: "forward" or "backward"
    message: str = ""
    not_implemented: bool = False

    @property
    def hint(self):
        if self.passed:
            return ""
        return HINTS.get((self.exercise, self.part), "")


@dataclass
class CheckReport:
    """The results of check(), one per exercise; shown as a table."""

    results: list

    @property
    def passed(self):
        return all(result.passed for result in self.results)

    @property
    def first_failure(self):
        return next((result for result in self.results if not result.passed), None)

    def __str__(self):
        lines = [f"{'exercise':<26}result"]
        for result in self.results:
            outcome = "pass" if result.passed else f"FAIL ({result.part}): {result.message}"
            lines.append(f"{result.exercise:<26}{outcome}")
        lines.append(summary(self))
        return "\n".join(lines)

    def _repr_html_(self):
        rows = "".join(
            f"<tr><td>{escape(r.exercise)}</td>"
            + (
                '<td style="color:#2f855a">✓ pass</td><td></td>'
                if r.passed
                else f'<td style="color:#c53030">✗ {escape(r.part)}</td><td>{escape(r.message)}</td>'
            )
            + "</tr>"
            for r in self.results
        )
        return (
            '<table class="mf-selfcheck"><tr><th>exercise</th><th>result</th><th>details</th></tr>'
            f"{rows}</table><p>{escape(summary(self))}</p>"
        )

    def _ipython_display_(self):
        from IPython.display import HTML, display

        try:
            from .widgets.selfcheck_view import SelfCheckView
        except ImportError:  # no ipywidgets or anywidget: the table alone
            display(HTML(self._repr_html_()))
        else:
            display(SelfCheckView(self))


def summary(report):
    first = report.first_failure
    if first is None:
        return f"All {len(report.results)} exercises pass the lab's visible tests."
    passed = sum(result.passed for result in report.results)
    text = f"{passed} of {len(report.results)} exercises pass. Next: {first.exercise}.{first.part}"
    if first.not_implemented:
        return f"{text} is not written yet: {first.message}"
    return text + (f". Hint: {first.hint}" if first.hint else ".")


# -- the checks ---------------------------------------------------------------------------------


def expect_value(output, feed_dict, expected, part="forward", atol=1e-8):
    """Run the forward pass only and compare the output's value."""
    value = run(part, lambda: graph.value_and_grad(output, feed_dict)[0])
    if np.shape(value) != np.shape(expected) or not np.allclose(value, expected, atol=atol):
        raise CheckFailedError(part, f"value is {short(value)}, expected {short(expected)}")


def expect_gradients(output, feed_dict, wrt, names, expected, atol=1e-8):
    """Run forward and backward and compare the gradient of each node in wrt."""
    _, gradients = run("backward", lambda: graph.value_and_grad(output, feed_dict, wrt))
    for name, gradient, want in zip(names, gradients, expected, strict=True):
        if np.shape(gradient) != np.shape(want):
            message = f"gradient of {name} has shape {np.shape(gradient)}, expected {np.shape(want)}"
            raise CheckFailedError("backward", message)
        if not np.allclose(gradient, want, atol=atol):
            message = f"gradient of {name} is {short(gradient)}, expected {short(want)}"
            raise CheckFailedError("backward", message)


def run(part, compute):
    """Call compute(); any error it raises becomes a CheckFailedError for `part`."""
    try:
        return compute()
    except NotImplementedError as error:
        raise CheckFailedError(part, f"not implemented yet ({error})") from error
    except Exception as error:
        raise CheckFailedError(part, f"raised {type(error).__name__}: {error}") from error


def short(value):
    return np.array2string(np.asarray(value, dtype=float), precision=4, suppress_small=True, separator=", ")


def check_mul():
    x, y, z = node.Input("x"), node.Input("y"), node.Input("z")
    f = arithmetic.Add(arithmetic.Mul(x, y), arithmetic.Mul(x, z))
    feed_dict = {x: 3, y: 4, z: -5}
    expect_value(f, feed_dict, -3)
    expect_gradients(f, feed_dict, [x, y, z], "xyz", [-1, 3, 3])
    dummy = node.DummyGrad(f)
    expect_gradients(dummy, {**feed_dict, dummy: 0.5}, [x, y, z], "xyz", [-0.5, 1.5, 1.5])
    a, b, c = node.Input("a"), node.Input("b"), node.Input("c")
    product = arithmetic.Mul(a, b, c)
    expect_value(product, {a: 4, b: 5, c: 10}, 200)
    expect_gradients(product, {a: 4, b: 5, c: 10}, [a, b, c], "abc", [50, 40, 20])


def check_linear():
    X, W, b = node.Input("X"), node.Input("W"), node.Input("b")
    f = layers.Linear(X, W, b)
    x_value = np.array([[-1.0, -2.0], [-1.0, -2.0]])
    w_value = np.array([[2.0, -3.0], [2.0, -3.0]])
    feed_dict = {X: x_value, W: w_value, b: np.array([[-3.0, -3.0]])}
    expect_value(f, feed_dict, [[-9.0, 6.0], [-9.0, 6.0]])
    expect_gradients(
        f,
        feed_dict,
        [X, W, b],
        "XWb",
        [[[-1.0, -1.0], [-1.0, -1.0]], [[-2.0, -2.0], [-4.0, -4.0]], [[2.0, 2.0]]],
    )
    dummy = node.DummyGrad(f)
    feed_dict = {X: x_value, W: w_value, b: np.array([-3.0, -5.0]), dummy: np.array([[1.0, 2.0], [3.0, 4.0]])}
    expect_value(f, feed_dict, [[-9.0, 4.0], [-9.0, 4.0]])
    expect_gradients(
        dummy,
        feed_dict,
        [X, W, b],
        "XWb",
        [[[-4.0, -4.0], [-6.0, -6.0]], [[-4.0, -6.0], [-8.0, -12.0]], [4.0, 6.0]],
    )


def check_sigmoid():
    x = node.Input("x")
    f = layers.Sigmoid(x)
    values = np.array([-10.0, 0.0, 10.0])
    expect_value(f, {x: values}, [0.0, 0.5, 1.0], atol=1e-4)
    expect_gradients(f, {x: values}, [x], "x", [[0.0, 0.25, 0.0]], atol=1e-4)
    dummy = node.DummyGrad(f)
    expect_gradients(dummy, {x: values, dummy: 0.5}, [x], "x", [[0.0, 0.125, 0.0]], atol=1e-4)


def check_cross_entropy():
    logits, labels = node.Input("logits"), node.Input("labels")
    f = losses.CrossEntropyWithSoftmax(logits, labels)
    expect_softmax(f, [[0.2, 1.0, 0.3]], [[0.2309, 0.5138, 0.2551]])
    expect_softmax(f, [[0.5, 1.0, 1.5]], [[0.1863, 0.3072, 0.5064]])
    feed_dict = {logits: np.array([[0.5, 1.0, 1.5]]), labels: np.array([1])}
    expect_value(f, feed_dict, 1.1802, atol=1e-4)
    expect_gradients(f, feed_dict, [logits], ["logits"], [[[0.1863, -0.6928, 0.5064]]], atol=1e-4)


def expect_softmax(loss, scores, expected):
    probabilities = run("forward", lambda: loss._softmax(np.array(scores)))
    if np.shape(probabilities) != np.shape(expected) or not np.allclose(probabilities, expected, atol=1e-4):
        message = f"_softmax({scores}) gives {short(probabilities)}, expected {expected}"
        raise CheckFailedError("forward", message)


EXERCISES = {
    "Mul": check_mul,
    "Linear": check_linear,
    "Sigmoid": check_sigmoid,
    "CrossEntropyWithSoftmax": check_cross_entropy,
}


def check():
    """Run every exercise's checks on the package as imported now; return a CheckReport."""
    results = []
    for exercise, run_checks in EXERCISES.items():
        # Warnings from unfinished code would print to stderr; the failure says enough.
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                run_checks()
            except CheckFailedError as failure:
                not_implemented = isinstance(failure.__cause__, NotImplementedError)
                results.append(ExerciseResult(exercise, False, failure.part, str(failure), not_implemented))
                continue
            except Exception as error:  # a result so odd that comparing it failed
                results.append(
                    ExerciseResult(exercise, False, "backward", f"{type(error).__name__}: {error}")
                )
                continue
        results.append(ExerciseResult(exercise, True))
    return CheckReport(results)
