"""The lab's exercises, read from the nbgrader metadata of its notebooks, and their status from the visible tests.

An exercise begins at a markdown cell whose nbgrader grade_id starts with `exercise_` and holds the
solution cells (what the student edits) and the test cells (with their points) that follow it. The
status comes from `python -m miniflow.selfcheck FOLDER OUT`, the lab's own check: the notebooks'
visible test cells run, as saved, on the student's `miniflow/`, in a process of its own.
"""

import asyncio
import json
import os
import re
import sys
import tempfile
from pathlib import Path

HIDDEN = "# Hidden tests"  # how the lab's hidden-test cells begin
PACKAGE_FILE = re.compile(r"miniflow/\w+\.py")
STUB = re.compile(r"""raise NotImplementedError\(["'](?P<name>[\w.]+):""")
TIME_LIMIT = 300  # seconds for one check, as miniflow.check() allows
STATUSES = {"passed": "passed", "not implemented": "not implemented", "failed": "failing", "error": "failing"}


def find_lab_folder(root, relative=""):
    """The folder at or above `root`/`relative` (never above `root`) holding the notebooks and miniflow/."""
    root = Path(root).resolve()
    folder = (root / relative).resolve()
    if folder != root and root not in folder.parents:
        return None
    for candidate in [folder, *folder.parents]:
        if (candidate / "miniflow" / "__init__.py").is_file() and any(candidate.glob("*.ipynb")):
            return candidate
        if candidate == root:
            return None
    return None


