"""nbgrader preprocessors for the miniflow course: nbgrader's pipeline, made robust and trustworthy.

Autograde, sanitising a submission (before any code runs):

    RestoreCells        nbgrader's OverwriteCells, hardened: test cells whose metadata a
                        student changed, retagged or deleted are graded as released

Autograde, executing and scoring:

    SandboxedExecute    nbgrader's Execute with each kernel in the sandbox; a kernel that a
                        cell kills or hangs is replaced, and grading goes on
    StderrIsNotFailure  a test cell that writes to stderr is not failed for it
    RecordedTests       each test cell's verdict is decided here, from what the cell recorded
                        in the kernel (autograder/recording.py), compared with what it records
                        with the reference solutions (autograder/testcells.py)

Feedback:

    HideHiddenTests     nbgrader's ClearHiddenTests, also for what the outputs could show
    ShowGradingNotes    what grading repaired or ran into, at the top of each notebook

Each step records what it repaired or ran into as a note in the notebook's
metadata (under NOTES); the grade command reports them, and the feedback shows them.
"""

import html
import json
import os
import re
import textwrap
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_markdown_cell, new_output
from nbgrader import utils
from nbgrader.api import Gradebook
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import ClearHiddenTests, Execute, NbGraderPreprocessor, OverwriteCells
from traitlets import Bool, Enum, Integer, Unicode

from . import recording
from .kernels import RECORDER_FOLDER, RECORDER_MODULE, SandboxedKernelManager
from .sandbox import KIB, MIB, SandboxRun, describe_exit
from .testcells import BadRecordError, ReferenceRecords, TestCell, read_events, shorten

NOTES = "autograder_notes"
VERDICT = "miniflow_verdict"  # metadata of RecordedTests' "passed" output
RECORDS = "miniflow_records"  # resources key: grade_id -> the text of its record file, or a BadRecordError
SKIP_TAG = "skip-execution"  # nbclient's default skip_cells_with_tag

