"""What a test cell checks, as plain data: the part of trusted grading that runs in the kernel.

A test cell of a source notebook is its test, written once, as asserts. Each
assert's condition splits into what the grading process can evaluate on its own
(comparisons, arithmetic, `len`, numpy's `allclose`, `.shape`, constant
indices...) and its *leaves*: the largest parts it cannot (calls of the
student's functions, the names the cell defined). In a grading kernel an
IPython AST transformer (`install`) wraps each leaf of the next cell it is armed
for in a call that records the leaf's value as plain data (numbers, numeric
arrays, strings, lists, and for any other object only its type, its place in
the cell's graph of nodes and, for named tuples, its fields), and returns the
value unchanged, so the cell runs as written. Each finished condition adds one
event to the cell's record file: the assert's number and its leaves' values.

The grading process (autograder/testcells.py) reads those files as untrusted
data and judges them: the leaves against what the same cell recorded with the
reference solution, the condition evaluated again by trusted code. Whatever the
kernel does, it only changes the data it recorded.

This module runs in the kernel, so it imports only the standard library and
numpy; the grading process uses `asserts_of` and `split` from it, so both
sides agree on which parts of a condition are leaves.

    tree = ast.parse(cell_source)
    for number, statement in enumerate(asserts_of(tree)):
        leaves = split(statement.test)   # the expressions the kernel records, in order
"""

import ast
import base64
import json
import os

import numpy

RECORDER = "__miniflow_record__"  # the kernel's name for the Recorder
MAX_FILE_BYTES = 64 * 2**20  # a record file stops growing here
MAX_DEPTH = 24
MAX_ITEMS = 100_000  # elements of one list, set or dict that are recorded
MAX_TEXT = 10_000
MAX_NODES = 2_000  # nodes of one cell's graph that are described

# What the grading process evaluates itself (testcells.Evaluator implements exactly these).
BUILTINS = frozenset(
    {
        "abs",
        "all",
        "any",
        "bool",
        "float",
        "int",
        "isinstance",
        "len",
        "list",
        "max",
        "min",
        "range",
        "round",
        "set",
        "sorted",
        "str",
        "sum",
        "tuple",
    }
)
NUMPY_NAMES = frozenset(
    {
        "abs",
        "all",
        "allclose",
        "any",
        "array",
        "array_equal",
        "asarray",
        "float16",
        "float32",
        "float64",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "bool_",
        "isclose",
        "isfinite",
        "isnan",
        "isinf",
        "max",
        "mean",
        "min",
        "ndim",
        "ptp",
        "ravel",
        "shape",
        "size",
        "sum",
        "round",
        "sqrt",
        "exp",
        "log",
        "prod",
        "argmax",
        "argmin",
        "sort",
        "unique",
        "std",
        "var",
        "median",
        "squeeze",
        "count_nonzero",
        "inf",
        "nan",
    }
)
NUMPY_MODULES = frozenset({"np", "numpy"})
ARRAY_ATTRIBUTES = frozenset({"shape", "dtype", "ndim", "size", "T", "real", "imag"})
ARRAY_METHODS = frozenset(
    {
        "all",
        "any",
        "argmax",
        "argmin",
        "astype",
        "copy",
        "flatten",
        "item",
        "max",
        "mean",
        "min",
        "prod",
        "ravel",
        "reshape",
        "round",
        "squeeze",
        "std",
        "sum",
        "tolist",
        "transpose",
        "var",
    }
)
OPERATIONS = (ast.Compare, ast.BoolOp, ast.UnaryOp, ast.BinOp, ast.Tuple, ast.List, ast.Set)


def asserts_of(tree):
    """The assert statements of a cell's syntax tree, numbered in source order."""
    found = [node for node in ast.walk(tree) if isinstance(node, ast.Assert)]
    return sorted(found, key=lambda node: (node.lineno, node.col_offset))


def is_static(index):
    """A subscript the grader can take itself: constants, negative constants, slices and tuples of them."""
    if isinstance(index, ast.Constant):
        return isinstance(index.value, int | type(None))
    if isinstance(index, ast.UnaryOp) and isinstance(index.op, ast.USub):
        return is_static(index.operand)
    if isinstance(index, ast.Slice):
        return all(part is None or is_static(part) for part in (index.lower, index.upper, index.step))
    if isinstance(index, ast.Tuple):
        return all(is_static(part) for part in index.elts)
    return False


def numpy_name(node):
    """`np.allclose` -> "allclose"; None when `node` is not such an attribute."""
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in NUMPY_MODULES
    ):
        return node.attr
    return None


