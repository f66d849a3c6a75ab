"""Grade a folder of submissions end to end with nbgrader: `miniflow-course grade SUBMISSIONS --out OUT`.

1. Take in: each student's folder (autograder/submissions.py) is copied to the
   course's submitted/<student>/<assignment>/, where the formgrader sees it.
2. Autograde and feedback: nbgrader's Autograde and GenerateFeedback converters,
   configured by autograder/pipeline.py (sandboxed kernels, trusted checks,
   hardened cell restoring, feedback without hidden tests). nbgrader grades one
   student at a time; here `workers` Worker processes do, each student in a
   process of its own. It writes the student's autograded/ and feedback/
   folders in the course, and its grades to a private copy of the gradebook
   taken at the start; this process alone then merges them into the course's
   gradebook. Writes never contend, a crash costs one student, and the
   gradebook ends as a serial run leaves it. With --cluster, Dask workers run the
   same per-student step (grade_student; see cluster.py). Each student graded is
   recorded in OUT/records/, so a run started again skips them (Records).
3. Export: OUT/grades.csv (one row per student folder, graded or not, with the
   reason for what grading repaired or could not do), OUT/tests.csv (one row per
   student and test cell), OUT/feedback/<student>/<notebook>.html and
   OUT/logs/<student>.log (nbgrader's log, for instructors). A student is the
   folder's name in the CSVs and its nbgrader id (the same, unless the name is
   not an id nbgrader can use: see submissions.assign_ids) everywhere else.
"""

import contextlib
import copy
import csv
import hashlib
import html
import io
import json
import logging
import os
import queue
import select
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import traceback
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.converters import Autograde, GenerateFeedback
from nbgrader.coursedir import CourseDirectory
from nbgrader.utils import capture_log
from sqlalchemy.exc import SAWarning
from tqdm import tqdm
from traitlets.config.loader import PyFileConfigLoader

from .environment import put_environment_bin_on_path
from .pipeline import configure
from .preprocessors import NOTES, RecordedTests
from .release import ASSIGNMENT
from .sandbox import (
    SandboxUnavailableError,
    become_subreaper,
    control_group_problem,
    end_descendants,
    kill_group,
    remove_groups_made_by,
    require_bubblewrap,
    signal_name,
)
from .submissions import Limits, copy_into_course, find_submissions, materialise_sample
from .testcells import TestDefinitionError

# The samples README's main command grades: the reference, the untouched starter, typical mistakes.
DEMO_SAMPLES = ("reference", "starter", "ce_summed", "bias_grad_wrong_axis", "sigmoid_naive")


class GradingError(RuntimeError):
    """The course cannot be graded as it is; the message says what to do."""


def default_workers():
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Settings:
    """The knobs of a grading run; None keeps the course's nbgrader configuration."""

    workers: int = field(default_factory=default_workers)
    cell_timeout: int | None = None  # seconds per cell (nbgrader's Execute.timeout)
    # Seconds for one student's worker, all notebooks and feedback: five notebooks of at most
    # 600 s each (SandboxedExecute.notebook_timeout) take 50 minutes at worst.
    student_timeout: float = 3600.0
    data: str | None = field(default_factory=lambda: os.environ.get("MINIFLOW_DATA"))  # MNIST, read-only
    sandbox: bool = True  # False (--no-sandbox): student code runs with the resource limits only


NO_SANDBOX = (
    "Graded with --no-sandbox: student code ran with the resource limits only, able to read the "
    "solutions, the gradebook and other submissions, and to use the network."
)


def run_notes(settings):
    """What holds for every student of a run: said once, in OUT/notes.txt, not in each row."""
    notes = [] if settings.sandbox else [NO_SANDBOX]
    if control_group_problem() is not None:
        notes.append(
            "Kernels ran without control groups, so each process had its own CPU and memory limits but "
            f"their number and their total were not capped: {control_group_problem()}."
        )
    return notes


@dataclass
class Row:
    """One line of grades.csv."""

    student_id: str  # the folder's name, printable (submissions.printable)
    score: float
    max_score: float
    status: str  # "graded" or "not graded"
    reason: str  # what grading repaired or ran into, or why it could not grade
    nbgrader_id: str  # the id nbgrader graded it under, in the gradebook and OUT/feedback/, OUT/logs/


def course_config(root, settings):
    """The course's nbgrader_config.py, with the grading pipeline and `settings` on top."""
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    configure(config)
    config.CourseDirectory.root = str(root)
    if settings.cell_timeout is not None:
        config.Execute.timeout = settings.cell_timeout
    if not settings.sandbox:
        config.SandboxedKernelManager.sandboxed = False
    return config


