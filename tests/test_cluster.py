"""Grading on a real Dask cluster: a scheduler and two workers, each a process of its own, on 127.0.0.1.

The samples graded on it give the same grades.csv, tests.csv and feedback pages
as a local run; a worker killed outright (SIGKILL) while it grades a student
costs that student a retry on the other worker, not a row; the processes the
killed worker had started to grade end with it.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import psutil
import pytest
from conftest import MNIST
from test_shards import SAMPLES, grade_locally, settings, write_samples

from autograder import cluster
from autograder.grade import GradingError, grade

DASK = Path(sys.executable).parent / "dask"


@pytest.fixture(scope="module")
def local_run(course, tmp_path_factory):
    return grade_locally(course, tmp_path_factory)


class Cluster:
    """`dask scheduler` and `dask worker` processes on 127.0.0.1, ended by close()."""

    def __init__(self, folder, workers=2):
        self.file = folder / "scheduler.json"
        environment = os.environ | {"MINIFLOW_DATA": str(MNIST)}
        scheduler = ["scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(self.file)]
        self.scheduler = self.start(folder / "scheduler.log", *scheduler, "--no-dashboard")
        deadline = time.monotonic() + 60
        while not self.file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.address = json.loads(self.file.read_text())["address"]
        worker = ["worker", self.address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny"]
        self.workers = [
            self.start(
                folder / f"worker{index}.log",
                *worker,
                "--no-dashboard",
                "--name",
                f"worker{index}",
                environment=environment,
            )
            for index in range(workers)
        ]

    @staticmethod
    def start(log, *arguments, environment=None):
        with open(log, "w") as output:
            return subprocess.Popen(
                [str(DASK), *arguments], stdout=output, stderr=subprocess.STDOUT, env=environment
            )

    def wait_for_workers(self, count):
        from distributed import Client

        with Client(self.address) as client:
            client.wait_for_workers(count, timeout=120)

    def close(self):
        # Workers first, while the scheduler they report to still runs: a worker closing as the
        # scheduler goes away can hang in Dask's shutdown until it is killed.
        for process in [*self.workers, self.scheduler]:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def dask_cluster(tmp_path):
    running = Cluster(tmp_path)
    try:
        running.wait_for_workers(2)
        yield running
    finally:
        running.close()


def grading_processes(pid):
    """The Worker processes (`python -m autograder.grade`) and all below them, of the process `pid`."""
    try:
        below = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [process for process in below if process.is_running()]


def kernel_running(processes):
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if process.cmdline()[1:3] == ["-m", "ipykernel_launcher"]:
                return True
    return False


def same_files(first, second):
    for name in ("grades.csv", "tests.csv"):
        assert (first / name).read_text() == (second / name).read_text(), name
    pages = sorted(path.relative_to(first) for path in (first / "feedback").rglob("*.html"))
    assert pages == sorted(path.relative_to(second) for path in (second / "feedback").rglob("*.html"))


@pytest.mark.slow
def test_the_samples_graded_on_a_cluster_equal_a_local_run(course, local_run, dask_cluster, tmp_path):
    out = tmp_path / "out"

    rows = grade(
        write_samples(course, tmp_path / "submissions"), out, course, settings(), cluster=dask_cluster.address
    )

    assert [row.status for row in rows] == ["graded"] * len(SAMPLES)
    same_files(local_run, out)
    for student in SAMPLES:
        assert (out / "logs" / f"{student}.log").read_text().strip()  # nbgrader's log came back
    # The run's grading Workers end with it, while the Dask workers, which may serve other runs, stay.
    for _ in range(600):  # they are told to end, not waited for: look again for a while
        running = [
            process
            for worker in dask_cluster.workers
            for process in grading_processes(worker.pid)
            if not is_zombie(process)
        ]
        if not running:
            break
        time.sleep(0.1)
    assert running == []
    assert all(worker.poll() is None for worker in dask_cluster.workers)


@pytest.mark.slow
def test_a_worker_killed_mid_run_costs_a_retry_not_a_row(course, local_run, dask_cluster, tmp_path):
    out = tmp_path / "out"
    submissions = write_samples(course, tmp_path / "submissions")
    victim = dask_cluster.workers[0]
    doomed = []

    def kill_once_grading():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            below = grading_processes(victim.pid)
            if kernel_running(below):  # a student's notebook runs on it
                doomed.extend(below)
                victim.send_signal(signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_once_grading, daemon=True)
    killer.start()
    rows = grade(submissions, out, course, settings(), cluster=dask_cluster.address)
    killer.join()

    assert doomed, "no student was under way on the worker"
    assert victim.poll() == -signal.SIGKILL
    assert [row.status for row in rows] == ["graded"] * len(SAMPLES)
    same_files(local_run, out)
    # The killed worker's grading processes end too (they watch their parent): wait for that, boundedly.
    _, left = psutil.wait_procs(doomed, timeout=60)
    assert not [process for process in left if not is_zombie(process)], f"still running: {left}"


def is_zombie(process):
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_an_unknown_cluster_name_says_what_it_takes():
    with pytest.raises(GradingError, match=r"scheduler's address \(tcp://HOST:PORT\), local"):
        cluster.start_cluster("nowhere")


class MadeCluster:
    """Stands for a dask-jobqueue or dask-kubernetes class named in Dask's configuration."""

    made: ClassVar[list] = []

    def __init__(self, **options):
        self.made.append(options)

    def scale(self, count):
        self.made.append(count)


def test_a_configured_cluster_is_made_with_its_options_and_scaled():
    import dask

    described = {"class": f"{__name__}.MadeCluster", "options": {"queue": "short"}, "workers": 8}
    with dask.config.set({"miniflow-course.clusters.slurm": described}):
        assert isinstance(cluster.start_cluster("slurm"), MadeCluster)
    assert MadeCluster.made == [{"queue": "short"}, 8]
    assert cluster.start_cluster("tcp://127.0.0.1:8786") is None