def cell_source(cell):
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def read_notebook_exercises(path):
    """The exercises of one notebook: title, grade_id, the cell to open, points and tests."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    exercises = []
    for cell in cells:
        grading = cell.get("metadata", {}).get("nbgrader", {})
        grade_id = str(grading.get("grade_id", ""))
        source = cell_source(cell)
        if cell.get("cell_type") == "markdown" and grade_id.startswith("exercise_"):
            headings = [
                line.lstrip("# ").replace("`", "").strip()
                for line in source.splitlines()
                if line.startswith("#")
            ]
            package_file = PACKAGE_FILE.search(source)
            exercises.append(
                {
                    "grade_id": grade_id,
                    "title": next(
                        (h for h in headings if h.startswith("Exercise")),
                        headings[0] if headings else grade_id,
                    ),
                    "notebook": path.name,
                    "package_file": package_file.group(0) if package_file else None,
                    "solution_cells": [],
                    "tests": [],
                    "points": 0,
                }
            )
        elif exercises and cell.get("cell_type") == "code" and grading:
            exercise = exercises[-1]
            if grading.get("grade"):
                first_line = (source.strip().splitlines() or [""])[0]
                exercise["tests"].append(
                    {
                        "grade_id": grade_id,
                        "title": first_line.lstrip("# ").removeprefix("Test:").strip(),
                        "points": grading.get("points", 0),
                        "visible": not source.lstrip().startswith(HIDDEN),
                    }
                )
                exercise["points"] += grading.get("points", 0)
            elif grading.get("solution"):
                exercise["solution_cells"].append(grade_id)
                exercise["stubbed"] = exercise.get("stubbed", False) or "raise NotImplementedError" in source
    for exercise in exercises:
        # Where clicking the exercise leads: the cell to edit, else its first visible test.
        visible = [test["grade_id"] for test in exercise["tests"] if test["visible"]]
        exercise["cell"] = (exercise["solution_cells"] or visible or [exercise["grade_id"]])[0]
    return exercises


def list_exercises(folder):
    """The lab's notebooks in `folder`, each with its exercises and points, and the package's stubs left."""
    folder = Path(folder)
    notebooks = []
    for path in sorted(folder.glob("*.ipynb")):
        try:
            exercises = read_notebook_exercises(path)
        except (OSError, ValueError, KeyError) as error:
            notebooks.append(
                {"path": path.name, "exercises": [], "points": 0, "problem": f"{path.name}: {error}"}
            )
            continue
        if exercises:
            points = sum(exercise["points"] for exercise in exercises)
            notebooks.append({"path": path.name, "exercises": exercises, "points": points, "problem": ""})
    return {
        "notebooks": notebooks,
        "points": sum(notebook["points"] for notebook in notebooks),
        "stubs": package_stubs(folder),
    }


def package_stubs(folder):
    """The exercises of miniflow/ still stubbed: name, file and line of each `raise NotImplementedError`."""
    stubs = []
    for path in sorted((Path(folder) / "miniflow").glob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            stub = STUB.search(line)
            if stub:
                stubs.append({"name": stub["name"], "file": f"miniflow/{path.name}", "line": number})
    return stubs


def with_statuses(listing, results, problem="", notebooks=()):
    """`listing` with each exercise's status and first failure from the check's per-test `results`.

    With `notebooks`, only those were checked: the others' exercises get no status.
    """
    by_grade_id = {(result["notebook"], result["grade_id"]): result for result in results}
    for notebook in listing["notebooks"]:
        stem = Path(notebook["path"]).stem
        if notebooks and stem not in notebooks:
            continue
        for exercise in notebook["exercises"]:
            found = [
                by_grade_id.get((stem, test["grade_id"])) for test in exercise["tests"] if test["visible"]
            ]
            found = [result for result in found if result]
            exercise["status"], exercise["message"] = exercise_status(exercise, found, problem)
            for test in exercise["tests"]:
                result = by_grade_id.get((stem, test["grade_id"]))
                if result is not None:
                    test["status"] = STATUSES.get(result["outcome"], "failing")
                    test["message"] = result["message"]
    listing["problem"] = problem
    listing["checked"] = True
    return listing


def exercise_status(exercise, results, problem):
    """(status, message): "passed", "failing", "not implemented", or "not started" when nothing ran."""
    if problem:
        return "not started", problem
    if not results:  # hidden tests only: the answer cell tells whether there is an answer yet
        if exercise.get("stubbed"):
            return "not implemented", "its answer cell still raises NotImplementedError"
        return "not started", "it has hidden tests only: Validate the notebook to run its cells"
    for result in results:
        status = STATUSES.get(result["outcome"], "failing")
        if status != "passed":
            return status, f"{result['title']}: {result['message']}" if result["message"] else result["title"]
    return "passed", ""


class Checker:
    """Runs the lab's check for a folder in a process of its own; one at a time a folder, the newest wins.

    Checks for a submission are a line of their own (`purpose`): the panel's checks, which a save
    starts at any time, never supersede the check a submission's receipt waits for.
    """

    def __init__(self):
        self.running = {}  # folder -> the process checking it now
        self.requests = {}  # folder -> how many checks were asked for: a check that is not the last is stale

    def is_running(self, folder):
        return ("panel", str(folder)) in self.running

    async def check(self, folder, purpose="panel", notebooks=()):
        """(results, problem) of the visible tests in `folder` (in `notebooks` only, if given);
        None if a newer check superseded this one."""
        folder = Path(folder)
        key = (purpose, str(folder))
        request = self.requests[key] = self.requests.get(key, 0) + 1
        earlier = self.running.get(key)
        if earlier is not None and earlier.returncode is None:
            earlier.kill()
        with tempfile.TemporaryDirectory(prefix="miniflow-check-") as scratch:
            out = Path(scratch) / "results.json"
            environment = {**os.environ, "PYTHONPATH": str(folder), "MPLBACKEND": "Agg"}
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "miniflow.selfcheck", str(folder), str(out), *notebooks,
                cwd=folder, env=environment, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            self.running[key] = process
            try:
                _, errors = await asyncio.wait_for(process.communicate(), TIME_LIMIT)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
                return [], f"the tests did not finish within {TIME_LIMIT} s (an endless loop?)"
            finally:
                if self.running.get(key) is process:
                    del self.running[key]
            if self.requests[key] != request:
                return None
            if not out.exists():
                last = errors.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                return (
                    [],
                    f"the miniflow package does not import ({last[0]}): run `import miniflow` to see why",
                )
            return json.loads(out.read_text()), ""