class Course:
    """The nbgrader course at `root` and its assignment, as the gradebook records it."""

    def __init__(self, root=".", assignment=ASSIGNMENT):
        put_environment_bin_on_path()
        self.root = Path(root).resolve()
        self.assignment = assignment
        self.coursedir = CourseDirectory(config=course_config(self.root, Settings(workers=1)))
        prefix = "sqlite:///"
        if not self.coursedir.db_url.startswith(prefix):
            raise GradingError(f"grading needs an sqlite gradebook, not {self.coursedir.db_url}")
        self.gradebook_path = Path(self.coursedir.db_url[len(prefix) :])
        self.tests = self.read_tests()  # notebook -> [(test, max score)], in notebook order
        self.refuse_overwriting_packages()

    def read_tests(self):
        try:
            with Gradebook(self.coursedir.db_url) as gb:
                notebooks = gb.find_assignment(self.assignment).notebooks
                return {
                    notebook.name: [
                        (cell.name, cell.max_score)
                        for cell in sorted(notebook.grade_cells, key=self.source_order(notebook))
                    ]
                    for notebook in sorted(notebooks, key=lambda notebook: notebook.name)
                }
        except MissingEntry:
            raise GradingError(
                f"{self.assignment} is not in the gradebook at {self.gradebook_path}: "
                "run `miniflow-course build-release` first"
            ) from None

    @staticmethod
    def source_order(notebook):
        order = [cell.name for cell in notebook.source_cells]
        return lambda cell: order.index(cell.name)

    def refuse_overwriting_packages(self):
        # nbgrader copies the source folder's other files over each submission before grading it.
        source = Path(self.coursedir.format_path(self.coursedir.source_directory, ".", self.assignment))
        if any((source / "miniflow").rglob("*")):
            raise GradingError(f"{source / 'miniflow'} would overwrite each student's miniflow/: remove it")

    @property
    def max_score(self):
        return sum(map(self.notebook_max, self.tests))

    def notebook_max(self, notebook):
        return sum(points for _, points in self.tests[notebook])

    def folder(self, step, student_id):
        return Path(self.coursedir.format_path(step, student_id, self.assignment))

    def using_gradebook(self, path):
        """This course with its grades written to the gradebook at `path` instead (a shard's)."""
        other = copy.copy(self)
        config = course_config(self.root, Settings(workers=1))
        config.CourseDirectory.db_url = f"sqlite:///{Path(path).resolve()}"
        other.coursedir = CourseDirectory(config=config)
        other.gradebook_path = Path(path).resolve()
        return other


@dataclass(frozen=True)
class Shard:
    """`grade --shard INDEX/COUNT`: every COUNT-th student folder in name order, from the INDEX-th (1-based).

    A shard writes its grades to OUT/gradebook.db, a copy of the course's taken when it starts,
    and lists in OUT/shard.json every student it shares the folder with, so that `merge` can
    tell what is missing. Shards may run at once, on machines that share nothing but the course
    and the submissions.
    """

    index: int
    count: int

    @classmethod
    def parse(cls, text):
        index, _, count = text.partition("/")
        try:
            shard = cls(int(index), int(count))
        except ValueError:
            raise ValueError(f"--shard takes INDEX/COUNT, such as 2/8, not {text!r}") from None
        if not 1 <= shard.index <= shard.count:
            raise ValueError(f"--shard {text}: INDEX must be from 1 to COUNT")
        return shard

    def share(self, found):
        return found[self.index - 1 :: self.count]

    def start(self, out, course, found):
        """Set OUT up for this shard, keeping what an interrupted run of it wrote; the course to use."""
        out.mkdir(parents=True, exist_ok=True)
        gradebook = out / "gradebook.db"
        if not gradebook.exists():
            partial = out / "gradebook.db.partial"
            copy_database(course.gradebook_path, partial)
            partial.replace(gradebook)
        students = [[submission.student_id, submission.nbgrader_id] for submission in found]
        (out / "shard.json").write_text(
            json.dumps({"shard": self.index, "of": self.count, "students": students}, indent=1) + "\n"
        )
        return course.using_gradebook(gradebook)


