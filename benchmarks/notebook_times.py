"""Time each notebook of the miniflow-lab assignment, run top to bottom with the reference package.

Each source notebook is copied into a scratch folder next to a copy of solutions/miniflow (the
students' layout: the notebook beside its miniflow/ package) and executed with nbclient on the
python3 kernel, as a student running all cells would. The time includes starting the kernel.

    .venv/bin/python benchmarks/notebook_times.py             # all notebooks
    .venv/bin/python benchmarks/notebook_times.py 05-mnist    # some of them
    .venv/bin/python benchmarks/notebook_times.py --grading   # as nbgrader runs them

MNIST is read from $MINIFLOW_DATA, or else from ~/.cache/miniflow/mnist (with only the 10,000-image
test split the notebook trains on a seeded 7,000/1,000/2,000 split of it). --grading sets
NBGRADER_EXECUTION as nbgrader does, which caps the training cells at one epoch (the hidden tests
still train in full). Issue targets: at most 20 s per notebook, 90 s for the MNIST notebook.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = ROOT / "assignments" / "miniflow-lab"
REFERENCE = ROOT / "solutions" / "miniflow"
TARGET_SECONDS = {"05-mnist": 90}
DEFAULT_TARGET = 20


def run(notebook, scratch):
    """Execute a copy of `notebook` beside a copy of the reference package; return (seconds, nb)."""
    folder = Path(scratch) / notebook.stem
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(REFERENCE, folder / "miniflow", ignore=shutil.ignore_patterns("__pycache__"))
    nb = nbformat.read(notebook, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(nb, kernel_name="python3", timeout=600)
    # The keywords go to the kernel's start; its own stderr (a warning about TCP) is of no interest.
    client.execute(cwd=str(folder), env=dict(os.environ), stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    nbformat.write(nb, folder / notebook.name)
    return seconds, nb


def printed_accuracies(nb):
    """The lines of output that report a test accuracy."""
    lines = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                lines += [line for line in output["text"].splitlines() if re.search(r"test accuracy", line)]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebook names (default: all)")
    parser.add_argument("--grading", action="store_true", help="set NBGRADER_EXECUTION=autograde")
    parser.add_argument("--keep", metavar="DIR", help="keep the executed notebooks in DIR")
    args = parser.parse_args(argv)

    os.environ.pop("NBGRADER_EXECUTION", None)
    if args.grading:
        os.environ["NBGRADER_EXECUTION"] = "autograde"
    notebooks = sorted(ASSIGNMENT.glob("*.ipynb"))
    if args.notebooks:
        notebooks = [nb for nb in notebooks if any(name in nb.stem for name in args.notebooks)]

    print(f"data: MINIFLOW_DATA={os.environ['MINIFLOW_DATA']}; grading: {args.grading}")
    failed = False
    with tempfile.TemporaryDirectory() as scratch:
        if args.keep:
            scratch = args.keep
        for notebook in notebooks:
            seconds, nb = run(notebook, scratch)
            target = TARGET_SECONDS.get(notebook.stem, DEFAULT_TARGET)
            verdict = "ok" if seconds <= target else "SLOWER THAN TARGET"
            failed |= seconds > target
            print(f"{notebook.name:32} {seconds:6.1f} s   (target {target} s: {verdict})", flush=True)
            for line in printed_accuracies(nb):
                print(f"    {line.strip()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