def grade_id(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def is_test(cell):
    """A test cell: nbgrader grades it, and its verdict comes from RecordedTests."""
    return utils.is_grade(cell) and cell.cell_type == "code"


def has_hidden_tests(cell):
    return ClearHiddenTests.begin_test_delimeter.default_value in cell.source


def cell_name(cell, index):
    return f"cell {grade_id(cell)!r}" if grade_id(cell) else f"cell {index + 1}"


def note(nb, text):
    nb.metadata.setdefault(NOTES, []).append(text)


def error_output(ename, evalue):
    # Feedback pages and the formgrader show the traceback preformatted: wrapped, it stays on the page.
    lines = textwrap.wrap(f"{ename}: {evalue}", width=100, break_long_words=True) or [ename]
    return new_output("error", ename=ename, evalue=evalue, traceback=lines)


class RestoreCells(OverwriteCells):
    """nbgrader's OverwriteCells, hardened against what students do to the assignment's cells.

    Before nbgrader's own restoring, every cell's nbgrader metadata is rewritten
    from the gradebook, so that a test cell a student marked as ungraded, gave
    other points or another id is graded as released; nbclient's skip tag is
    taken off those cells; and metadata that names no cell of the assignment (or
    that DeduplicateIds emptied on a duplicate) is dropped, so the cell runs as an
    ordinary one instead of failing the whole submission. Missing test cells go
    back after the nearest assignment cell before them that is still there
    (nbgrader's own placement raises KeyError when that cell is not a grade or
    solution cell). Each repair is noted.
    """

    def preprocess(self, nb, resources):
        self.notebook_id = resources["nbgrader"]["notebook"]
        self.assignment_id = resources["nbgrader"]["assignment"]
        self.db_url = resources["nbgrader"]["db_url"]
        self.nb = nb
        nb.metadata.pop(NOTES, None)  # notes come from grading only, never from the submission
        self.gradebook = Gradebook(self.db_url)
        with self.gradebook:
            self.source = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
            self.restore_metadata(nb)
            nb, resources = super(OverwriteCells, self).preprocess(nb, resources)
            if self.add_missing_cells:
                nb, resources = self.add_missing_grade_cells(nb, resources)
                nb, resources = self.add_missing_task_cells(nb, resources)
        return nb, resources

    def released_metadata(self, name):
        grade_points = {cell.name: cell.max_score for cell in self.source.grade_cells}
        task_points = {cell.name: cell.max_score for cell in self.source.task_cells}
        source_cell = next(cell for cell in self.source.source_cells if cell.name == name)
        metadata = {
            "grade": name in grade_points,
            "grade_id": name,
            "locked": source_cell.locked,
            "schema_version": 3,
            "solution": name in {cell.name for cell in self.source.solution_cells},
            "task": name in task_points,
        }
        if name in grade_points or name in task_points:
            metadata["points"] = grade_points.get(name, task_points.get(name))
        return metadata

    def restore_metadata(self, nb):
        known = {cell.name for cell in self.source.source_cells}
        for index, cell in enumerate(nb.cells):
            claimed = cell.metadata.get("nbgrader")
            if claimed is None:
                continue
            name = claimed.get("grade_id")
            if name not in known:
                del cell.metadata["nbgrader"]
                claimed = shorten(repr(name), 60)  # the student's text: quoted and bounded
                what = f"claimed to be {claimed}, which is not in the assignment" if name else "was a copy"
                # (DeduplicateIds empties the metadata of all but the last copy of a cell)
                note(nb, f"Cell {index + 1} {what}: it ran as an ordinary cell.")
                continue
            released = self.released_metadata(name)
            if any(claimed.get(key) != value for key, value in released.items()):
                note(nb, f"The nbgrader metadata of cell {name!r} had been changed: it counted as released.")
            cell.metadata["nbgrader"] = NotebookNode({**claimed, **released})
            tags = cell.metadata.get("tags", [])
            if SKIP_TAG in tags:
                cell.metadata["tags"] = [tag for tag in tags if tag != SKIP_TAG]
                note(nb, f"Cell {name!r} was tagged {SKIP_TAG}: it ran all the same.")

    def preprocess_cell(self, cell, resources, cell_index):
        name = grade_id(cell)
        if name is not None and utils.is_locked(cell):
            released = NotebookNode(cell_type=cell.cell_type, source=self.source_of(name))
            ClearHiddenTests(enforce_metadata=False)._remove_hidden_test_region(released)
            self.as_released = cell.source.strip() == released.source.strip()
            if not self.as_released:
                kind = "Test cell" if utils.is_grade(cell) else "Read-only cell"
                note(self.nb, f"{kind} {name!r} had been edited: the released version was used.")
        return super().preprocess_cell(cell, resources, cell_index)

    def source_of(self, name):
        return self.gradebook.find_source_cell(name, self.notebook_id, self.assignment_id).source

    as_released = False  # whether the cell being restored is as the release has it

    def report_change(self, name, attr, old, new):
        if attr == "checksum" and self.as_released:
            # A cell with hidden tests is released without them: its checksum always differs.
            self.log.debug("Cell %s was released without its hidden tests; they are restored.", name)
            return
        super().report_change(name, attr, old, new)
        if attr == "cell_type":
            note(self.nb, f"Cell {name!r} had been turned into a {new} cell: it was graded as a {old} cell.")

    def add_missing_grade_cells(self, nb, resources):
        solutions = {cell.name for cell in self.source.solution_cells}
        points = {cell.name: cell.max_score for cell in self.source.grade_cells}
        position = 0  # where a missing cell goes: after the last assignment cell found so far
        for source_cell in self.source.source_cells:
            found = [index for index, cell in enumerate(nb.cells) if grade_id(cell) == source_cell.name]
            if found:
                position = found[0] + 1
            elif source_cell.name in points:
                self.log.warning("Missing grade cell %s encountered, adding to notebook", source_cell.name)
                cell = self.missing_cell_transform(
                    source_cell, points[source_cell.name], is_solution=source_cell.name in solutions
                )
                nb.cells.insert(position, cell)
                position += 1
                note(nb, f"Test cell {source_cell.name!r} was missing: it was put back and graded.")
        return nb, resources


class SandboxedExecute(Execute):
    """nbgrader's Execute, with the kernel in the sandbox and replaced when a cell kills or hangs it.

    Each test cell runs as written, recording what its asserts check
    (recording.py) into resources[RECORDS] for RecordedTests.
    A cell that kills the kernel (os._exit, a signal, the memory limit) or runs
    past the timeout gets an error output saying so; a new kernel runs the cells
    before it again, discarding what they show, and execution goes on with the
    next cell. After `max_kernel_restarts` replacements, or `notebook_timeout`
    seconds for the whole notebook, the remaining cells do not run. What a cell
    shows, display updates included, is capped at `max_output_bytes`, and a
    notebook's at `max_notebook_output_bytes`; errors are kept (they say why a
    test stopped) but cut to `max_error_chars`.
    """

    interrupt_on_timeout = Bool(
        False, help="Interrupt a cell that times out (by default its kernel is replaced instead)"
    ).tag(config=True)
    shutdown_kernel = Enum(["graceful", "immediate"], default_value="immediate").tag(config=True)
    max_kernel_restarts = Integer(10, help="Kernels replaced per notebook before giving up").tag(config=True)
    notebook_timeout = Integer(600, help="Seconds for all of a notebook's cells, replays included").tag(
        config=True
    )
    max_output_bytes = Integer(256 * KIB, help="Output kept per cell, errors excepted").tag(config=True)
    max_notebook_output_bytes = Integer(8 * MIB, help="Output kept per notebook, errors excepted").tag(
        config=True
    )
    max_error_chars = Integer(4000, help="Longest error message and traceback line kept").tag(config=True)
    notebook_bytes = 0

    def __init__(self, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(**kwargs)

    def preprocess(self, nb, resources=None, km=None):
        NotebookClient.__init__(self, nb, km)  # as ExecutePreprocessor.preprocess does
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        self.deadline = time.monotonic() + self.notebook_timeout
        self.notebook_bytes = 0
        ran = []  # the cells to run again in a new kernel
        start = 0
        for _ in range(self.max_kernel_restarts + 1):
            start = self.run_cells(start, ran)
            if start is None:
                break
        else:
            self.skip_rest(
                start, f"the kernel was lost {self.max_kernel_restarts + 1} times in this notebook"
            )
        self.set_widgets_metadata()
        return self.nb, self.resources

    def run_cells(self, start, ran):
        """Run the cells from `start` in a new kernel after `ran`; return where to go on (None: done)."""
        with self.setup_kernel():
            info = self.wait_for_reply(self.kc.kernel_info())
            self.nb.metadata["language_info"] = info["content"]["language_info"]
            self.install_recorder()
            for cell in list(ran):
                try:
                    self.replay(cell)
                except (DeadKernelError, CellTimeoutError):
                    ran.remove(cell)
                    return start
            for index in range(start, len(self.nb.cells)):
                if time.monotonic() >= self.deadline:
                    self.skip_rest(index, f"the notebook's cells took more than {self.notebook_timeout} s")
                    return None
                cell = self.nb.cells[index]
                try:
                    self.preprocess_cell(cell, self.resources, index)
                except (DeadKernelError, CellTimeoutError) as lost:
                    self.report_lost_kernel(cell, index, lost)
                    return index + 1
                if cell.cell_type == "code" and cell.execution_count is not None:
                    self.report_memory_error(cell, index)
                    # A hidden test is not run again: the cells after it were written without its names.
                    if not has_hidden_tests(cell):
                        ran.append(cell)
        return None

    def replay(self, cell):
        """Run `cell` again in the new kernel; what it shows is not kept."""
        self.wait_for_reply(self.kc.execute(cell.source, store_history=False, silent=True), cell)

    def _get_timeout(self, cell):
        """The cell's timeout, cut to what is left of the notebook's."""
        timeout = super()._get_timeout(cell)
        left = max(1, int(self.deadline - time.monotonic()))
        self.cell_timeout = left if timeout is None else min(timeout, left)
        return self.cell_timeout

    def report_lost_kernel(self, cell, index, lost):
        """Say in the cell's outputs why its kernel was replaced (for a timeout: error_on_timeout)."""
        replaced = (
            "A new kernel ran the cells above again, so the names they define are back, and grading went on; "
            "what this cell defined is not."
        )
        if isinstance(lost, CellTimeoutError):
            what = f"did not finish within {self.cell_timeout} s (an endless loop, or a long sleep?)"
            configured = self.error_on_timeout
            ename = configured.get("ename", "CellTimeoutError")
            evalue = f"{configured.get('evalue') or ''} This cell {what}. {replaced}".strip()
            traceback = [*configured.get("traceback", []), *error_output(ename, evalue).traceback]
            cell.outputs.append(new_output("error", ename=ename, evalue=evalue, traceback=traceback))
        else:
            status = self.km.exit_status()
            ended = SandboxRun(status, False, "", self.km.sandbox.isolated, 0)
            how = describe_exit(ended, self.km.limits) if status is not None else "it stopped"
            if self.km.breach:
                how = f"it was stopped because {self.km.breach}"
            what = f"made the kernel die: {how}"
            cell.outputs.append(error_output("DeadKernelError", f"This cell {what}. {replaced}"))
        note(self.nb, f"{cell_name(cell, index).capitalize()} {what}.")

    def report_memory_error(self, cell, index):
        if any(output.get("ename") == "MemoryError" for output in cell.outputs):
            limit = f"{self.km.memory_bytes // 2**20} MiB"
            note(self.nb, f"{cell_name(cell, index).capitalize()} ran out of memory (the limit is {limit}).")

    def skip_rest(self, start, why):
        for cell in self.nb.cells[start:]:
            if cell.cell_type == "code":
                cell.outputs = [error_output("NotRun", f"not run: {why}")]
        note(self.nb, f"Cells from {start + 1} on did not run: {why}.")

    def install_recorder(self):
        """Make the kernel able to record test cells with recording.py, put in its scratch folder."""
        folder = self.km.scratch / RECORDER_FOLDER
        code = (
            f"__import__('sys').path.insert(0, {str(folder)!r}); "
            f"__import__({RECORDER_MODULE!r}).install(get_ipython(), {str(self.km.records_folder)!r})"
        )
        self.wait_for_reply(self.kc.execute(code, silent=True, store_history=False))

    def preprocess_cell(self, cell, resources, index):
        self.kept_bytes, self.truncated = 0, False
        if not is_test(cell):
            return super().preprocess_cell(cell, resources, index)
        name = grade_id(cell)
        self.km.remove_record(name)
        rules = sorted(TestCell.parse(name, cell.source).rules)
        arm = f"{recording.RECORDER}.arm({name!r}, {rules!r})"
        self.wait_for_reply(self.kc.execute(arm, silent=True, store_history=False))
        try:
            return super().preprocess_cell(cell, resources, index)
        finally:
            try:
                record = self.km.read_record(name)
            except BadRecordError as error:
                record = error
            resources.setdefault(RECORDS, {})[name] = record

    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] == "error":
            content = msg["content"]  # kept, for it says why a test stopped; but bounded
            content["evalue"] = str(content.get("evalue", ""))[: self.max_error_chars]
            lines = content.get("traceback", [])[:50]
            content["traceback"] = [str(line)[: self.max_error_chars] for line in lines]
        elif not self.within_budget(len(json.dumps(msg["content"]))):
            if not self.truncated:
                self.truncated = True
                outs.append(new_output("stream", name="stdout", text=self.cut_notice()))
            return None
        return super().output(outs, msg, display_id, cell_index)

    def _update_display_id(self, display_id, msg):
        # A display update replaces what an output shows: it may not grow past the cell's budget.
        if len(json.dumps(msg["content"])) > self.max_output_bytes:
            cut = f"[display update cut at {self.max_output_bytes // KIB} KiB]"
            msg["content"]["data"] = {"text/plain": cut}
            msg["content"]["metadata"] = {}
        super()._update_display_id(display_id, msg)

    def cut_notice(self):
        cell, notebook = self.max_output_bytes // KIB, self.max_notebook_output_bytes // MIB
        return f"\n[output cut at {cell} KiB a cell, {notebook} MiB a notebook]\n"

    def within_budget(self, size):
        """Count `size` bytes of output against the cell's and the notebook's budgets; False when over."""
        over_cell = self.kept_bytes + size > self.max_output_bytes
        if over_cell or self.notebook_bytes + size > self.max_notebook_output_bytes:
            return False
        self.kept_bytes += size
        self.notebook_bytes += size
        return True


class StderrIsNotFailure(NbGraderPreprocessor):
    """Show what a test cell wrote to stderr as ordinary output.

    nbgrader scores a test cell 0 when anything reaches stderr, so a correct
    answer that logs or warns would lose its points; an error still fails it.
    """

    def preprocess_cell(self, cell, resources, index):
        if utils.is_grade(cell) and cell.cell_type == "code":
            for output in cell.outputs:
                if output.output_type == "stream" and output.name == "stderr":
                    output.name = "stdout"
        return cell, resources


class RecordedTests(NbGraderPreprocessor):
    """Decide each test cell's grade here, from what it recorded, not from what the kernel showed.

    The cell's record (resources[RECORDS], from SandboxedExecute) is compared
    with what the same cell of the source notebook records with the reference
    solutions (testcells.ReferenceRecords, cached in the course's
    `.miniflow-cache/`), and its asserts are evaluated again on the recorded
    values (testcells.TestCell.judge). The cell's outputs become the verdict: a
    line saying it passed, or an error with the first mismatch and the assert's
    own message. Nothing the student's code does in its kernel can pass it: it
    only changes what was recorded.
    """

    cache_folder = Unicode(
        ".miniflow-cache", help="Where the reference's records are kept, relative to the course root"
    ).tag(config=True)

    def preprocess(self, nb, resources):
        tests = [cell for cell in nb.cells if is_test(cell)]
        if not tests:
            return nb, resources
        names = resources["nbgrader"]
        reference = self.reference_records(names["assignment"], names["notebook"])
        records = resources.get(RECORDS, {})
        for cell in tests:
            cell.outputs = self.verdict_outputs(cell, records.get(grade_id(cell)), reference)
        return nb, resources

    def reference_records(self, assignment, notebook):
        coursedir = CourseDirectory(config=self.config)
        root = Path(coursedir.root)
        folder = coursedir.format_path(coursedir.source_directory, ".", assignment)
        source = Path(folder) / f"{notebook}.ipynb"
        package, cache = reference_package(root), root / self.cache_folder
        return ReferenceRecords(source, package, cache, self.run_reference).load()

    def run_reference(self, folder, name):
        """Run the source notebook `name` in `folder` beside the reference package; its records and tests."""
        nb = nbformat.read(folder / name, as_version=4)
        executor = SandboxedExecute(config=self.config)
        # As nbgrader's autograde runs a submission (it sets this while grading, not while building).
        outside = os.environ.get("NBGRADER_EXECUTION")
        os.environ["NBGRADER_EXECUTION"] = "autograde"
        try:
            _, resources = executor.preprocess(nb, {"metadata": {"path": str(folder)}})
        finally:
            if outside is None:
                del os.environ["NBGRADER_EXECUTION"]
            else:
                os.environ["NBGRADER_EXECUTION"] = outside
        records = resources.get(RECORDS, {})
        texts = {key: value for key, value in records.items() if isinstance(value, str)}
        return texts, {grade_id(cell): cell.source for cell in nb.cells if is_test(cell)}

    @staticmethod
    def verdict_outputs(cell, record, reference):
        name = grade_id(cell)
        test = TestCell.parse(name, cell.source)
        errors = [output for output in cell.outputs if output.output_type == "error"]
        stopped_by = f"{errors[-1].ename}: {errors[-1].evalue}{where_raised(errors[-1])}" if errors else None
        try:
            if isinstance(record, BadRecordError):
                raise record
            events = read_events(record or "")
        except BadRecordError as error:
            return [error_output("TestFailed", f"What this test recorded could not be read: {error}.")]
        verdict = test.judge(events, reference.get(name, []), stopped_by)
        title = test_title(cell.source)
        if verdict.passed:
            passed = {"text/plain": f"Passed: {title}"}
            return [new_output("display_data", data=passed, metadata={VERDICT: True})]
        return [error_output("TestFailed", f"{title}: {verdict.message}")]


ANSI = re.compile(r"\x1b\[[0-9;]*m")
PACKAGE_FRAME = re.compile(r"File (?:\S*/)?(miniflow/[\w/]+\.py):(\d+)")


def where_raised(error):
    """" (miniflow/layers.py, line 42)": the last line of the student's package in an error's traceback."""
    if error.get("ename") == "MiniflowError":  # the engine's own diagnosis names the node at fault
        return ""
    frames = PACKAGE_FRAME.findall(ANSI.sub("", "\n".join(error.get("traceback", []))))
    return f" (in {frames[-1][0]}, line {frames[-1][1]})" if frames else ""


def test_title(source):
    """What a test cell checks, from its first comment line ("# Test: ...")."""
    first = source.lstrip().splitlines()[0] if source.strip() else ""
    if first.startswith("#"):
        return shorten(first.lstrip("# ").split(":", 1)[-1].strip(), 120)
    return "the test"


def reference_package(root):
    """The reference solutions' package of the course at `root` (solutions/miniflow)."""
    return Path(root) / "solutions" / "miniflow"


class HideHiddenTests(ClearHiddenTests):
    """nbgrader's ClearHiddenTests for feedback, extended to what the outputs could show.

    A hidden test's code can reach outputs: in a traceback, or through the
    student's code (which can read its caller's source, or IPython's history in a
    later cell, and print it). So a hidden-test cell keeps only its verdict
    (RecordedTests) and its errors, each as one line "Name: message" cut to
    `max_message_chars`; and in every cell's outputs any line of the notebook's
    hidden tests is blanked out.
    """

    max_message_chars = Integer(500, help="Longest error message shown for a hidden test").tag(config=True)

    def preprocess(self, nb, resources):
        tests = [cell for cell in nb.cells if utils.is_grade(cell)]
        self.hidden = frozenset().union(*(self.hidden_lines(cell.source) for cell in tests))
        nb, resources = super().preprocess(nb, resources)
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                self.scrub(output)
        return nb, resources

    hidden = frozenset()  # the notebook's lines of hidden tests

    def preprocess_cell(self, cell, resources, cell_index):
        if not utils.is_grade(cell):
            # Hidden tests live in test cells (restored from the gradebook); the markers in a
            # student's own cell are just text, which must not stop their feedback.
            return cell, resources
        hidden = self.hidden_lines(cell.source)
        self.hidden = self.hidden | hidden
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if hidden and cell.cell_type == "code":
            cell.outputs = [
                self.summary(output) if output.output_type == "error" else output
                for output in cell.outputs
                if output.output_type == "error" or output.get("metadata", {}).get(VERDICT)
            ]
        return cell, resources

    def hidden_lines(self, source):
        lines, inside = set(), False
        for line in source.splitlines():
            if self.begin_test_delimeter in line:
                inside = True
            elif self.end_test_delimeter in line:
                inside = False
            elif inside and len(line.strip()) >= 8:
                lines.add(line.strip())
        return lines

    def blank(self, text):
        for line in self.hidden:
            text = text.replace(line, "[hidden test]")
        return text

    def scrub(self, output):
        if "text" in output:
            output.text = self.blank(output.text)
        if output.output_type == "error":
            output.evalue = self.blank(output.evalue)
            output.traceback = [self.blank(line) for line in output.traceback]
        for kind, value in output.get("data", {}).items():
            if kind.startswith("text/") and isinstance(value, str):
                output.data[kind] = self.blank(value)

    def summary(self, error):
        message = self.blank(error.evalue)
        if len(message) > self.max_message_chars:
            message = message[: self.max_message_chars - 3] + "..."
        return error_output(error.ename, message)


class ShowGradingNotes(NbGraderPreprocessor):
    """Put what grading repaired or ran into (the notebook's notes) at the top of its feedback."""

    def preprocess(self, nb, resources):
        notes = nb.metadata.get(NOTES)
        if notes:
            items = "\n".join(f"- {html.escape(text)}" for text in notes)
            nb.cells.insert(0, new_markdown_cell(f"**Notes from grading**\n\n{items}"))
        return nb, resources