def record_the_reference(course, settings):
    """Run each source notebook once against the reference solutions, before any student.

    The workers then read what it recorded from the course's cache
    (preprocessors.RecordedTests); a test that the reference fails stops the run
    here, once, with its reason.
    """
    data = settings.data and str(Path(settings.data).resolve())  # as grade_one sets it
    saved = os.environ.get("MINIFLOW_DATA")
    if data:
        os.environ["MINIFLOW_DATA"] = data
    try:
        recorder = RecordedTests(config=course_config(course.root, settings))
        for notebook in course.tests:
            recorder.reference_records(course.assignment, notebook)
    except TestDefinitionError as error:
        raise GradingError(f"a test cannot grade: {error}") from None
    finally:
        if saved is None:
            os.environ.pop("MINIFLOW_DATA", None)
        else:
            os.environ["MINIFLOW_DATA"] = saved


def grade(submissions, out, course, settings=None, *, cluster=None, shard=None, regrade=False):
    """Grade every student folder in `submissions` into `course`; write OUT; return the Rows.

    `cluster` (a Dask scheduler's address or a configured cluster's name, see cluster.py) grades
    on Dask workers instead of local Worker processes; `shard` (a Shard) grades only its share,
    into OUT/gradebook.db instead of the course's (`miniflow-course merge` combines the shards).
    A student OUT/records/ says was graded from the same files is not graded again unless `regrade`.
    """
    settings = settings or Settings()
    out = Path(out)
    if settings.sandbox:
        try:
            require_bubblewrap()
        except SandboxUnavailableError as error:
            raise GradingError(
                f"{error}. Install bubblewrap (see the README's Sandbox paragraph), or grade with "
                "--no-sandbox to run student code with the resource limits only"
            ) from None
    found = find_submissions(submissions, course.assignment)
    if shard:
        course = shard.start(out, course, found)
        found = shard.share(found)
    limits = Limits(total_bytes=1000 * course.coursedir.max_dir_size)  # nbgrader's knob, in kB
    for submission in found:
        if submission.problem:
            continue
        try:
            copy_into_course(
                submission,
                course.folder(course.coursedir.submitted_directory, submission.nbgrader_id),
                list(course.tests),
                limits,
            )
        except Exception as error:  # one student's folder must not stop the batch
            submission.problem = f"Taking the folder in failed: {type(error).__name__}: {error}."
    records = Records(out / "records", course, settings)
    rows = {} if regrade else records.rows(found)  # by nbgrader id
    to_grade = [
        submission for submission in found if not submission.problem and submission.nbgrader_id not in rows
    ]
    if to_grade:
        record_the_reference(course, settings)
        grade_each(to_grade, out, course, settings, cluster, records, rows)
    rows = [
        rows.get(submission.nbgrader_id) or report_safely(course, submission, {"graded": False}, out)
        for submission in found
    ]
    write_grades(out / "grades.csv", rows)
    write_tests(out / "tests.csv", course, rows)
    write_notes(out / "notes.txt", run_notes(settings))
    return rows


def grade_each(to_grade, out, course, settings, cluster, records, rows):
    """Grade `to_grade` locally or on `cluster`; put each Row in `rows` and OUT/records/ as it is done."""
    if cluster:
        from .cluster import DaskRunner  # Dask is imported only by runs that use it

        runner = DaskRunner(cluster)
    else:
        runner = LocalRunner(settings.workers)
    by_id = {submission.nbgrader_id: submission for submission in to_grade}
    failed = 0
    with (
        tempfile.TemporaryDirectory(prefix="miniflow-grade-") as work,
        runner as run,
        tqdm(total=len(to_grade), unit="student", desc="grading", file=sys.stderr) as bar,
    ):
        snapshot = Path(work) / "gradebook.db"
        copy_database(course.gradebook_path, snapshot)
        jobs = [make_job(course, student, settings, run.shares_the_course) for student in by_id]
        for job, outcome in run(jobs, snapshot.read_bytes()):
            submission = by_id[job["student_id"]]
            outcome = take_back(outcome, course, submission.nbgrader_id, Path(work), out)
            row = rows[submission.nbgrader_id] = report_safely(course, submission, outcome, out)
            if row.status == "graded":
                records.write(submission, row)
            else:
                failed += 1
            bar.set_postfix(failed=failed, refresh=False)
            bar.update()


def make_job(course, student_id, settings, shares_the_course):
    """What grade_student needs to grade `student_id`, as plain data a Dask task can carry."""
    submitted = course.folder(course.coursedir.submitted_directory, student_id)
    return {
        "root": str(course.root),
        "assignment": course.assignment,
        "student_id": student_id,
        "settings": asdict(settings) | {"data": settings.data and str(Path(settings.data).resolve())},
        "submitted": None if shares_the_course else pack(submitted),
        "ship": not shares_the_course,
    }


