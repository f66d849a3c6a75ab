"""Trusted verdicts for test cells: the grading process judges what each cell recorded.

A test cell of a source notebook is the one place its test lives. It runs in
the student's sandboxed kernel as written, and recording (autograder/recording.py)
writes down the *leaves* of each of its asserts: the values the assert checks,
as plain data. The same cell, run once against the reference solutions
(`ReferenceRecords`, cached by the hashes of the notebook and the package),
records what those values should be. Here, in the grading process:

- each leaf the student's kernel recorded must match the reference's (shape,
  float32 where the reference is float32, values within the tolerances, the same
  objects of the same kinds in the same places of a graph), and
- each assert's condition is evaluated again by trusted code on the student's
  leaves (`Evaluator`), so the cell's own comparisons and tolerances decide.

A student's kernel can patch numpy, IPython or the recorder and forge the file:
it only changes the data, which must then match the reference's.

A test cell chooses how it is judged with comment lines `# grading: KEY=VALUE ...`:

    own=NAME,...    leaves that use these names are the submission's own choices
                    (its settings, its network and values computed from its own random
                    weights): they are judged by the asserts alone, not compared with
                    the reference. The kernel can forge such values, so keep them to
                    what students choose.
    rtol=, atol=    tolerances for comparing with the reference (default 1e-5 and 1e-8;
                    1e-4 and 1e-6 for float32 values)
    RULE=FUNCTION   calls of FUNCTION inside an assert are computed by the grader's rule
                    RULE (RULES, e.g. retrain) from the arguments the kernel recorded,
                    instead of by the kernel

    cell = TestCell.parse("mul_backward", source)
    verdict = cell.judge(student_events, reference_events)
    verdict.passed, verdict.message
"""

import ast
import base64
import builtins
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import stat
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import recording

MAX_RECORD_BYTES = recording.MAX_FILE_BYTES + 2**20
MAX_MESSAGE = 400
DIRECTIVE = re.compile(r"^\s*#\s*grading:(.*)$", re.MULTILINE)
DEFAULT_TOLERANCE = {"rtol": 1e-5, "atol": 1e-8}
FLOAT32_TOLERANCE = {"rtol": 1e-4, "atol": 1e-6}
ALLOWED_DTYPES = frozenset("?bBhHiIlLqQefdgFD")  # numeric and boolean dtypes: no objects


class BadRecordError(ValueError):
    """A record file that is not what recording writes: the student's kernel tampered with it."""


class TestDefinitionError(RuntimeError):
    """A test cell that cannot grade: the reference fails it, or it records nothing. Fix the notebook."""


# --- what the kernel recorded, rebuilt as plain values -------------------------------------------


@dataclass(frozen=True)
class ObjectRecord:
    """An object of the student's kernel: its type, an id within the cell, its graph inputs or fields."""

    kind: str
    id: int
    mro: tuple = field(default=(), compare=False)
    inputs: tuple = field(default=(), compare=False)
    fields: tuple = field(default=(), compare=False)  # (name, value) pairs of a named tuple

    def field(self, name):
        return dict(self.fields)[name]

    def __repr__(self):
        return f"<{self.kind} object>"


@dataclass(frozen=True)
class ClassRecord:
    """A class named in the kernel (one the grader does not have, such as the notebook's Settings)."""

    name: str
    mro: tuple = field(default=(), compare=False)

    def __repr__(self):
        return f"<class {self.name}>"


@dataclass(frozen=True)
class RuleCall:
    """A call that a rule computes: the arguments the kernel recorded."""

    arguments: tuple
    keywords: tuple


@dataclass(frozen=True)
class Event:
    """One finished assert condition: the assert's number and its leaves' values by index."""

    number: int
    leaves: dict
    passed: bool  # what the kernel said; never trusted, only reported


