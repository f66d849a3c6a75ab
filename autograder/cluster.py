"""Grading on a Dask cluster: `miniflow-course grade SUBMISSIONS --out OUT --cluster CLUSTER`.

Each student is one Dask task that runs grade.grade_student, the same per-student
step as local grading: in a Worker subprocess of the Dask worker (student code
never runs in the Dask worker's own process, and stays in its sandbox), into a
private gradebook. The task gets the student's submitted folder as a tar and
returns the private gradebook, the log and the autograded and feedback folders;
the client merges them into the course, so workers share nothing with it but
the course repository (at the same path, or at $MINIFLOW_COURSE_ROOT on the worker).

CLUSTER is
- a scheduler's address (`tcp://10.0.0.5:8786`, `tls://...`): TLS certificates come
  from Dask's configuration (`distributed.comm.tls.*`), as for any Dask client;
- `local` or `local:N`: a cluster of N worker processes (default: the cores) on
  127.0.0.1, started for the run and closed after it;
- a name from Dask's configuration, `miniflow-course.clusters.NAME`:
  `{class: dask_jobqueue.SLURMCluster, options: {...}, workers: N}`, the class
  imported, made with the options, scaled to N workers and closed after the run.
"""

import contextlib
import importlib
import os
import uuid

import dask
from distributed import WorkerPlugin, get_worker

from .grade import GradingError, WorkerPool, grade_student

RETRIES = 2  # a task that raised (its worker's disk filled, say) runs again this many times


class GradingWorkers(WorkerPlugin):
    """The Worker processes of one run on one Dask worker: started as its tasks need them.

    Each run registers its own (`name`), and unregisters it when it ends: a
    scheduler may serve several runs at once (shards, two instructors), and a
    plugin registered again under a name replaces, and so tears down, the one
    before. Workers are told to end in teardown and not waited for: a Dask worker
    process runs no atexit hook, and its nanny kills it after 4 s when it is slow
    to leave.
    """

    def __init__(self):
        self.name = f"miniflow-course-grading-workers-{uuid.uuid4().hex}"

    def setup(self, worker):
        self.pool = WorkerPool(0)

    def teardown(self, worker):
        self.pool.stopping = True  # a task still grading starts no Worker in its place
        for grading_worker in self.pool.started:
            grading_worker.close(wait=False)  # its loop ends, killing a child still grading


def grade_on_dask_worker(job, plugin):
    """A Dask task: grade_student in the Worker processes of this run's plugin on this Dask worker."""
    root = os.environ.get("MINIFLOW_COURSE_ROOT", job["root"])
    return grade_student(job | {"root": root}, get_worker().plugins[plugin].pool)


class DaskRunner:
    """grade.grade_each's runner for a Dask cluster: one task per student, results as they finish.

    A lost worker's tasks are run again by the scheduler elsewhere (Dask's
    `distributed.scheduler.allowed-failures` times at most); a task that raised is
    retried RETRIES times; either way the student gets a row.
    """

    shares_the_course = False  # always ship the submission and its results: the cluster may be elsewhere

    def __init__(self, cluster):
        self.cluster_name = cluster
        self.cluster = None

    def __enter__(self):
        from distributed import Client

        self.cluster = start_cluster(self.cluster_name)
        try:
            self.client = Client(self.cluster or self.cluster_name)
        except OSError as error:
            raise GradingError(f"cannot reach the Dask scheduler at {self.cluster_name}: {error}") from None
        finally:
            if self.cluster is not None and not hasattr(self, "client"):
                self.cluster.close()
        self.plugin = GradingWorkers()
        try:
            self.client.register_plugin(self.plugin)
        except Exception as error:  # a worker that cannot import the course, say
            self.close()
            raise GradingError(
                f"the Dask workers of {self.cluster_name} cannot grade: {type(error).__name__}: {error}"
            ) from None
        return self

    def __exit__(self, *exc_info):
        with contextlib.suppress(Exception):  # a scheduler gone meanwhile has no plugin left to remove
            self.client.unregister_worker_plugin(self.plugin.name)
        self.close()

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __call__(self, jobs, gradebook):
        from distributed import as_completed

        shared = self.client.scatter(gradebook, broadcast=True)  # sent to each worker once
        futures = {
            self.client.submit(
                grade_with_gradebook,
                job,
                shared,
                self.plugin.name,
                retries=RETRIES,
                pure=False,
            ): job
            for job in jobs
        }
        for future in as_completed(futures):
            yield futures[future], outcome(future)
            future.release()


def grade_with_gradebook(job, gradebook, plugin):
    return grade_on_dask_worker(job | {"gradebook": gradebook}, plugin)


def outcome(future):
    try:
        return future.result()
    except Exception as error:  # a task that failed every try, or a worker lost too often
        why = f"{type(error).__name__}: {error}"
        return {"graded": False, "problem": f"Grading failed on the cluster: {why}."}


def start_cluster(name):
    """A cluster object for `local[:N]` or a configured name; None for a scheduler's address."""
    if "://" in name or (":" in name and not name.startswith("local")):
        return None
    if name == "local" or name.startswith("local:"):
        from distributed import LocalCluster

        count = int(name.partition(":")[2] or len(os.sched_getaffinity(0)))
        return LocalCluster(
            n_workers=count,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",  # the scheduler speaks pickles: never beyond this machine
            dashboard_address=None,
        )
    described = dask.config.get(f"miniflow-course.clusters.{name}", default=None)
    if described is None:
        raise GradingError(
            f"no cluster {name!r}: give a scheduler's address (tcp://HOST:PORT), local[:N], or a name "
            "configured under miniflow-course.clusters in Dask's configuration"
        )
    module, _, class_name = described["class"].rpartition(".")
    cluster = getattr(importlib.import_module(module), class_name)(**described.get("options", {}))
    cluster.scale(described.get("workers", 1))
    return cluster