class LocalRunner:
    """Jobs run by grade_student in `count` local Worker processes; results as they finish."""

    shares_the_course = True

    def __init__(self, count):
        self.count = max(1, count)

    def __enter__(self):
        self.workers = WorkerPool(self.count).__enter__()
        return self

    def __exit__(self, error_type, *exc_info):
        if error_type is not None:
            self.workers.stop()
        self.workers.__exit__(error_type, *exc_info)

    def __call__(self, jobs, gradebook):
        with ThreadPoolExecutor(max_workers=self.count) as pool:
            running = {
                pool.submit(grade_student, job | {"gradebook": gradebook}, self.workers): job for job in jobs
            }
            try:
                for finished in as_completed(running):
                    yield running[finished], outcome_of(finished.result)
            except BaseException:  # Ctrl-C, say: stop at once, not after the students under way
                self.workers.stop()
                pool.shutdown(cancel_futures=True)
                raise


def outcome_of(result):
    """The outcome `result()` returns, or a "not graded" one saying why it raised."""
    try:
        return result()
    except Exception as error:  # one student's failure must not stop the batch
        return {"graded": False, "problem": f"Grading failed: {type(error).__name__}: {error}."}


def take_back(outcome, course, student_id, work, out):
    """Write the student's log, put what grading shipped back in the course, merge their grades."""
    log = out / "logs" / f"{student_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(outcome.get("log", ""))
    if not outcome["graded"]:
        return outcome
    try:
        for step, archive in outcome.get("files", {}).items():
            unpack(archive, course.folder(step, student_id))
        private = work / f"{student_id}.db"
        private.write_bytes(outcome["gradebook"])
        merge_submission(private, course, student_id)
        private.unlink()
    except Exception as error:  # one student's failure must not stop the batch
        return {"graded": False, "problem": f"Grading failed: {type(error).__name__}: {error}."}
    return outcome


def grade_student(job, workers):
    """Grade one student in a Worker taken from `workers`: the one per-student step of every run.

    `job` (see make_job) carries the course's gradebook as bytes, and the student's submitted
    folder as a tar when the course folder here is not the caller's. Returns {"graded", "problem",
    "log", "gradebook": the private gradebook's bytes, "files": {step: tar}}, "files" holding the
    student's autograded and feedback folders when `job["ship"]` asks for them.
    """
    settings = Settings(**job["settings"])
    student_id, assignment = job["student_id"], job["assignment"]
    coursedir = CourseDirectory(config=course_config(Path(job["root"]), settings))

    def folder(step):
        return Path(coursedir.format_path(step, student_id, assignment))

    if job["submitted"] is not None:
        unpack(job["submitted"], folder(coursedir.submitted_directory))
    with tempfile.TemporaryDirectory(prefix="miniflow-student-") as work:
        work = Path(work)
        (work / "gradebook.db").write_bytes(job["gradebook"])
        outcome = run_worker(workers, job, work, settings)
        log = work / "grading.log"
        outcome["log"] = log.read_text(errors="replace") if log.exists() else ""
        if outcome["graded"]:
            outcome["gradebook"] = (work / "gradebook.db").read_bytes()
            steps = (coursedir.autograded_directory, coursedir.feedback_directory) if job["ship"] else ()
            outcome["files"] = {step: pack(folder(step)) for step in steps}
    return outcome


def pack(folder):
    """The folder as an uncompressed tar, in memory (notebooks and pages: small, and compress poorly)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(folder, arcname=".")
    return buffer.getvalue()


def unpack(archive, folder):
    """Replace `folder` with the tar `archive`; nothing in it may reach outside `folder`."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as files:
        files.extractall(folder, filter="data")


class Records:
    """OUT/records/<nbgrader_id>.json: for each student graded into OUT, the files graded and the Row.

    A student's record is written once their grades are in the gradebook, so a run that is
    interrupted loses none, and a run started again skips them unless their files changed.
    """

    def __init__(self, folder, course, settings):
        self.folder, self.course = folder, course
        # What else decides a grade: the assignment's notebooks and the run's knobs.
        self.common = hashlib.sha256(repr((settings.cell_timeout, settings.sandbox, settings.data)).encode())
        source = course.folder(course.coursedir.source_directory, ".")
        for path in sorted(source.glob("*.ipynb")):
            self.common.update(path.read_bytes())

    def key(self, submission):
        """A hash of the student's submitted folder, as taken in, and of self.common."""
        digest = self.common.copy()
        submitted = self.course.folder(self.course.coursedir.submitted_directory, submission.nbgrader_id)
        for path in sorted(submitted.rglob("*")):
            digest.update(os.fsencode(path.relative_to(submitted)) + b"\0")
            if path.is_file():
                digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()

    def rows(self, submissions):
        """The recorded Rows of those `submissions` graded from the same files, by nbgrader id."""
        rows = {}
        with Gradebook(self.course.coursedir.db_url) as gb:
            for submission in submissions:
                path = self.folder / f"{submission.nbgrader_id}.json"
                if submission.problem or not path.exists():
                    continue
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    record = json.loads(path.read_text())
                    if record["key"] == self.key(submission) and self.graded(gb, submission.nbgrader_id):
                        rows[submission.nbgrader_id] = Row(**record["row"])
        return rows

    def graded(self, gb, student_id):
        """Whether the gradebook still holds the student's grades (a later run may have forgotten them)."""
        try:
            gb.find_submission(self.course.assignment, student_id)
        except MissingEntry:
            return False
        return True

    def write(self, submission, row):
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{submission.nbgrader_id}.json"
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps({"key": self.key(submission), "row": asdict(row)}))
        partial.replace(path)  # whole or not at all, even if the run is killed here