def evaluated_parts(node, rules=()):
    """The sub-expressions of `node` the grader evaluates too, or None when `node` is a leaf.

    `rules` names the functions whose calls the grader computes itself by a rule
    (testcells.RULES): such a call is a leaf, but its arguments are what is recorded.
    """
    if isinstance(node, ast.Constant):
        return []
    if isinstance(node, OPERATIONS):
        return [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr)]
    if isinstance(node, ast.Attribute):
        if numpy_name(node) is not None:
            return [] if numpy_name(node) in NUMPY_NAMES else None
        return [node.value] if node.attr in ARRAY_ATTRIBUTES else None
    if isinstance(node, ast.Subscript):
        return [node.value] if is_static(node.slice) else None
    if isinstance(node, ast.Call):
        arguments = [*node.args, *(keyword.value for keyword in node.keywords)]
        if any(isinstance(arg, ast.Starred) for arg in node.args) or any(
            k.arg is None for k in node.keywords
        ):
            return None
        function = node.func
        if isinstance(function, ast.Name) and function.id in BUILTINS and function.id not in rules:
            return arguments
        if numpy_name(function) in NUMPY_NAMES:
            return arguments
        if (
            isinstance(function, ast.Attribute)
            and function.attr in ARRAY_METHODS
            and not numpy_name(function)
        ):
            return [function.value, *arguments]
        return None
    return None


def split(test, rules=()):
    """The leaves of an assert's condition, in the order Python evaluates them."""
    leaves = []

    def visit(node):
        parts = evaluated_parts(node, rules)
        if parts is None:
            leaves.append(node)
        else:
            for part in parts:
                visit(part)

    visit(test)
    return leaves


def rule_call(leaf, rules):
    """The rule's name when `leaf` is a call of a function that a rule computes, else None."""
    if isinstance(leaf, ast.Call) and isinstance(leaf.func, ast.Name) and leaf.func.id in rules:
        return leaf.func.id
    return None


class Instrument(ast.NodeTransformer):
    """Rewrite each assert so that its leaves are recorded and its condition's end is an event."""

    def __init__(self, rules):
        self.rules = rules
        self.numbers = {}

    def visit_Module(self, tree):
        self.numbers = {id(node): number for number, node in enumerate(asserts_of(tree))}
        return self.generic_visit(tree)

    def visit_Assert(self, node):
        number = self.numbers[id(node)]
        leaves = {id(leaf): index for index, leaf in enumerate(split(node.test, self.rules))}
        test = WrapLeaves(leaves, lambda index, leaf: self.record_leaf(number, index, leaf)).visit(node.test)
        node.test = self.call("finish", [ast.Constant(number), test], node.test)
        return node

    def record_leaf(self, number, index, leaf):
        if rule_call(leaf, self.rules):
            # The grader computes this call itself: the kernel records its arguments only.
            arguments = ast.List(elts=list(leaf.args), ctx=ast.Load())
            keywords = ast.Dict(
                keys=[ast.Constant(k.arg) for k in leaf.keywords], values=[k.value for k in leaf.keywords]
            )
            return self.call("rule", [ast.Constant(number), ast.Constant(index), arguments, keywords], leaf)
        return self.call("leaf", [ast.Constant(number), ast.Constant(index), leaf], leaf)

    @staticmethod
    def call(method, arguments, where):
        function = ast.Attribute(value=ast.Name(id=RECORDER, ctx=ast.Load()), attr=method, ctx=ast.Load())
        return ast.copy_location(ast.Call(func=function, args=arguments, keywords=[]), where)


class WrapLeaves(ast.NodeTransformer):
    """Replace each of `leaves` (id -> index) by what `record(index, leaf)` makes of it."""

    def __init__(self, leaves, record):
        self.leaves = leaves
        self.record = record

    def visit(self, node):
        if id(node) in self.leaves:
            return self.record(self.leaves[id(node)], node)
        return self.generic_visit(node)


