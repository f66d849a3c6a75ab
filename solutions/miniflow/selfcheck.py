"""check(): run the lab's visible tests on your work and see which exercises pass.

    import miniflow
    miniflow.check()          # in a notebook: a table, with a hint for the first failure
    print(miniflow.check())   # anywhere: the same as plain text

The tests are the notebooks' own test cells (the cells that begin with `# Test`),
read from the lab's notebooks next to the `miniflow/` folder as they are saved
now: there is no copy of them anywhere else. They run in a fresh Python process
that imports your `miniflow/` as it is on disk, after each notebook's read-only
cells and your answer cells above them. So save your notebooks first; cells you
added yourself do not run.
"""

import json
import os
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

TIME_LIMIT = 300  # seconds for all the tests
HIDDEN = "# Hidden tests"  # how the lab's hidden-test cells begin; students get them empty


@dataclass
class TestResult:
    """One test cell: "passed", "failed", "not implemented" or "error", and what it said."""

    notebook: str
    grade_id: str
    title: str
    outcome: str
    message: str = ""


@dataclass
class ExerciseResult:
    """An exercise of the lab and the results of its visible tests."""

    exercise: str
    notebook: str
    tests: list = field(default_factory=list)

    @property
    def passed(self):
        return all(test.outcome == "passed" for test in self.tests)

    @property
    def not_implemented(self):
        return any(test.outcome == "not implemented" for test in self.tests)

    @property
    def first_failure(self):
        return next((test for test in self.tests if test.outcome != "passed"), None)

    @property
    def status(self):
        if self.passed:
            return "pass"
        return "not written yet" if self.not_implemented else "fail"

    @property
    def message(self):
        failure = self.first_failure
        return f"{failure.title}: {failure.message}" if failure else ""


@dataclass
class CheckReport:
    """The results of check(), one per exercise; shown as a table."""

    results: list
    folder: Path = None  # where the notebooks are: check() again checks the same
    problem: str = ""  # why the tests could not run at all

    @property
    def passed(self):
        return not self.problem and all(result.passed for result in self.results)

    @property
    def first_failure(self):
        return next((result for result in self.results if not result.passed), None)

    def __str__(self):
        lines = [f"{'exercise':<60}result"]
        for result in self.results:
            outcome = result.status + (f": {result.message}" if not result.passed else "")
            lines.append(f"{short(result.exercise, 58):<60}{outcome}")
        lines.append(summary(self))
        return "\n".join(lines)

    def _repr_html_(self):
        rows = "".join(
            f"<tr><td>{escape(r.exercise)}</td>"
            + (
                '<td style="color:#2f855a">✓ pass</td><td></td>'
                if r.passed
                else f'<td style="color:#c53030">✗ {escape(r.status)}</td><td>{escape(r.message)}</td>'
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
    if report.problem:
        return f"The tests could not run: {report.problem}"
    first = report.first_failure
    if first is None:
        return f"All {len(report.results)} exercises pass the lab's visible tests."
    passed = sum(result.passed for result in report.results)
    text = f"{passed} of {len(report.results)} exercises pass. Next: {first.exercise}"
    failure = first.first_failure
    return f"{text}. {failure.title}: {failure.message}"


def short(text, limit=300):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check(folder=None):
    """Run the visible tests of the notebooks in `folder` (default: beside this package); a CheckReport."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parents[1]
    if not list(folder.glob("*.ipynb")):
        return CheckReport([], folder, f"no notebooks in {folder}")
    with tempfile.TemporaryDirectory(prefix="miniflow-check-") as scratch:
        out = Path(scratch) / "results.json"
        environment = {**os.environ, "PYTHONPATH": str(folder), "MPLBACKEND": "Agg"}
        command = [sys.executable, "-m", "miniflow.selfcheck", str(folder), str(out)]
        try:
            subprocess.run(command, cwd=folder, env=environment, timeout=TIME_LIMIT, capture_output=True)
        except subprocess.TimeoutExpired:
            return CheckReport([], folder, f"they did not finish within {TIME_LIMIT} s (an endless loop?)")
        if not out.exists():
            why = "your miniflow package does not import: run `import miniflow` to see why"
            return CheckReport([], folder, why)
        found = json.loads(out.read_text())
    results = {}
    for test in found:
        exercise = test.pop("exercise")
        results.setdefault(exercise, ExerciseResult(exercise, test["notebook"])).tests.append(
            TestResult(**test)
        )
    return CheckReport(list(results.values()), folder)


# -- in the fresh process -------------------------------------------------------------------------


def without_magics(source):
    """A cell's source without IPython's magics (`%autoreload`), which plain Python cannot run."""
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))


def cells_to_run(notebook):
    """(kind, source, metadata) for each cell the tests need: read-only and answer cells, and tests."""
    exercise = notebook.stem
    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        grading = cell.get("metadata", {}).get("nbgrader", {})
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "markdown":
            if str(grading.get("grade_id", "")).startswith("exercise_"):
                headings = [line.lstrip("# ").strip() for line in source.splitlines() if line.startswith("#")]
                exercise = next((text for text in headings if text.startswith("Exercise")), headings[0])
            continue
        code = without_magics(source)
        if grading.get("grade") and not code.lstrip().startswith(HIDDEN):
            yield "test", code, {"grade_id": grading.get("grade_id", ""), "exercise": exercise}
        elif grading.get("solution") or grading.get("locked"):
            yield "code", code, {}


def run_test(namespace, code):
    """Run one test cell; (outcome, message)."""
    try:
        exec(compile(code, "<test cell>", "exec"), namespace)
    except NotImplementedError as error:
        return "not implemented", short(error) or "an answer it uses is not written yet (# YOUR CODE HERE)"
    except AssertionError as error:
        return "failed", short(error) or failing_line(error, code)
    except Exception as error:
        return "error", short(f"{type(error).__name__}: {error}")
    return "passed", ""


def failing_line(error, code):
    """The line of the test cell where `error` was raised (an assert without a message says no more)."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if frame.filename == "<test cell>"]
    lines = code.splitlines()
    if frames and 0 < frames[-1].lineno <= len(lines):
        return f"this check failed: {lines[frames[-1].lineno - 1].strip()}"
    return "an assert failed"


def run_notebooks(folder, names=()):
    """Run the visible tests of the notebooks in `folder` (only those named, if `names` are given)."""
    results = []
    for notebook in sorted(Path(folder).glob("*.ipynb")):
        if names and notebook.stem not in names:
            continue
        namespace = {"__name__": "__main__"}
        for kind, code, about in cells_to_run(notebook):
            if kind == "code":
                run_test(namespace, code)  # a failing answer cell shows up in the tests after it
                continue
            title = code.strip().splitlines()[0].lstrip("# ").removeprefix("Test:").strip()
            outcome, message = run_test(namespace, code)
            results.append(
                {"notebook": notebook.stem, "title": title, "outcome": outcome, "message": message, **about}
            )
    return results


def main(folder, out, *names):
    import warnings

    import numpy as np

    warnings.simplefilter("ignore")  # warnings from unfinished code: the results say enough
    np.seterr(all="ignore")
    Path(out).write_text(json.dumps(run_notebooks(folder, names)))


if __name__ == "__main__":
    main(*sys.argv[1:])
