"""nbgrader preprocessors for the miniflow course: nbgrader's pipeline, made robust and trustworthy.

Autograde, sanitising a submission (before any code runs):

    RestoreCells        nbgrader's OverwriteCells, hardened: test cells whose metadata a
                        student changed, retagged or deleted are graded as released

Autograde, executing and scoring:

    SandboxedExecute    nbgrader's Execute with each kernel in the sandbox; a kernel that a
                        cell kills or hangs is replaced, and grading goes on
    StderrIsNotFailure  a test cell that writes to stderr is not failed for it
    TrustedChecks       test cells of the miniflow package are graded by trusted checks run
                        out of process (autograder/checks.py), not by the student's kernel;
                        those of the notebooks' own functions from the raw results of a probe
                        the kernel runs in their place (autograder/probes.py)

Feedback:

    HideHiddenTests     nbgrader's ClearHiddenTests, also for what the outputs could show
    ShowGradingNotes    what grading repaired or ran into, at the top of each notebook

Each step records what it repaired or ran into as a note in the notebook's
metadata (under NOTES); the grade command reports them, and the feedback shows them.
"""

import html
import json
import time

from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_markdown_cell, new_output
from nbgrader import utils
from nbgrader.api import Gradebook
from nbgrader.preprocessors import ClearHiddenTests, Execute, NbGraderPreprocessor, OverwriteCells
from traitlets import Bool, Enum, Float, Integer

from . import checks, probes
from .kernels import SandboxedKernelManager
from .sandbox import KIB, SandboxRun, describe_exit

NOTES = "autograder_notes"
PROBE_REPLIES = "miniflow_probe_replies"  # resources key: grade_id -> probes.Reply (or None: none saved)
SKIP_TAG = "skip-execution"  # nbclient's default skip_cells_with_tag
UNSANDBOXED = "The sandbox was unavailable: the notebooks ran with resource limits only."

# Test cells graded by a trusted check: grade_id -> (check, part). A part names one
# of the check's results ("gradient for W"), None the whole check. The other test
# cells are graded from probes (probes.PROBES); a cell in neither, as an instructor
# might add, is graded by nbgrader from its run in the student's kernel.
CHECKED_CELLS = {
    "mul_forward": ("mul_forward", None),
    "mul_backward": ("mul_backward", None),
    "mul_backward_fanout": ("mul_fanout", None),
    "linear_forward": ("linear_forward", None),
    "linear_backward_dX": ("linear_backward", "gradient for X"),
    "linear_backward_dW": ("linear_backward", "gradient for W"),
    "linear_backward_db": ("linear_backward", "gradient for b"),
    "linear_float32": ("linear_float32", None),
    "sigmoid_forward": ("sigmoid_forward", None),
    "sigmoid_backward": ("sigmoid_backward", None),
    "sigmoid_stability": ("sigmoid_stability", None),
    "sigmoid_float32": ("sigmoid_float32", None),
    "softmax_rows": ("softmax", None),
    "softmax_stability": ("softmax_stability", None),
    "cross_entropy_forward": ("cross_entropy_forward", None),
    "cross_entropy_backward": ("cross_entropy_backward", None),
    "cross_entropy_upstream": ("cross_entropy_upstream", None),
    "cross_entropy_stability": ("cross_entropy_stability", None),
    "cross_entropy_float32": ("cross_entropy_float32", None),
    # The lab's visible asserts, and the hidden tests that use only the package.
    "mul_lab_f": ("lab_f", None),
    "mul_lab_dummygrad": ("lab_f_upstream", None),
    "mul_three_inputs": ("lab_three_inputs", None),
    "linear_worked_example": ("lab_linear_example", None),
    "linear_lab_ones": ("lab_linear", None),
    "linear_lab_dummygrad": ("lab_linear_upstream", None),
    "linear_bias_shape": ("linear_bias_row", "gradient for b"),
    "sigmoid_lab_ones": ("lab_sigmoid", None),
    "sigmoid_lab_dummygrad": ("lab_sigmoid_upstream", None),
    "sigmoid_after_linear": ("lab_sigmoid_after_linear", None),
    "softmax_example": ("lab_softmax", None),
    "cross_entropy_lab": ("lab_cross_entropy", None),
    "two_layer_walkthrough": ("lab_two_layer", None),
    "sgd_update_minimum": ("lab_descent_graph", None),
}


