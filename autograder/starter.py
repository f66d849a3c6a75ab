"""Generate the students' starter package from the reference solution.

`solutions/miniflow/` is the single source of truth. Every region between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` in it becomes a stub that
raises ``NotImplementedError("<Class>.<method>: <hint>")``; the hint is the
``# hint:`` comment that must open each region. Everything else is copied
unchanged.
"""

import ast
import shutil
from pathlib import Path

from .trees import differing_files

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
HINT = "# hint:"


class StarterError(ValueError):
    """A solution file cannot be turned into a starter; the message names file and line."""


def enclosing_functions(tree):
    """Map each line number inside a function to the function's qualified name."""
    names = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    for line in range(child.lineno, child.end_lineno + 1):
                        names[line] = name
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return names


def stub_source(source, filename="<source>"):
    """Return `source` with each solution region replaced by a NotImplementedError stub."""
    functions = enclosing_functions(ast.parse(source, filename))
    lines = source.splitlines(keepends=True)
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == END:
            raise StarterError(f"{filename}:{i + 1}: {END} without {BEGIN}")
        if line.strip() != BEGIN:
            out.append(line)
            i += 1
            continue
        start = i
        try:
            end = next(j for j in range(start + 1, len(lines)) if lines[j].strip() in (BEGIN, END))
        except StopIteration:
            raise StarterError(f"{filename}:{start + 1}: {BEGIN} is never closed") from None
        if lines[end].strip() != END:
            raise StarterError(f"{filename}:{end + 1}: {BEGIN} inside another solution region")
        hint = lines[start + 1].strip() if start + 1 < end else ""
        if not hint.startswith(HINT):
            raise StarterError(f"{filename}:{start + 2}: a solution region must open with '{HINT} ...'")
        if start + 1 not in functions:
            raise StarterError(f"{filename}:{start + 1}: a solution region must sit inside a function")
        indent = line[: len(line) - len(line.lstrip())]
        message = f"{functions[start + 1]}: {hint[len(HINT):].strip()}"
        out.append(f"{indent}# YOUR CODE HERE: replace the line below.\n")
        out.append(f"{indent}raise NotImplementedError({message!r})\n")
        i = end + 1
    result = "".join(out)
    ast.parse(result, filename)
    return result


def build_starter(solution_package, starter_package):
    """Write the starter package generated from `solution_package` (a folder) to `starter_package`."""
    solution_package, starter_package = Path(solution_package), Path(starter_package)
    if starter_package.exists():
        shutil.rmtree(starter_package)
    for source in sorted(solution_package.rglob("*")):
        if "__pycache__" in source.parts or source.is_dir():
            continue
        target = starter_package / source.relative_to(solution_package)
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix == ".py":
            target.write_text(stub_source(source.read_text(), str(source)))
        else:
            shutil.copyfile(source, target)


def stale_files(solution_package, starter_package, scratch):
    """Files that differ between `starter_package` and a fresh build of it in `scratch`."""
    build_starter(solution_package, scratch)
    return differing_files(scratch, starter_package)