def rebuild(data, objects):
    """A recorded value (recording.Recorder.plain) as a plain Python or numpy value."""
    if data is None or isinstance(data, bool | int | float | str):
        return data
    if isinstance(data, list):
        raise BadRecordError("a bare list")
    if not isinstance(data, dict) or len(data) == 0:
        raise BadRecordError("an unknown value")
    if "array" in data:
        return rebuild_array(data)
    if "float" in data:
        return float(str(data["float"])[:20])
    if "str" in data:
        return str(data["str"])
    if "bigint" in data:
        return int(str(data["bigint"])[:100])
    if "dtype" in data:
        return np.dtype(checked_dtype(data["dtype"]))
    if "class" in data:
        numpy_type = data.get("numpy")
        if numpy_type:
            return np.dtype(checked_dtype(numpy_type)).type
        return ClassRecord(str(data["class"]), tuple(map(str, data.get("mro", ())))[:20])
    for kind, make in (("list", list), ("tuple", tuple), ("set", frozenset)):
        if kind in data:
            items = [rebuild(item, objects) for item in sequence(data[kind])]
            return make(items) if kind != "set" else set(items)
    if "dict" in data:
        pairs = [sequence(pair) for pair in sequence(data["dict"])]
        if any(len(pair) != 2 for pair in pairs):
            raise BadRecordError("a malformed dict")
        return {hashable(rebuild(k, objects)): rebuild(v, objects) for k, v in pairs}
    if "ref" in data:
        if data["ref"] not in objects:
            raise BadRecordError("a reference to an object not recorded")
        return objects[data["ref"]]
    if "rule" in data:
        arguments, keywords = (rebuild(part, objects) for part in sequence(data["rule"]))
        if not isinstance(arguments, list | tuple) or not isinstance(keywords, dict):
            raise BadRecordError("a malformed rule call")
        return RuleCall(tuple(arguments), tuple(keywords.items()))
    if "object" in data:
        return rebuild_object(data, objects)
    raise BadRecordError("an unknown value")


def sequence(value):
    if not isinstance(value, list):
        raise BadRecordError("a malformed sequence")
    return value


def hashable(key):
    if isinstance(key, np.ndarray | list | dict | set):
        raise BadRecordError("an unhashable dict key")
    return key


def checked_dtype(text):
    dtype = np.dtype(str(text)[:8])
    if dtype.char not in ALLOWED_DTYPES:
        raise BadRecordError(f"an array of dtype {dtype}")
    return dtype


def rebuild_array(data):
    dtype = checked_dtype(data["array"])
    shape = tuple(int(n) for n in sequence(data["shape"]))
    raw = base64.b64decode(str(data["data"]), validate=True)
    if any(n < 0 for n in shape) or int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(raw):
        raise BadRecordError("an array whose data does not fit its shape")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    return array[()] if data.get("scalar") else array


def rebuild_object(data, objects):
    number = data.get("id")
    if not isinstance(number, int):
        return ObjectRecord(str(data["object"])[:100], -1)
    if number in objects:
        raise BadRecordError("an object id used twice")
    placeholder = ObjectRecord(str(data["object"])[:100], number, tuple(map(str, data.get("mro", ())))[:20])
    objects[number] = placeholder
    inputs = tuple(rebuild(item, objects) for item in sequence(data.get("inputs", [])))
    fields = tuple((str(k), rebuild(v, objects)) for k, v in dict(data.get("fields", {})).items())
    record = ObjectRecord(placeholder.kind, number, placeholder.mro, inputs, fields)
    objects[number] = record
    return record


def read_events(text):
    """The events of one cell's record file (its text), rebuilt; BadRecordError if it was tampered with."""
    events, objects = [], {}
    for line in text.splitlines():
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):
            raise BadRecordError("a line that is not JSON") from None
        if data == {"overflow": True}:
            raise BadRecordError("more than the record size limit")
        try:
            number, leaves, passed = data["assert"], data["leaves"], data["passed"]
            if not isinstance(number, int) or not isinstance(leaves, dict):
                raise BadRecordError("a malformed event")
            values = {int(index): rebuild(value, objects) for index, value in leaves.items()}
        except (KeyError, TypeError, ValueError, RecursionError) as error:
            if isinstance(error, BadRecordError):
                raise
            raise BadRecordError(f"a malformed event ({type(error).__name__})") from None
        events.append(Event(number, values, bool(passed)))
    return events