def grade_id(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def is_checked(cell):
    """A test cell graded by a check: it does not run in the kernel."""
    return utils.is_grade(cell) and grade_id(cell) in CHECKED_CELLS


def is_probed(cell):
    """A test cell graded from its probe: the kernel runs the probe in its place."""
    return utils.is_grade(cell) and grade_id(cell) in probes.PROBES


def is_trusted(cell):
    """A test cell whose grade TrustedChecks decides, not what it showed in the kernel."""
    return is_checked(cell) or is_probed(cell)


def cell_name(cell, index):
    return f"cell {grade_id(cell)!r}" if grade_id(cell) else f"cell {index + 1}"


def note(nb, text):
    nb.metadata.setdefault(NOTES, []).append(text)


def error_output(ename, evalue):
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


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
                what = f"claimed to be {name!r}, which is not in the assignment" if name else "was a copy"
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
            if cell.source.strip() != released.source.strip():
                kind = "Test cell" if utils.is_grade(cell) else "Read-only cell"
                note(self.nb, f"{kind} {name!r} had been edited: the released version was used.")
        return super().preprocess_cell(cell, resources, cell_index)

    def source_of(self, name):
        return self.gradebook.find_source_cell(name, self.notebook_id, self.assignment_id).source

    def report_change(self, name, attr, old, new):
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

    Test cells graded by a trusted check do not run: TrustedChecks grades them.
    A test cell graded from a probe runs the probe in its place (probes.py).
    A cell that kills the kernel (os._exit, a signal, the memory limit) or runs
    past the timeout gets an error output saying so; a new kernel runs the cells
    before it again, discarding what they show, and execution goes on with the
    next cell. After `max_kernel_restarts` replacements, or `notebook_timeout`
    seconds for the whole notebook, the remaining cells do not run. What one cell
    shows is capped at `max_output_bytes`, errors and results excepted (they
    decide its grade).
    """

    interrupt_on_timeout = Bool(
        False, help="Interrupt a cell that times out (by default its kernel is replaced instead)"
    ).tag(config=True)
    shutdown_kernel = Enum(["graceful", "immediate"], default_value="immediate").tag(config=True)
    max_kernel_restarts = Integer(5, help="Kernels replaced per notebook before giving up").tag(config=True)
    notebook_timeout = Integer(1800, help="Seconds for all of a notebook's cells, replays included").tag(
        config=True
    )
    max_output_bytes = Integer(256 * KIB, help="Output kept per cell, errors and results excepted").tag(
        config=True
    )

    def __init__(self, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(**kwargs)

    def preprocess(self, nb, resources=None, km=None):
        NotebookClient.__init__(self, nb, km)  # as ExecutePreprocessor.preprocess does
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        self.deadline = time.monotonic() + self.notebook_timeout
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
            if not self.km.sandbox.isolated and UNSANDBOXED not in self.nb.metadata.get(NOTES, []):
                note(self.nb, UNSANDBOXED)
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
                # A probe is not run again: its results are saved, and nothing after needs it.
                if cell.cell_type == "code" and cell.execution_count is not None and not is_probed(cell):
                    ran.append(cell)
                    self.report_memory_error(cell, index)
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
        if isinstance(lost, CellTimeoutError):
            what = f"did not finish within {self.cell_timeout} s (an endless loop, or a long sleep?)"
            ename = "CellTimeoutError"
        else:
            status = self.km.exit_status()
            ended = SandboxRun(status, False, "", self.km.sandbox.isolated, 0)
            how = describe_exit(ended, self.km.limits) if status is not None else "it stopped"
            what = f"made the kernel die: {how}"
            ename = "DeadKernelError"
        message = f"This cell {what}. A new kernel ran the cells above again and grading went on."
        cell.outputs.append(error_output(ename, message))
        note(self.nb, f"{cell_name(cell, index).capitalize()} {what}.")

    def report_memory_error(self, cell, index):
        if any(output.get("ename") == "MemoryError" for output in cell.outputs):
            limit = f"{self.km.memory_bytes // 2**20} MiB"
            note(self.nb, f"{cell_name(cell, index).capitalize()} ran out of memory (the limit is {limit}).")

    def skip_rest(self, start, why):
        for cell in self.nb.cells[start:]:
            if cell.cell_type == "code" and not is_checked(cell):
                cell.outputs = [error_output("NotRun", f"not run: {why}")]
        note(self.nb, f"Cells from {start + 1} on did not run: {why}.")

    def preprocess_cell(self, cell, resources, index):
        if is_checked(cell):
            return cell, resources
        self.kept_bytes, self.truncated = 0, False
        if is_probed(cell):
            return self.run_probe(cell, resources, index)
        return super().preprocess_cell(cell, resources, index)

    def run_probe(self, cell, resources, index):
        """Run the cell's probe in its place; keep the Reply it saved in resources[PROBE_REPLIES]."""
        probe = probes.PROBES[grade_id(cell)]
        path = self.km.scratch / f"probe-{probe.grade_id}.npz"  # the kernel may write only there
        source, cell.source = cell.source, probe.kernel_code(path)
        try:
            super().preprocess_cell(cell, resources, index)
        finally:
            cell.source = source
        try:
            reply = probes.read_reply(path)
        except checks.BadReplyError:
            reply = None
        resources.setdefault(PROBE_REPLIES, {})[probe.grade_id] = reply
        return cell, resources

    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] in ("stream", "display_data"):
            size = len(json.dumps(msg["content"]))
            if self.kept_bytes + size > self.max_output_bytes:
                if not self.truncated:
                    self.truncated = True
                    limit = f"{self.max_output_bytes // KIB} KiB"
                    outs.append(new_output("stream", name="stdout", text=f"\n[output cut at {limit}]\n"))
                return None
            self.kept_bytes += size
        return super().output(outs, msg, display_id, cell_index)


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


