"""Compare generated folders with their committed copies."""

import filecmp
from pathlib import Path

IGNORED_PARTS = {"__pycache__", ".ipynb_checkpoints"}


def files_under(folder):
    """Relative paths of the files under `folder`, leaving out caches."""
    folder = Path(folder)
    return {
        path.relative_to(folder)
        for path in folder.rglob("*")
        if path.is_file() and not IGNORED_PARTS & set(path.parts)
    }


def differing_files(expected, actual):
    """Paths present in only one of the two folders or with different bytes, sorted."""
    expected_files, actual_files = files_under(expected), files_under(actual)
    changed = {
        path
        for path in expected_files & actual_files
        if not filecmp.cmp(Path(expected) / path, Path(actual) / path, shallow=False)
    }
    return sorted(str(path) for path in (expected_files ^ actual_files) | changed)