def read_record_file(path, limit=MAX_RECORD_BYTES, dir_fd=None):
    """The text of a record file the kernel wrote: a regular file, not a link, at most `limit` bytes.

    `path` is relative to the folder `dir_fd` opens, if given. Returns None when there is no file.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise BadRecordError(f"the record file cannot be opened ({error.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise BadRecordError("the record file is not a regular file")
        data = os.read(descriptor, limit + 1)
    finally:
        os.close(descriptor)
    if len(data) > limit:
        raise BadRecordError("the record file is too large")
    return data.decode("utf-8", errors="replace")


# --- evaluating a condition again, on recorded values ----------------------------------------------


class NotRecordedError(Exception):
    """A leaf the condition needs that the kernel did not record."""


def trusted_isinstance(value, classes):
    if isinstance(classes, tuple):
        return any(trusted_isinstance(value, each) for each in classes)
    if isinstance(classes, ClassRecord):
        mro = value.mro if isinstance(value, ObjectRecord) else tuple(c.__name__ for c in type(value).__mro__)
        return classes.name in mro
    if isinstance(value, ObjectRecord | ClassRecord | RuleCall):
        return False
    return isinstance(value, classes)


FUNCTIONS = {name: getattr(builtins, name) for name in recording.BUILTINS} | {
    "isinstance": trusted_isinstance
}
COMPARISONS = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
    ast.Is: lambda a, b: a is b or (isinstance(a, ObjectRecord) and a == b),
    ast.IsNot: lambda a, b: not (a is b or (isinstance(a, ObjectRecord) and a == b)),
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
OPERATORS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
    ast.MatMult: lambda a, b: a @ b,
}
UNARY = {ast.Not: lambda a: not a, ast.USub: lambda a: -a, ast.UAdd: lambda a: +a, ast.Invert: lambda a: ~a}


class Evaluator:
    """Evaluate an assert's condition with trusted code: its leaves come from `lookup(node)`."""

    def __init__(self, lookup, rules=()):
        self.lookup = lookup
        self.rules = rules

    def __call__(self, node):
        found = self.lookup(node)
        if found is not None:
            return found[0]
        parts = recording.evaluated_parts(node, self.rules)
        if parts is None:
            raise NotRecordedError(ast.unparse(node))
        method = getattr(self, type(node).__name__)
        return method(node)

    def Constant(self, node):  # noqa: N802 (named after the ast node types)
        return node.value

    def Tuple(self, node):  # noqa: N802
        return tuple(self(item) for item in node.elts)

    def List(self, node):  # noqa: N802
        return [self(item) for item in node.elts]

    def Set(self, node):  # noqa: N802
        return {self(item) for item in node.elts}

    def BoolOp(self, node):  # noqa: N802
        value = None
        for part in node.values:
            value = self(part)
            if (isinstance(node.op, ast.And) and not value) or (isinstance(node.op, ast.Or) and value):
                return value
        return value

    def Compare(self, node):  # noqa: N802
        left = self(node.left)
        for operator, right_node in zip(node.ops, node.comparators, strict=True):
            right = self(right_node)
            if not COMPARISONS[type(operator)](left, right):
                return False
            left = right
        return True

    def UnaryOp(self, node):  # noqa: N802
        return UNARY[type(node.op)](self(node.operand))

    def BinOp(self, node):  # noqa: N802
        left, right = self(node.left), self(node.right)
        guard_size(node.op, left, right)
        guard_broadcast([left, right], matmul=isinstance(node.op, ast.MatMult))
        return OPERATORS[type(node.op)](left, right)

    def Attribute(self, node):  # noqa: N802
        name = recording.numpy_name(node)
        if name is not None:
            return getattr(np, name)
        value = self(node.value)
        if isinstance(value, ObjectRecord | ClassRecord | RuleCall):
            raise TypeError(f"{value!r} has no attribute {node.attr!r} here")
        return getattr(value, node.attr)

    def Subscript(self, node):  # noqa: N802
        return self(node.value)[self.static(node.slice)]

    def static(self, node):
        if isinstance(node, ast.Slice):
            return slice(
                *(None if part is None else self(part) for part in (node.lower, node.upper, node.step))
            )
        return self(node)

    def Call(self, node):  # noqa: N802
        function = node.func
        arguments = [self(arg) for arg in node.args]
        keywords = {keyword.arg: self(keyword.value) for keyword in node.keywords}
        guard_broadcast([*arguments, *keywords.values()])
        if isinstance(function, ast.Name):
            return FUNCTIONS[function.id](*arguments, **keywords)
        name = recording.numpy_name(function)
        if name is not None:
            return getattr(np, name)(*arguments, **keywords)
        value = self(function.value)
        if not isinstance(value, np.ndarray | np.generic):
            raise TypeError(f"{type(value).__name__} has no method {function.attr!r} here")
        return getattr(value, function.attr)(*arguments, **keywords)


