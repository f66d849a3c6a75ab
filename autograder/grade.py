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
   gradebook ends as a serial run leaves it.
3. Export: OUT/grades.csv (one row per student folder, graded or not, with the
   reason for what grading repaired or could not do), OUT/tests.csv (one row per
   student and test cell), OUT/feedback/<student>/<notebook>.html and
   OUT/logs/<student>.log (nbgrader's log, for instructors). A student is the
   folder's name in the CSVs and its nbgrader id (the same, unless the name is
   not an id nbgrader can use: see submissions.assign_ids) everywhere else.
"""

import contextlib
import csv
import html
import json
import logging
import os
import queue
import select
import shutil
import sqlite3
import subprocess
import sys
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
from traitlets.config.loader import PyFileConfigLoader

from .environment import put_environment_bin_on_path
from .pipeline import configure
from .preprocessors import NOTES, RecordedTests
from .release import ASSIGNMENT
from .sandbox import (
    SandboxUnavailableError,
    become_subreaper,
    end_descendants,
    kill_group,
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
    student_timeout: float = 3 * 3600.0  # seconds for one student's worker, all notebooks and feedback
    data: str | None = field(default_factory=lambda: os.environ.get("MINIFLOW_DATA"))  # MNIST, read-only
    sandbox: bool = True  # False (--no-sandbox): student code runs with the resource limits only


NO_SANDBOX = (
    "Graded with --no-sandbox: student code ran with the resource limits only, able to read the "
    "solutions, the gradebook and other submissions, and to use the network."
)


def run_notes(settings):
    """What holds for every student of a run: said once, in OUT/notes.txt, not in each row."""
    return [] if settings.sandbox else [NO_SANDBOX]


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


def grade(submissions, out, course, settings=None):
    """Grade every student folder in `submissions` into `course`; write OUT; return the Rows."""
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
    to_grade = [submission for submission in found if not submission.problem]
    if to_grade:
        record_the_reference(course, settings)
    outcomes = {}
    with (
        tempfile.TemporaryDirectory(prefix="miniflow-grade-") as work,
        WorkerPool(settings.workers) as workers,
    ):
        snapshot = Path(work) / ".gradebook.db"  # beside the students' folders: no id starts with "."
        copy_database(course.gradebook_path, snapshot)
        with ThreadPoolExecutor(max_workers=max(1, settings.workers)) as pool:
            running = {
                pool.submit(
                    run_worker, workers, course, submission.nbgrader_id, snapshot, Path(work), out, settings
                ): submission.nbgrader_id
                for submission in to_grade
            }
            for finished in as_completed(running):
                student_id = running[finished]
                outcomes[student_id] = finish(
                    finished, Path(work) / student_id / "gradebook.db", course, student_id
                )
    rows = [
        report_safely(course, submission, outcomes.get(submission.nbgrader_id, {"graded": False}), out)
        for submission in found
    ]
    write_grades(out / "grades.csv", rows)
    write_tests(out / "tests.csv", course, rows)
    write_notes(out / "notes.txt", run_notes(settings))
    return rows


def write_notes(path, notes):
    if notes:
        path.write_text("".join(f"{text}\n" for text in notes))
    else:
        path.unlink(missing_ok=True)  # an earlier run's notes on the same OUT hold no more


def finish(worker, private, course, student_id):
    """The worker's outcome, its grades merged into the course's gradebook."""
    try:
        outcome = worker.result()
        if outcome["graded"]:
            merge_submission(private, course, student_id)
    except Exception as error:  # one student's failure must not stop the batch
        outcome = {"graded": False, "problem": f"Grading failed: {type(error).__name__}: {error}."}
    return outcome


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

    def close(self):
        with contextlib.suppress(BrokenPipeError):  # it died with a job unsent; the pipe closes anyway
            self.process.stdin.close()  # ends the worker's loop
        self.process.wait()
        self.process.stdout.close()


def serve():
    """A Worker's loop: for each job on stdin, print the pid of the child grading it, then its exit status.

    Before it prints the status, every process the child started has ended, however
    detached (kernels, what a student's cell forked).
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
        status = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
        end_descendants()
        print(status, flush=True)


class WorkerPool(queue.Queue):
    """`count` Workers, taken and given back by the threads that hand them students."""

    def __init__(self, count):
        super().__init__()
        for _ in range(max(1, count)):
            self.put(Worker())

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        while not self.empty():
            self.get().close()


def run_worker(workers, course, student_id, snapshot, workdir, out, settings):
    """Autograde one student with a Worker; return {"graded": bool, "problem": str}."""
    folder = workdir / student_id
    folder.mkdir()
    shutil.copyfile(snapshot, folder / "gradebook.db")
    log = out / "logs" / f"{student_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    job = {
        "root": str(course.root),
        "assignment": course.assignment,
        "student_id": student_id,
        "gradebook": str(folder / "gradebook.db"),
        "settings": asdict(settings) | {"data": settings.data and str(Path(settings.data).resolve())},
        "result": str(folder / "result.json"),
        # Its temporary folders, kernels' among them, removed here even if it is killed. Not in
        # `folder`: the path must be short, as a kernel's IPC socket paths must fit in 107 bytes.
        "scratch": tempfile.mkdtemp(prefix="mf"),
    }
    (folder / "job.json").write_text(json.dumps(job))
    worker = workers.get()
    if worker.process.poll() is not None:  # it died while idle: a new one grades this student
        worker.close()
        worker = Worker()
    try:
        status = worker.grade(folder / "job.json", log, settings.student_timeout)
    except (ValueError, OSError):  # the worker itself died: start another for the next student
        worker.process.kill()
        worker.close()
        worker, status = Worker(), "lost"
    finally:
        workers.put(worker)
        shutil.rmtree(job["scratch"], ignore_errors=True)
    if status is None:
        return {"graded": False, "problem": f"Grading took longer than {settings.student_timeout:g} s."}
    try:
        return json.loads((folder / "result.json").read_text())
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


def grade_samples(out, course, settings=None):
    """Write the samples DEMO_SAMPLES as submissions in OUT/samples/, then grade them."""
    folder = Path(out) / "samples"
    shutil.rmtree(folder, ignore_errors=True)
    release = course.folder(course.coursedir.release_directory, ".")
    source = course.folder(course.coursedir.source_directory, ".")
    if not release.is_dir():
        raise GradingError(f"{release} is missing: run `miniflow-course build-release` first")
    for name in DEMO_SAMPLES:
        materialise_sample(name, folder / name, release, source)
    return grade(folder, out, course, settings)


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