def write_notes(path, notes):
    if notes:
        path.write_text("".join(f"{text}\n" for text in notes))
    else:
        path.unlink(missing_ok=True)  # an earlier run's notes on the same OUT hold no more


def copy_database(source, target):
    """A consistent copy of the sqlite database `source`, even while it is being written."""
    with (
        contextlib.closing(sqlite3.connect(source)) as original,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        original.backup(copy)


class Worker:
    """A `python -m autograder.grade` process that grades one student at a time, each in a child it forks.

    It imports nbgrader once, so a child starts in milliseconds; a child that
    crashes costs its student only, and one that runs too long, or outlives its
    worker, is killed with what it started (sandboxed kernels die with their parent).
    """

    def __init__(self):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autograder.grade"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def grade(self, job_file, log, timeout):
        """Run grade_one(job_file, log) in a child; return its exit status, or None when it timed out.

        ValueError or OSError: the worker itself died (and its child with it).
        """
        self.process.stdin.write(f"{job_file}\t{log}\n")
        self.process.stdin.flush()
        child = int(self.process.stdout.readline())
        finished, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not finished:
            kill_group(child)
        status = self.process.stdout.readline()
        if not status:  # the worker died: its child, in a session of its own, would grade on unseen
            kill_group(child)
        return int(status) if finished else None

    def close(self, wait=True):
        with contextlib.suppress(BrokenPipeError):  # it died with a job unsent; the pipe closes anyway
            self.process.stdin.close()  # ends the worker's loop
        if wait:
            self.process.wait()
        self.process.stdout.close()


def serve():
    """A Worker's loop: for each job on stdin, print the pid of the child grading it, then its exit status.

    Before it prints the status, every process the child started has ended, however
    detached (kernels, what a student's cell forked). When stdin closes while a child
    grades, the process that gave the job has died (a lost Dask worker): the child is
    killed rather than left to write over the grading that replaces it.
    """
    become_subreaper()  # orphans below come back here instead of to init
    for line in sys.stdin:
        job_file, log = line.rstrip("\n").split("\t")
        child = os.fork()
        if child == 0:
            status = 0
            try:
                grade_one(job_file, log)
            except BaseException:
                traceback.print_exc()  # into the student's log
                status = 1
            os._exit(status)  # never back into the loop
        print(child, flush=True)
        status = wait_unless_abandoned(child)
        end_descendants()
        remove_groups_made_by(child)  # a child killed at the time limit could not remove its kernels' groups
        if status is None:
            return
        print(status, flush=True)


def wait_unless_abandoned(child):
    """The child's exit status; None, with the child killed, if stdin closes first."""
    while True:
        pid, wait_status = os.waitpid(child, os.WNOHANG)
        if pid:
            return os.waitstatus_to_exitcode(wait_status)
        readable, _, _ = select.select([sys.stdin], [], [], 0.2)
        if readable and not sys.stdin.buffer.peek(1):  # end of file: nothing more is written to it
            kill_group(child)
            os.waitpid(child, 0)
            return None


class WorkerPool(queue.Queue):
    """`count` Workers, taken and given back by the threads that hand them students.

    take() starts another Worker when none is idle (a Dask worker's pool starts empty).
    """

    def __init__(self, count):
        super().__init__()
        self.started, self.stopping = [], False
        for _ in range(count):
            self.put(self.start())

    def start(self):
        worker = Worker()
        self.started.append(worker)
        return worker

    def stop(self):
        """Kill every Worker, busy or not: those grading see it and kill their child (Worker.grade)."""
        self.stopping = True
        for worker in self.started:
            worker.process.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        while not self.empty():
            self.get().close()

    def take(self):
        try:
            worker = self.get_nowait()
        except queue.Empty:
            return self.start()
        if worker.process.poll() is not None:  # it died while idle: a new one grades this student
            worker.close()
            return self.start()
        return worker


def run_worker(workers, job, work, settings):
    """Autograde the student of `job` with a Worker, in `work`; return {"graded": bool, "problem": str}."""
    # Its temporary folders, kernels' among them, removed here even if it is killed. Not in `work`:
    # the path must be short, as a kernel's IPC socket paths must fit in 107 bytes.
    scratch = tempfile.mkdtemp(prefix="mf")
    job_file = work / "job.json"
    job_file.write_text(
        json.dumps(
            {
                "root": job["root"],
                "assignment": job["assignment"],
                "student_id": job["student_id"],
                "gradebook": str(work / "gradebook.db"),
                "settings": job["settings"],
                "result": str(work / "result.json"),
                "scratch": scratch,
            }
        )
    )
    worker = workers.take()
    try:
        status = worker.grade(job_file, work / "grading.log", settings.student_timeout)
    except (ValueError, OSError):  # the worker itself died: start another for the next student
        worker.process.kill()
        worker.close()
        status = "lost"
        if not workers.stopping:
            worker = workers.start()
    finally:
        workers.put(worker)
        shutil.rmtree(scratch, ignore_errors=True)
    if status is None:
        return {"graded": False, "problem": f"Grading took longer than {settings.student_timeout:g} s."}
    try:
        return json.loads((work / "result.json").read_text())
    except (OSError, ValueError):
        return {"graded": False, "problem": f"Grading failed: {lost(status)}."}


def lost(status):
    """Why a student's grading left no result, from the Worker's exit status for it."""
    if status == "lost":
        return "the grading worker died"
    if status >= 0:
        return f"the grading process exited with status {status} (see the student's log)"
    return f"the grading process was killed by {signal_name(-status)}"


def grade_one(job_file, log):
    """In a Worker's child: autograde one student and generate their feedback, into a private gradebook."""
    os.setsid()
    with open(log, "w") as log_file, open(os.devnull) as nothing:
        os.dup2(nothing.fileno(), sys.stdin.fileno())
        os.dup2(log_file.fileno(), sys.stdout.fileno())
        os.dup2(log_file.fileno(), sys.stderr.fileno())
    job = json.loads(Path(job_file).read_text())
    tempfile.tempdir = job["scratch"]
    settings = Settings(**job["settings"])
    logging.getLogger("traitlets").setLevel(logging.INFO)  # nbgrader's converters log there
    warnings.simplefilter("ignore", SAWarning)  # see merge_submission
    if settings.data:
        os.environ["MINIFLOW_DATA"] = settings.data  # kernels may read it (see pipeline.py)
    config = course_config(Path(job["root"]), settings)
    config.CourseDirectory.db_url = f"sqlite:///{job['gradebook']}"
    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id, coursedir.student_id = job["assignment"], job["student_id"]
    result = {"graded": False, "problem": ""}
    for converter in (Autograde, GenerateFeedback):
        app = converter(coursedir=coursedir, config=config)
        app.force = True
        captured = capture_log(app)
        print(captured["log"], flush=True)
        if not captured["success"]:
            print(captured.get("error", ""), flush=True)
            result["problem"] = f"nbgrader's {converter.__name__} failed: {last_error(captured)}."
            break
        result["graded"] = True
    Path(job["result"]).write_text(json.dumps(result))


def last_error(captured):
    lines = [line for line in captured.get("log", "").splitlines() if line.startswith("[ERROR]")]
    lines = [line for line in lines if "Traceback" not in line and "Please see" not in line]
    return (lines[0][len("[ERROR] ") :] if lines else "see its log")[:300]


def merge_submission(private, course, student_id):
    """Copy the autograder's results for `student_id` from a worker's gradebook into the course's."""
    assignment = course.assignment
    with (
        Gradebook(f"sqlite:///{private}") as source,
        Gradebook(course.coursedir.db_url, course.coursedir.course_id) as target,
        warnings.catch_warnings(),
    ):
        # nbgrader's update_or_create_submission makes SQLAlchemy 2 warn about nbgrader's own
        # session use (autograde does too); harmless, and nothing to do with grades.
        warnings.simplefilter("ignore", SAWarning)
        graded = source.find_submission(assignment, student_id)
        target.update_or_create_student(student_id)
        target.update_or_create_submission(assignment, student_id, timestamp=graded.timestamp)
        for notebook in graded.notebooks:
            into = target.find_submission_notebook(notebook.name, assignment, student_id)
            into.late_submission_penalty = notebook.late_submission_penalty
            for grade in notebook.grades:
                merged = target.find_grade(grade.name, notebook.name, assignment, student_id)
                merged.auto_score, merged.needs_manual_grade = grade.auto_score, grade.needs_manual_grade
            for comment in notebook.comments:
                merged = target.find_comment(comment.name, notebook.name, assignment, student_id)
                merged.auto_comment = comment.auto_comment
        target.db.commit()


def forget_submission(course, student_id):
    """Remove what an earlier run recorded for a student this run could not grade."""
    with (
        Gradebook(course.coursedir.db_url, course.coursedir.course_id) as gb,
        contextlib.suppress(MissingEntry),
    ):
        gb.remove_submission(course.assignment, student_id)
    for step in (course.coursedir.autograded_directory, course.coursedir.feedback_directory):
        shutil.rmtree(course.folder(step, student_id), ignore_errors=True)


def report_safely(course, submission, outcome, out):
    """The student's Row (see report); when making it fails, a "not graded" Row that says why."""
    try:
        if not outcome["graded"]:
            forget_submission(course, submission.nbgrader_id)
        return report(course, submission, outcome, out)
    except Exception as error:  # one student's failure must not stop the batch
        forget_submission(course, submission.nbgrader_id)
        failed = {"graded": False, "problem": f"Reporting failed: {type(error).__name__}: {error}."}
        return report(course, submission, failed, out)


def report(course, submission, outcome, out):
    """The student's Row, with their feedback copied to OUT/feedback/<nbgrader id>/."""
    student_id = submission.nbgrader_id
    reasons = list(submission.notes)
    feedback = out / "feedback" / student_id
    shutil.rmtree(feedback, ignore_errors=True)
    feedback.mkdir(parents=True)
    if not outcome["graded"]:
        reasons.insert(0, outcome.get("problem") or submission.problem)
        for notebook in course.tests:
            write_page(feedback / f"{notebook}.html", notebook, course.notebook_max(notebook), [reasons[0]])
        return make_row(submission, 0.0, course.max_score, "not graded", reasons)
    if outcome["problem"]:
        reasons.insert(0, outcome["problem"])
    autograded = course.folder(course.coursedir.autograded_directory, student_id)
    pages = course.folder(course.coursedir.feedback_directory, student_id)
    for notebook in course.tests:
        graded, page = autograded / f"{notebook}.ipynb", pages / f"{notebook}.html"
        if graded.exists():
            notes = nbformat.read(graded, as_version=4).metadata.get(NOTES, [])
            reasons += [f"{notebook}: {text}" for text in notes]
        if graded.exists() and page.exists():
            shutil.copyfile(page, feedback / page.name)
        else:
            why = [text for text in submission.notes if text.startswith(notebook)] or [outcome["problem"]]
            write_page(feedback / page.name, notebook, course.notebook_max(notebook), why)
    with Gradebook(course.coursedir.db_url) as gb:
        score = gb.find_submission(course.assignment, student_id).score
    return make_row(submission, score, course.max_score, "graded", reasons)


def make_row(submission, score, max_score, status, reasons):
    # Lone surrogates, say from an error message quoting a student's text, cannot be written as UTF-8.
    reason = " ".join(reasons).encode("utf-8", "backslashreplace").decode("utf-8")
    return Row(submission.student_id, score, max_score, status, reason, submission.nbgrader_id)


def write_page(path, notebook, max_score, reasons):
    """A feedback page for a notebook that was not graded."""
    items = "".join(f"<li>{html.escape(reason)}</li>" for reason in reasons)
    path.write_text(
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{notebook}</title></head>\n"
        f"<body><h4>{notebook} (Score: 0 / {number(max_score)})</h4>\n"
        f"<p>This notebook was not graded:</p><ul>{items}</ul></body></html>\n"
    )


def number(value):
    return f"{round(value, 4):g}"


def write_grades(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["student_id", "score", "max_score", "status", "reason", "nbgrader_id"])
        for row in rows:
            writer.writerow(
                [
                    row.student_id,
                    number(row.score),
                    number(row.max_score),
                    row.status,
                    row.reason,
                    row.nbgrader_id,
                ]
            )


def write_tests(path, course, rows):
    with open(path, "w", newline="") as file, Gradebook(course.coursedir.db_url) as gb:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["student_id", "notebook", "test", "score", "max_score", "nbgrader_id"])
        for row in rows:
            for notebook, tests in course.tests.items():
                for test, points in tests:
                    score = 0.0
                    if row.status == "graded":
                        score = gb.find_grade(test, notebook, course.assignment, row.nbgrader_id).score
                    writer.writerow(
                        [row.student_id, notebook, test, number(score), number(points), row.nbgrader_id]
                    )