class Recorder:
    """The kernel's side: armed for one cell, it instruments it and writes its events.

    `arm(grade_id, rules)` makes the next cell IPython runs record into
    `<folder>/<grade_id>.jsonl`, one JSON line per finished assert condition.
    """

    def __init__(self, folder):
        self.folder = folder
        self.armed = None
        self.file = None
        self.written = 0
        self.pending = {}
        self.pending_number = None
        self.ids = {}
        self.kept = []  # objects given an id, so that no other object takes their id()

    def arm(self, grade_id, rules=()):
        self.armed = (grade_id, tuple(rules))

    # IPython's AST transformer interface
    def visit(self, tree):
        if self.armed is None:
            return tree
        grade_id, rules = self.armed
        self.armed = None
        self.start(grade_id)
        try:
            return ast.fix_missing_locations(Instrument(rules).visit(tree))
        except Exception:  # a cell that cannot be instrumented runs as written and records nothing
            return tree

    def start(self, grade_id):
        if self.file is not None:
            self.file.close()
        os.makedirs(self.folder, exist_ok=True)
        self.file = open(os.path.join(self.folder, f"{grade_id}.jsonl"), "w", encoding="utf-8")  # noqa: SIM115
        self.written, self.pending, self.pending_number, self.ids, self.kept = 0, {}, None, {}, []

    # called by the instrumented cell
    def leaf(self, number, index, value):
        self.keep(number, index, self.plain(value))
        return value

    def rule(self, number, index, arguments, keywords):
        self.keep(number, index, {"rule": [self.plain(arguments), self.plain(keywords)]})
        return float("nan")  # the grader computes the real value; the kernel need not spend the time

    def keep(self, number, index, plain):
        if self.pending_number != number:  # an assert whose condition raised leaves nothing behind
            self.pending, self.pending_number = {}, number
        self.pending[index] = plain

    def finish(self, number, result):
        try:
            passed = bool(result)
        except Exception:
            passed = False
        self.write(
            {"assert": number, "leaves": {str(k): v for k, v in self.pending.items()}, "passed": passed}
        )
        self.pending, self.pending_number = {}, None
        return result

    def write(self, event):
        if self.file is None or self.written > MAX_FILE_BYTES:
            return
        line = json.dumps(event) + "\n"
        self.written += len(line)
        self.file.write(line if self.written <= MAX_FILE_BYTES else '{"overflow": true}\n')
        self.file.flush()

    def plain(self, value, depth=0):
        """`value` as JSON-ready plain data (see the module's docstring)."""
        try:
            return self.convert(value, depth)
        except Exception as error:  # an object that breaks on inspection is recorded as such
            return {"object": "unrecordable", "error": type(error).__name__}

    def convert(self, value, depth):
        if depth > MAX_DEPTH:
            return {"object": "too deep"}
        kind = type(value)
        # Numbers and strings by their own value, through the base class's methods: a subclass's
        # overrides (an __eq__ that says yes to anything, say) never reach the record.
        if value is None or kind is bool:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            number = int.__index__(value)
            return number if abs(number) < 2**63 else {"bigint": str(number)[:100]}
        if isinstance(value, float):
            number = float.__float__(value)
            return number if number == number and abs(number) != float("inf") else {"float": repr(number)}
        if isinstance(value, str):
            text = str.__str__(value)
            return text if len(text) <= MAX_TEXT else {"str": text[:MAX_TEXT], "cut": len(text)}
        if isinstance(value, numpy.ndarray | numpy.generic) and value.dtype.kind in "biufc":
            array = numpy.asarray(value)  # (ascontiguousarray would make 0-d arrays 1-d)
            return {
                "array": array.dtype.str,
                "shape": list(array.shape),
                "scalar": isinstance(value, numpy.generic),
                "data": base64.b64encode(array.tobytes(order="C")).decode("ascii"),
            }
        if isinstance(value, numpy.dtype):
            return {"dtype": value.str}
        if isinstance(value, type):
            return {
                "class": value.__name__,
                "mro": [c.__name__ for c in value.__mro__],
                "numpy": numpy.dtype(value).str if issubclass(value, numpy.generic) else None,
            }
        if kind in (list, tuple, set, frozenset):
            items = list(value)[:MAX_ITEMS]
            return {
                kind.__name__ if kind is not frozenset else "set": [
                    self.plain(item, depth + 1) for item in items
                ]
            }
        if kind is dict:
            items = list(value.items())[:MAX_ITEMS]
            return {"dict": [[self.plain(k, depth + 1), self.plain(v, depth + 1)] for k, v in items]}
        return self.describe(value, depth)

    def describe(self, value, depth):
        """An object the grader never gets: its type, an id within this cell, and its graph or fields."""
        if id(value) in self.ids:
            return {"ref": self.ids[id(value)]}
        if len(self.ids) >= MAX_NODES:
            return {"object": "too many objects"}
        self.ids[id(value)] = number = len(self.ids)
        self.kept.append(value)
        kind = type(value)
        found = {"object": kind.__name__, "mro": [c.__name__ for c in kind.__mro__][:20], "id": number}
        inbound = getattr(value, "inbound_nodes", None)
        if isinstance(inbound, list | tuple):  # a miniflow node: where it sits in the graph
            found["inputs"] = [self.plain(node, depth + 1) for node in list(inbound)[:20]]
        fields = getattr(kind, "_fields", None)
        if isinstance(value, tuple) and isinstance(fields, tuple):  # a named tuple: Settings, Network
            pairs = zip(fields, value, strict=False)
            found["fields"] = {str(name): self.plain(item, depth + 1) for name, item in pairs}
        return found


def install(ipython, folder):
    """Set up recording in this kernel: the Recorder as RECORDER, and its AST transformer."""
    recorder = Recorder(folder)
    ipython.user_ns[RECORDER] = recorder
    ipython.ast_transformers.append(recorder)
    return recorder