def guard_size(operator, left, right):
    """Refuse the operations by which recorded numbers could make the grader's work explode."""
    if (
        isinstance(operator, ast.Pow)
        and isinstance(left, int)
        and isinstance(right, int)
        and abs(right) > 4096
    ):
        raise OverflowError("an exponent too large to evaluate")
    if isinstance(operator, ast.Mult):
        for sequence_value, count in ((left, right), (right, left)):
            if isinstance(sequence_value, list | tuple | str) and isinstance(count, int) and count > 10**6:
                raise OverflowError("a sequence too long to build")


# About 80 MB of float64, far beyond any test's arrays: a student's (n, 1) beside the reference's
# (n,) must not make the grader build an (n, n) array.
MAX_ELEMENTS = 10**7


def guard_broadcast(values, matmul=False):
    """Refuse an operation on recorded arrays whose result would hold more than MAX_ELEMENTS."""
    shapes = [value.shape for value in values if isinstance(value, np.ndarray)]
    if len(shapes) < 2:
        return
    if matmul:
        left, right = shapes[0], shapes[-1]
        size = (left[-2] if len(left) > 1 else 1) * (right[-1] if len(right) > 1 else 1)
    else:
        try:
            size = math.prod(np.broadcast_shapes(*shapes))
        except ValueError:  # shapes that do not broadcast: numpy says so itself
            return
    if size > MAX_ELEMENTS:
        raise OverflowError("arrays whose result would be too large to evaluate")


# --- comparing with the reference ------------------------------------------------------------------


def is_number(value):
    return isinstance(value, bool | int | float | np.generic) and not isinstance(value, np.str_ | np.bytes_)


def kind_of(value):
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if is_number(value):
        return f"a number ({type(value).__name__})"
    if isinstance(value, ObjectRecord):
        return f"a {value.kind} object"
    return f"a {type(value).__name__}"


def mismatch(got, expected, tolerance):
    """Why `got` does not match the reference's `expected` (a short text), or None when it does."""
    if isinstance(expected, np.ndarray) or is_number(expected):
        if not (isinstance(got, np.ndarray) or is_number(got)):
            return f"{kind_of(got)}, expected {kind_of(expected)}"
        return array_mismatch(np.asarray(got), np.asarray(expected), tolerance)
    if isinstance(expected, list | tuple):
        if type(got) is not type(expected):
            return f"{kind_of(got)}, expected {kind_of(expected)}"
        if len(got) != len(expected):
            return f"{len(got)} items, expected {len(expected)}"
        for index, (got_item, expected_item) in enumerate(zip(got, expected, strict=True)):
            problem = mismatch(got_item, expected_item, tolerance)
            if problem:
                return f"item {index}: {problem}"
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            return f"{kind_of(got)} with other keys than expected"
        for key, expected_item in expected.items():
            problem = mismatch(got[key], expected_item, tolerance)
            if problem:
                return f"at {key!r}: {problem}"
        return None
    if isinstance(expected, set):
        if not isinstance(got, set) or got != expected:
            return f"{kind_of(got)}, expected a set of {len(expected)}"
        return None
    if isinstance(expected, ObjectRecord):
        if not isinstance(got, ObjectRecord) or got.kind != expected.kind:
            return f"{kind_of(got)}, expected {kind_of(expected)}"
        return None if got == expected else f"another {got.kind} object than expected"
    if type(got) is not type(expected) or got != expected:
        return f"{shorten(repr(got), 80)}, expected {shorten(repr(expected), 80)}"
    return None