def merge(shards, out, course):
    """Merge the OUTs of `grade --shard` runs into `course`'s gradebook and into OUT.

    Refuses, before writing anything, shards of different folders or counts and a student
    graded by two shards. Returns the Rows and what is missing: the students no shard
    graded (say, of a shard that was not run or was interrupted) and the shards not given.
    """
    out = Path(out)
    described = []  # (folder, its shard.json), in the order given
    for folder in map(Path, shards):
        try:
            described.append((folder, json.loads((folder / "shard.json").read_text())))
        except (OSError, ValueError):
            raise GradingError(f"{folder} is not the OUT of a `grade --shard` run (no shard.json)") from None
    first, info = described[0]
    count, students = info["of"], info["students"]
    for folder, other in described[1:]:
        if (other["of"], other["students"]) != (count, students):
            raise GradingError(
                f"{folder} and {first} are shards of different runs (students or count differ)"
            )
    indices = [info["shard"] for _, info in described]
    twice = sorted({index for index in indices if indices.count(index) > 1})
    if twice:
        raise GradingError(f"shard {', '.join(map(str, twice))} of {count} is given more than once")
    rows, graded_by = {}, {}
    for folder, _ in described:
        for row in shard_rows(folder):
            if row.nbgrader_id in graded_by:
                raise GradingError(
                    f"{row.student_id} is graded both in {graded_by[row.nbgrader_id]} and in {folder}"
                )
            rows[row.nbgrader_id], graded_by[row.nbgrader_id] = row, folder
    for student_id, row in rows.items():
        folder = graded_by[student_id]
        if row.status == "graded":
            merge_submission(folder / "gradebook.db", course, student_id)
        else:
            forget_submission(course, student_id)
        feedback = out / "feedback" / student_id
        shutil.rmtree(feedback, ignore_errors=True)
        shutil.copytree(folder / "feedback" / student_id, feedback)
        (out / "logs").mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):  # a student who could not be taken in has no log
            shutil.copyfile(folder / "logs" / f"{student_id}.log", out / "logs" / f"{student_id}.log")
    ordered = [rows[student_id] for _, student_id in students if student_id in rows]
    write_grades(out / "grades.csv", ordered)
    write_tests(out / "tests.csv", course, ordered)
    notes = dict.fromkeys(
        line
        for folder, _ in described
        if (folder / "notes.txt").exists()
        for line in (folder / "notes.txt").read_text().splitlines()
    )
    write_notes(out / "notes.txt", list(notes))
    missing = [name for name, student_id in students if student_id not in rows]
    missing_shards = sorted(set(range(1, count + 1)) - set(indices))
    return ordered, missing, missing_shards


