"""What nbgrader needs from the process environment."""

import os
import sys
from pathlib import Path


def put_environment_bin_on_path():
    """Put this Python environment's bin first on PATH: nbgrader runs alembic from there."""
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + path
