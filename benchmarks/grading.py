"""Benchmark `miniflow-course grade`: one worker, two workers, a local Dask cluster, bare nbclient runs.

    .venv/bin/python benchmarks/grading.py                          # 40 submissions, every notebook
    .venv/bin/python benchmarks/grading.py --count 10 --notebooks 01 02 03

In a scratch copy of the course (release built, its own gradebook), COUNT
submissions cycle through a mix of the bundled samples (the reference, the
untouched starter and typical mistakes; no endless loops, which would time the
timeout). In one run they are graded with one worker, then again with two, and
then the notebooks nbgrader executed (the autograded ones, hidden tests in) are
run bare with nbclient, one after the other, each beside its student's miniflow/,
as plain `nbgrader autograde` would run them with no sandbox, recording, reference
comparison, feedback or gradebook (the hidden accuracy tests then retrain in the kernel,
where grading has the grader retrain instead). The reference's records are made once
before the timed runs, and their time is printed apart. Printed: seconds per
submission, the speedup of two workers over one (target: at least 1.7 on 2 cores),
the overhead of grading with one worker over the bare runs (target: at most 1.3), and
the same two-worker run on a Dask cluster of two worker processes on 127.0.0.1
(`--cluster local:2`, its start included) against the local pool (target: at most
1.05), with Dask's own costs (starting the cluster, an empty task's round trip) measured apart.
With `--rounds R` the pool and Dask runs alternate R times in the order pool, Dask, Dask,
pool, ... so that a load that rises or falls during the run weighs on both alike; the
ratio printed is of their mean times, each round's beside it. `--dask-only` leaves out the
one-worker and bare runs. Compare only figures from one run: the
machine's load changes them all.
"""

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from autograder import release
from autograder.grade import Course, Settings, grade, record_the_reference
from autograder.submissions import materialise_sample

ROOT = Path(__file__).resolve().parents[1]
MIX = (
    "reference",
    "starter",
    "ce_summed",
    "sigmoid_naive",
    "bias_grad_wrong_axis",
    "mul_fanout_by_identity",
    "sigmoid_upstream_ignored",
    "ce_grad_not_averaged",
)


def scratch_course(folder):
    release.copy_sources(ROOT, folder)
    release.build_release(folder)
    return Course(folder)


def write_submissions(course, folder, count, notebooks):
    released = course.folder(course.coursedir.release_directory, ".")
    source = course.folder(course.coursedir.source_directory, ".")
    for index in range(count):
        sample = MIX[index % len(MIX)]
        student = materialise_sample(sample, folder / f"s{index:02d}-{sample}", released, source)
        for path in student.glob("*.ipynb"):
            if notebooks and not path.stem.startswith(tuple(notebooks)):
                path.unlink()