def array_mismatch(got, expected, tolerance):
    if got.shape != expected.shape:
        return f"shape {got.shape}, expected {expected.shape}"
    if expected.dtype == np.float32 and got.dtype != np.float32:
        return f"dtype {got.dtype}, expected float32 (float32 inputs should give float32 results)"
    if got.dtype.kind == "b" or expected.dtype.kind == "b":
        return None if np.array_equal(got, expected) else f"{got.tolist()}, expected {expected.tolist()}"
    if expected.dtype == np.float32:
        tolerance = {key: max(value, FLOAT32_TOLERANCE[key]) for key, value in tolerance.items()}
    with np.errstate(all="ignore"):
        close = np.isclose(got, expected, equal_nan=True, **tolerance)
    if np.all(close):
        return None
    if expected.ndim == 0:
        return f"{got.item():.6g}, expected {expected.item():.6g}"
    index = tuple(int(i) for i in np.argwhere(~close)[0])
    text = (
        f"{int((~close).sum())} of {expected.size} entries differ; the first, at {list(index)}, is "
        f"{got[index]:.6g} (expected {expected[index]:.6g})"
    )
    return text + ratio_hint(got, expected)


def ratio_hint(got, expected):
    """Where `got` is one constant multiple of `expected` over several entries, say so."""
    with np.errstate(all="ignore"):
        nonzero = expected != 0
        if nonzero.sum() < 2 or not np.all(np.isfinite(got)) or np.any(got[~nonzero] != 0):
            return ""
        ratios = got[nonzero] / expected[nonzero]
    if np.allclose(ratios, ratios[0], rtol=1e-6) and not np.isclose(ratios[0], 1):
        return f"; everywhere {ratios[0]:.4g} times the expected"
    return ""


def shorten(text, limit=MAX_MESSAGE):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- one test cell ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assert:
    """One assert statement of a test cell, as the grader sees it."""

    number: int
    node: ast.Assert
    leaves: tuple  # the condition's leaves, in recording order
    own: frozenset  # indices of leaves that are the submission's own values
    rules: dict  # leaf index -> rule name

    @property
    def line(self):
        return self.node.lineno

    def source_of(self, index):
        return ast.unparse(self.leaves[index])

    def lookup(self, values):
        """A lookup for Evaluator: each leaf node -> its value in `values`."""
        positions = {id(leaf): index for index, leaf in enumerate(self.leaves)}

        def find(node):
            if id(node) not in positions:
                return None
            index = positions[id(node)]
            if index not in values:
                raise NotRecordedError(self.source_of(index))
            return (values[index],)

        return find


@dataclass(frozen=True)
class Verdict:
    passed: bool
    message: str = ""


