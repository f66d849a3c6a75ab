"""Sample submissions with known outcomes: the reference, the starter, and typical mistakes and attacks.

Each sample is a folder here: `manifest.json` and the files of its `miniflow/`
package that differ from its base, the reference (solutions/miniflow) or the
starter (miniflow_starter/miniflow). The manifest says:

    description      what the sample does, in one sentence
    base             "reference" or "starter"
    needs_isolation  true when the expected outcomes hold only in the sandbox

    folder = materialise("ce_summed", tmp_path / "ce_summed")
"""

import json
import shutil
from pathlib import Path

from ..sandbox import COURSE_ROOT

SAMPLES = Path(__file__).parent
BASES = {
    "reference": COURSE_ROOT / "solutions" / "miniflow",
    "starter": COURSE_ROOT / "miniflow_starter" / "miniflow",
}


def names():
    return sorted(path.parent.name for path in SAMPLES.glob("*/manifest.json"))


def manifest(name):
    return json.loads((SAMPLES / name / "manifest.json").read_text())


def materialise(name, destination):
    """Write sample `name` as a submission folder at `destination` (holding `miniflow/`); return it."""
    destination = Path(destination)
    package = destination / "miniflow"
    shutil.copytree(BASES[manifest(name)["base"]], package, ignore=shutil.ignore_patterns("__pycache__"))
    changed = SAMPLES / name / "miniflow"
    if changed.is_dir():
        shutil.copytree(changed, package, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    return destination