class TrustedChecks(NbGraderPreprocessor):
    """Grade the test cells in CHECKED_CELLS and probes.PROBES here, not by what the kernel showed.

    The checks run the student's miniflow (in the notebook's folder) in a
    sandboxed child process and compare what it returns here; the probes'
    results, saved by the kernel in place of the cell's test code, are judged
    here. So nothing the student's code does to numpy, builtins or IPython can
    pass them. A cell's outputs become the verdict: a line saying it passed, an
    error with the check's message (the inputs' shapes and the first wrong
    value), or for partial credit the fraction of points as the cell's result,
    which nbgrader scores as such.
    """

    check_seconds = Float(10.0, help="Time a single check may take in the child process").tag(config=True)

    def preprocess(self, nb, resources):
        replies = resources.get(PROBE_REPLIES, {})
        for cell in filter(is_probed, nb.cells):
            cell.outputs = self.probe_verdict(cell, replies)
        graded = [(cell, *CHECKED_CELLS[grade_id(cell)]) for cell in nb.cells if is_checked(cell)]
        if not graded:
            return nb, resources
        folder = resources["metadata"]["path"]
        names = sorted({check for _, check, _ in graded})
        result = checks.run_checks(folder, names, check_seconds=self.check_seconds)
        if not result.isolated and UNSANDBOXED not in nb.metadata.get(NOTES, []):
            note(nb, UNSANDBOXED)
        for cell, check, part in graded:
            cell.outputs = self.verdict(result.checks[check], part, cell.metadata.nbgrader["points"])
        return nb, resources

    @staticmethod
    def probe_verdict(cell, replies):
        probe = probes.PROBES[grade_id(cell)]
        if probe.grade_id in replies:
            passed, message = probe.verdict(replies[probe.grade_id])
        else:  # it did not run, or took its kernel with it: the executor said why in its outputs
            errors = [output for output in cell.outputs if output.output_type == "error"]
            passed, message = False, errors[-1].evalue if errors else "it did not run"
        return TrustedChecks.outputs(probe.title, 1.0 if passed else 0.0, message, None)

    @staticmethod
    def verdict(result, part, points):
        title = checks.CHECKS[result.name].title + (f" ({part})" if part else "")
        fraction = float(result.parts[part]) if part else result.score
        return TrustedChecks.outputs(title, fraction, result.message_for(part), points)

    @staticmethod
    def outputs(title, fraction, message, points):
        """A test cell's outputs for a verdict: passed, failed, or `fraction` of its `points`."""
        if fraction == 1:
            return [new_output("stream", name="stdout", text=f"Passed the trusted check: {title}\n")]
        if fraction == 0:
            return [error_output("CheckFailed", f"{title}: {message}")]
        return [
            new_output("stream", name="stdout", text=f"Partly right ({fraction:.0%}): {title}: {message}\n"),
            new_output("execute_result", data={"text/plain": repr(points * fraction)}, execution_count=None),
        ]


class HideHiddenTests(ClearHiddenTests):
    """nbgrader's ClearHiddenTests for feedback, extended to the outputs of hidden-test cells.

    A hidden test's code can reach its outputs: in a traceback, or through the
    student's code (which can read its caller's source and print it or put it
    in an exception). So such a cell keeps only its errors, each as one line
    "Name: message", cut to `max_message_chars`, with any line of the hidden
    tests in it blanked out. Cells graded by a trusted check keep their
    verdict, which never shows the check's code.
    """

    max_message_chars = Integer(500, help="Longest error message shown for a hidden test").tag(config=True)

    def preprocess_cell(self, cell, resources, cell_index):
        hidden = self.hidden_lines(cell.source)
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if hidden and cell.cell_type == "code" and not is_trusted(cell):
            cell.outputs = [
                self.summary(output, hidden) for output in cell.outputs if output.output_type == "error"
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

    def summary(self, error, hidden):
        message = error.evalue
        for line in hidden:
            message = message.replace(line, "[hidden test]")
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