@dataclass
class TestCell:
    """A test cell's asserts and grading directives, parsed from its source."""

    grade_id: str
    asserts: list
    own_names: frozenset = frozenset()
    tolerance: dict = field(default_factory=lambda: dict(DEFAULT_TOLERANCE))
    rules: dict = field(default_factory=dict)  # function name -> rule name

    @classmethod
    def parse(cls, grade_id, source):
        """The cell's tests; TestDefinitionError if its source is not Python or a directive is unknown."""
        cell = cls(grade_id, [])
        for line in DIRECTIVE.findall(source):
            for setting in line.split():
                key, _, value = setting.partition("=")
                if key == "own":
                    cell.own_names |= frozenset(name for name in value.split(",") if name)
                elif key in ("rtol", "atol"):
                    cell.tolerance[key] = float(value)
                elif key in RULES:
                    cell.rules[value] = key
                else:
                    raise TestDefinitionError(
                        f"test cell {grade_id!r}: unknown grading directive {setting!r}"
                    )
        try:
            tree = ast.parse(source)
        except SyntaxError as error:
            raise TestDefinitionError(f"test cell {grade_id!r} is not valid Python: {error}") from None
        for number, node in enumerate(recording.asserts_of(tree)):
            leaves = tuple(recording.split(node.test, cell.rules))
            own = frozenset(i for i, leaf in enumerate(leaves) if cell.uses_own_names(leaf))
            rules = {
                i: cell.rules[name]
                for i, leaf in enumerate(leaves)
                if (name := recording.rule_call(leaf, cell.rules))
            }
            cell.asserts.append(Assert(number, node, leaves, own, rules))
        return cell

    def uses_own_names(self, node):
        return any(isinstance(name, ast.Name) and name.id in self.own_names for name in ast.walk(node))

    def judge(self, events, reference, stopped_by=None):
        """The verdict on a student's `events`, given the `reference`'s; `stopped_by`: the kernel's error."""
        if not reference:
            raise TestDefinitionError(f"test cell {self.grade_id!r} recorded no assert with the reference")
        if any(event.number >= len(self.asserts) for event in reference):
            raise TestDefinitionError(f"test cell {self.grade_id!r} differs from the one the reference ran")
        # A wrong value whose own assert still holds is reported only if no later assert fails:
        # the failing assert's message is the better hint.
        mismatched = None
        for got, expected in zip(events, reference, strict=False):
            check = self.asserts[expected.number]
            if got.number != expected.number:
                return Verdict(
                    False, mismatched or f"the test took another path than expected at line {check.line}"
                )
            problem = self.compare(check, got, expected)
            failed = self.evaluate(check, got, problem)
            if failed:
                return Verdict(False, failed)
            if problem and not mismatched:
                mismatched = shorten(f"on line {check.line}, {problem}")
        if mismatched:
            return Verdict(False, mismatched)
        if len(events) < len(reference):
            check = self.asserts[reference[len(events)].number]
            why = f": {shorten(stopped_by, 300)}" if stopped_by else ""
            return Verdict(False, f"the test stopped before its check on line {check.line}{why}")
        if len(events) > len(reference):
            return Verdict(False, "the test ran its checks more often than expected")
        return Verdict(True)

    def compare(self, check, got, expected):
        """How the student's leaves differ from the reference's (the first difference), or None."""
        for index, expected_value in expected.leaves.items():
            if index in check.own:
                continue
            if index not in got.leaves:
                return f"`{shorten(check.source_of(index), 80)}` was not recorded"
            if index in check.rules:
                problem = self.compare_rule_arguments(check, index, got.leaves[index], expected_value)
            else:
                problem = mismatch(got.leaves[index], expected_value, self.tolerance)
            if problem:
                return f"`{shorten(check.source_of(index), 80)}` is {problem}"
        return None

    def compare_rule_arguments(self, check, index, got, expected):
        """A rule's arguments are compared with the reference's, the submission's own ones aside."""
        if not isinstance(got, RuleCall) or len(got.arguments) != len(expected.arguments):
            return "not a call with the expected arguments"
        call = check.leaves[index]
        arguments = zip(call.args, got.arguments, expected.arguments, strict=True)
        for position, (argument, mine, theirs) in enumerate(arguments):
            if not self.uses_own_names(argument):
                problem = mismatch(mine, theirs, self.tolerance)
                if problem:
                    return f"called with argument {position + 1} {problem}"
        return None

    def evaluate(self, check, got, problem):
        """Why the assert's condition fails on the student's values (None when it holds).

        `problem`, how a leaf differs from the reference, says why when it does.
        """
        values = dict(got.leaves)
        try:
            for index, rule in check.rules.items():
                if index in values:
                    values[index] = RULES[rule](values[index])
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                holds = bool(Evaluator(check.lookup(values), self.rules)(check.node.test))
        except RuleError as error:
            return self.explain(check, values, str(error))
        except NotRecordedError as missing:
            return self.explain(check, values, f"`{missing}` was not recorded")
        except Exception as error:  # the student's values break the condition: it does not hold
            why = f"the check could not be evaluated ({type(error).__name__}: {error})"
            return self.explain(check, values, problem or why)
        if holds:
            return None
        shown = ", ".join(
            f"{check.source_of(index)} = {shorten(repr(value), 60)}"
            for index, value in values.items()
            if index in check.own or index in check.rules
        )
        return self.explain(check, values, problem or shown or "the check does not hold")

    def explain(self, check, values, problem):
        hint = self.hint(check, values)
        return shorten(f"{hint}: {problem}" if hint else f"the check on line {check.line} failed: {problem}")

    @staticmethod
    def hint(check, values):
        """The assert's own message, its {...} parts filled in from the recorded leaves where they can be."""
        message = check.node.msg
        if message is None:
            return ""
        if isinstance(message, ast.Constant):
            return shorten(message.value, 200)
        if not isinstance(message, ast.JoinedStr):
            return ""
        by_source = {check.source_of(index): value for index, value in values.items()}
        evaluator = Evaluator(
            lambda node: (by_source[ast.unparse(node)],) if ast.unparse(node) in by_source else None
        )
        parts = []
        for part in message.values:
            if isinstance(part, ast.Constant):
                parts.append(str(part.value))
                continue
            try:
                spec = "".join(str(p.value) for p in part.format_spec.values) if part.format_spec else ""
                with np.errstate(all="ignore"):
                    parts.append(format(evaluator(part.value), spec))
            except Exception:
                parts.append("…")
        return shorten("".join(parts), 200)