def run_bare(course, students):
    """Execute every autograded notebook bare with nbclient, one after the other; return the seconds."""
    start = time.perf_counter()
    for student in students:
        folder = course.folder(course.coursedir.autograded_directory, student)
        for path in sorted(folder.glob("*.ipynb")):
            notebook = nbformat.read(path, as_version=4)
            for cell in notebook.cells:
                if cell.cell_type == "code":
                    cell.outputs, cell.execution_count = [], None
            client = NotebookClient(notebook, kernel_name="python3", timeout=600, allow_errors=True)
            client.execute(cwd=str(folder), env=dict(os.environ), stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40, help="submissions (default: %(default)s)")
    parser.add_argument("--notebooks", nargs="*", help="notebook name prefixes to keep (default: all)")
    parser.add_argument("--workers", type=int, default=2, help="workers of the parallel run (default: 2)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="pairs of local-pool and Dask runs, alternated (default: 1)"
    )
    parser.add_argument(
        "--dask-only", action="store_true", help="only the local pool against Dask: no 1-worker or bare runs"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    data = os.environ.get("MINIFLOW_DATA")  # MNIST as miniflow.data finds it; see README

    with tempfile.TemporaryDirectory(prefix="grading-benchmark-") as scratch:
        scratch = Path(scratch)
        (scratch / "course").mkdir()
        course = scratch_course(scratch / "course")
        write_submissions(course, scratch / "submissions", args.count, args.notebooks)
        students = sorted(path.name for path in (scratch / "submissions").iterdir())
        print(f"{args.count} submissions, a mix of {', '.join(MIX)}; notebooks: {args.notebooks or 'all'}")
        print(f"MINIFLOW_DATA={data}; {len(os.sched_getaffinity(0))} cores")

        start = time.perf_counter()
        record_the_reference(course, Settings(data=data))  # once per course: the runs below reuse it
        print(f"the reference's records of every test cell: {time.perf_counter() - start:.1f} s (once)")

        runs = {  # name: (workers, cluster)
            1: (1, None),
            args.workers: (args.workers, None),
            "dask": (args.workers, f"local:{args.workers}"),
        }
        pairs = [(args.workers, "dask"), ("dask", args.workers)]
        order = [] if args.dask_only else [1]
        order += [run for index in range(args.rounds) for run in pairs[index % 2]]
        seconds = {run: [] for run in runs}
        for number, run in enumerate(order):
            workers, cluster = runs[run]
            out = scratch / f"out{number}"
            start = time.perf_counter()
            grade(scratch / "submissions", out, course, Settings(workers=workers, data=data), cluster=cluster)
            seconds[run].append(time.perf_counter() - start)
            print(f"  run {number + 1}/{len(order)}, {run!r}: {seconds[run][-1]:.1f} s", flush=True)
            if (out / "grades.csv").read_text() != (scratch / "out0" / "grades.csv").read_text():
                print(f"warning: the grades of run {number + 1} differ from those of run 1")
        start_seconds, per_task = dask_costs(args.workers)
        if not args.dask_only:
            os.environ["NBGRADER_EXECUTION"] = "autograde"  # as nbgrader sets it: training cells stop early
            bare = run_bare(course, students)

    def line(label, total):
        return f"{label:<28}{total:8.1f} s  {total / args.count:6.1f} s per submission"

    pool, dask = (statistics.fmean(seconds[run]) for run in (args.workers, "dask"))
    if not args.dask_only:
        serial = seconds[1][0]
        print(line("grade, 1 worker", serial))
        print(
            line(f"grade, {args.workers} workers", pool) + f"  speedup {serial / pool:.2f}x (target >= 1.7)"
        )
        print(
            line("bare nbclient, serial", bare) + f"  grading overhead {serial / bare:.2f}x (target <= 1.3)"
        )
    else:
        print(line(f"grade, {args.workers} workers", pool))
    print(
        line(f"grade, Dask local:{args.workers}", dask)
        + f"  {dask / pool:.3f}x the local pool (target <= 1.05)"
    )
    if args.rounds > 1:
        ratios = [d / p for p, d in zip(seconds[args.workers], seconds["dask"], strict=True)]
        print(f"  Dask against the pool, round by round: {', '.join(f'{r:.3f}x' for r in ratios)}")
    print(
        f"Dask's own costs: {start_seconds:.1f} s to start the cluster (in the Dask run's time), "
        f"{per_task * 1000:.1f} ms a task (an empty task's round trip, median of 50);"
    )
    print(f"the Dask run took {(dask - pool) / args.count:+.2f} s per submission against the local pool")


def dask_costs(workers):
    """Seconds to start a cluster like `--cluster local:N`'s, and the median round trip of an empty task."""
    from distributed import Client, LocalCluster

    start = time.perf_counter()
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        start_seconds = time.perf_counter() - start
        times = []
        for _ in range(50):
            start = time.perf_counter()
            client.submit(len, b"", pure=False).result()
            times.append(time.perf_counter() - start)
    return start_seconds, statistics.median(times)


if __name__ == "__main__":
    main()
