"""Run graded evaluations on a student's miniflow, in a process of its own.

    python -I -B child.py WORKDIR

WORKDIR holds request.json and inputs.npz, written by the grading process
(autograder/checks.py). This script imports `miniflow` from the submission
folder the request names, runs each check's evaluations with the student's
classes and writes WORKDIR/replies/<check>.npz: the raw values and gradients
the student's code returned, with the errors and warnings it raised as JSON
under the key "meta". It never judges an answer. The grading process compares
the arrays itself, so nothing the student's code does to numpy or builtins in
this process can change a grade.

Standalone on purpose (numpy and the standard library only): it runs with
nothing but the submission on sys.path. The grading process imports it too,
to run the very same evaluations on the reference.
"""

import importlib
import json
import os
import signal
import sys
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

# The node classes a request may build; anything else in a request is refused.
NODE_KINDS = frozenset(
    {"Input", "DummyGrad", "Add", "Mul", "Linear", "Sigmoid", "MSE", "CrossEntropyWithSoftmax"}
)
# numpy's own defaults, restored for every evaluation in case the student's code changed them.
NUMPY_DEFAULTS = {"divide": "warn", "over": "warn", "under": "ignore", "invalid": "warn"}
MAX_TEXT = 300
MAX_WARNINGS = 5


class CheckTimeout(BaseException):
    """Raised by the alarm inside the student's code; a BaseException so `except Exception` lets it pass."""


def short(text):
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def describe(error, folder=None):
    """`("Type: message", where)`: `where` is the last line of the submission's code in the traceback."""
    try:
        text = f"{type(error).__name__}: {error}"
    except Exception:  # a student's exception whose __str__ itself fails
        text = type(error).__name__
    places = [(frame.f_code.co_filename, line) for frame, line in traceback.walk_tb(error.__traceback__)]
    if isinstance(error, SyntaxError):  # raised by the import system, about the student's file
        places.append((error.filename or "", error.lineno))
    where = None
    for filename, line in places:
        if folder and filename.startswith(folder + os.sep):
            where = f"{os.path.relpath(filename, folder)}, line {line}"
    return short(text), where


def as_array(value):
    """`(array, None)`: a fresh numeric ndarray of `value`, or `(None, why not)`."""
    try:
        array = np.array(value)
    except Exception:
        return None, f"returned a value of type {type(value).__name__}, not an array of numbers"
    if array.dtype.kind not in "biuf":
        kind = f"{type(value).__name__} ({array.dtype})"
        return None, f"returned a value of type {kind}, not an array of numbers"
    return array, None


def build(package, nodes):
    """Create the graph `nodes` lists (`[id, kind, *input ids]`) with `package`'s classes."""
    built = {}
    for node_id, kind, *inputs in nodes:
        if kind not in NODE_KINDS:
            raise ValueError(f"a request asked for an unknown node kind {kind!r}")
        built[node_id] = getattr(package, kind)(*(built[name] for name in inputs))
    return built


def evaluate(package, built, evaluation, arrays):
    """Run one evaluation on a built graph; return what it gave: the value, then each gradient."""
    if "call" in evaluation:
        method = getattr(built[evaluation["on"]], evaluation["call"])
        return [method(*(arrays[key].copy() for key in evaluation["args"]))]
    # Fresh copies: a node that changes its inputs in place must not change the next call's.
    feed = {built[node_id]: arrays[key].copy() for node_id, key in evaluation["feed"].items()}
    wrt = [built[node_id] for node_id in evaluation["wrt"]]
    value, gradients = package.value_and_grad(built[evaluation["output"]], feed, wrt)
    return [value, *gradients]


def run_check(package, check, arrays, folder=None):
    """Run every evaluation of `check` with `package`; return `(meta, arrays)` for the reply.

    meta["evaluations"] has one record per evaluation, in request order:
    `error` and `where` when it raised, the `warnings` it emitted, and for each
    value it returned a problem text or None; the returned arrays are keyed
    "<evaluation>.<position>".
    """
    records, results = [], {}
    for case in check["cases"]:
        build_error = None
        try:
            built = build(package, case["nodes"])
        except CheckTimeout:
            raise
        except BaseException as error:
            build_error = describe(error, folder)
        for evaluation in case["evaluations"]:
            index = len(records)
            record = {"error": None, "where": None, "warnings": [], "outputs": []}
            records.append(record)
            if build_error:
                record["error"], record["where"] = build_error
                continue
            returned = []
            with warnings.catch_warnings(record=True) as caught, np.errstate(**NUMPY_DEFAULTS):
                warnings.simplefilter("always")
                try:
                    returned = evaluate(package, built, evaluation, arrays)
                except CheckTimeout:
                    raise
                except BaseException as error:  # SystemExit too: sys.exit() in miniflow fails the check
                    record["error"], record["where"] = describe(error, folder)
            record["warnings"] = [short(f"{w.category.__name__}: {w.message}") for w in caught[:MAX_WARNINGS]]
            for position, value in enumerate(returned):
                array, problem = as_array(value)
                record["outputs"].append(problem)
                if array is not None:
                    results[f"{index}.{position}"] = array
    return {"evaluations": records}, results


def write_reply(replies, name, meta, results=None):
    """Write replies/<name>.npz in one step, so the grading process never reads half a reply."""
    partial = replies / f"{name}.partial.npz"
    np.savez(partial, meta=np.array(json.dumps(meta)), **(results or {}))
    os.replace(partial, replies / f"{name}.npz")


def note_progress(replies, phase):
    """Record what runs now, so that if the process dies the grading process knows where."""
    (replies / "progress.partial").write_text(phase)
    os.replace(replies / "progress.partial", replies / "progress")


def raise_timeout(signum, frame):
    raise CheckTimeout


@contextmanager
def alarm(seconds):
    """Interrupt the student's code after `seconds`: best effort, the grading process has the real limit."""
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def main(workdir):
    workdir = Path(workdir)
    request = json.loads((workdir / "request.json").read_text())
    with np.load(workdir / "inputs.npz", allow_pickle=False) as inputs:
        arrays = {key: inputs[key] for key in inputs.files}
    replies = workdir / "replies"
    replies.mkdir(exist_ok=True)
    folder, seconds = request["submission"], request["check_seconds"]
    signal.signal(signal.SIGALRM, raise_timeout)

    note_progress(replies, "import")
    sys.path.insert(0, folder)
    try:
        with alarm(seconds):
            package = importlib.import_module("miniflow")
    except CheckTimeout:
        write_reply(replies, "import", {"timeout": seconds})
        return
    except BaseException as error:
        error_text, where = describe(error, folder)
        write_reply(replies, "import", {"error": error_text, "where": where})
        return

    for check in request["checks"]:
        note_progress(replies, check["name"])
        try:
            with alarm(seconds):
                meta, results = run_check(package, check, arrays, folder)
        except CheckTimeout:
            meta, results = {"timeout": seconds}, {}
        write_reply(replies, check["name"], meta, results)
    note_progress(replies, "done")


if __name__ == "__main__":
    main(sys.argv[1])