# --- rules: values the grader computes itself ---------------------------------------------------


class RuleError(Exception):
    """Why a rule could not compute its value: shown to the student."""


def rule_retrain(call):
    from .rules import retrain  # imports the reference package: only when a cell asks for it

    return retrain(*call.arguments, **dict(call.keywords))


RULES = {"retrain": rule_retrain}


# --- the reference's records ------------------------------------------------------------------------


def content_hash(paths):
    digest = hashlib.sha256()
    for path in paths:
        for file in sorted(Path(path).rglob("*")) if Path(path).is_dir() else [Path(path)]:
            if file.is_file() and "__pycache__" not in file.parts:
                digest.update(str(file.name).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


class ReferenceRecords:
    """What each test cell of a source notebook records with the reference solutions, cached on disk.

    The cache key covers the notebook, the reference package, the recorder and
    this module, and the data folder the kernels read: change any and it runs again.
    """

    def __init__(self, source_notebook, package, cache_folder, run_notebook):
        self.source_notebook = Path(source_notebook)
        self.package = Path(package)
        self.cache_folder = Path(cache_folder)
        self.run_notebook = (
            run_notebook  # (folder with the notebook and the package, notebook name) -> records
        )

    @property
    def key(self):
        here = Path(__file__).parent
        parts = [self.source_notebook, self.package, here / "recording.py", here / "testcells.py"]
        data = os.environ.get("MINIFLOW_DATA", "").encode()
        return f"{self.source_notebook.stem}-{content_hash(parts)}-{hashlib.sha256(data).hexdigest()[:8]}"

    def load(self):
        """grade_id -> the reference's events; runs the notebook once if the cache lacks them."""
        self.cache_folder.mkdir(parents=True, exist_ok=True)
        path = self.cache_folder / f"{self.key}.json"
        with open(self.cache_folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # parallel graders wait for one run instead of each running it
            if not path.exists():
                texts = self.record()
                temporary = path.with_suffix(".tmp")
                temporary.write_text(json.dumps(texts))
                temporary.replace(path)
        texts = json.loads(path.read_text())
        return {grade_id: read_events(text) for grade_id, text in texts.items()}

    def record(self):
        with tempfile.TemporaryDirectory(prefix="miniflow-reference-") as folder:
            shutil.copy(self.source_notebook, folder)
            shutil.copytree(
                self.package, Path(folder) / self.package.name, ignore=shutil.ignore_patterns("__pycache__")
            )
            texts, cells = self.run_notebook(Path(folder), self.source_notebook.name)
        for grade_id, source in cells.items():
            self.check_reference_passes(grade_id, source, texts.get(grade_id))
        return texts

    def check_reference_passes(self, grade_id, source, text):
        where = f"{self.source_notebook.name}, test cell {grade_id!r}"
        if text is None:
            raise TestDefinitionError(f"{where}: the reference run did not record it (did the notebook run?)")
        cell = TestCell.parse(grade_id, source)
        events = read_events(text)
        if not events:
            raise TestDefinitionError(f"{where}: no assert ran with the reference solutions")
        verdict = cell.judge(events, events)
        if not verdict.passed:
            raise TestDefinitionError(f"{where}: the reference solutions fail it: {verdict.message}")