def shard_rows(folder):
    """The Rows a shard's OUT holds: its grades.csv, or when it was interrupted, its records so far."""
    if (folder / "grades.csv").exists():
        with open(folder / "grades.csv", newline="") as file:
            return [
                Row(**(row | {"score": float(row["score"]), "max_score": float(row["max_score"])}))
                for row in csv.DictReader(file)
            ]
    return [
        Row(**json.loads(path.read_text())["row"]) for path in sorted((folder / "records").glob("*.json"))
    ]


def grade_samples(out, course, settings=None, **options):
    """Write the samples DEMO_SAMPLES as submissions in OUT/samples/, then grade them."""
    folder = Path(out) / "samples"
    shutil.rmtree(folder, ignore_errors=True)
    release = course.folder(course.coursedir.release_directory, ".")
    source = course.folder(course.coursedir.source_directory, ".")
    if not release.is_dir():
        raise GradingError(f"{release} is missing: run `miniflow-course build-release` first")
    for name in DEMO_SAMPLES:
        materialise_sample(name, folder / name, release, source)
    return grade(folder, out, course, settings, **options)


def format_table(rows):
    """The grade table: one line per student."""
    width = min(40, max([len("student"), *(len(row.student_id) for row in rows)]))  # a long name sticks out
    lines = [f"{'student':<{width}}  {'score':>12}  reason"]
    for row in rows:
        score = f"{number(row.score)} / {number(row.max_score)}"
        lines.append(f"{row.student_id:<{width}}  {score:>12}  {row.reason[:200]}")
    return "\n".join(lines)


if __name__ == "__main__":
    serve()
