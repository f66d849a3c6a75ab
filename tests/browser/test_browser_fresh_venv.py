"""A student's set-up, as the release's README gives it: a fresh venv, `pip install -r requirements.txt`
run in the release folder with no node on PATH, then `jupyter lab`. The Exercises panel must show in
Chromium, listing the starter's exercises, with the extension's server parts enabled and nbgrader's
instructor menus hidden (the Assignment List stays).

pip uses its cache and the registries configured for it. The set-up's times are printed (pytest -s).
"""

import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from conftest import ROOT

from .jupyter_driver import JupyterServer

pytestmark = [pytest.mark.slow, pytest.mark.browser]

RELEASE = ROOT / "release" / "miniflow-lab"
PANEL = "#miniflow-exercises"
NOTEBOOKS = sorted(path.name for path in RELEASE.glob("*.ipynb"))
COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def student_environment(venv, scratch):
    """What a student's terminal has after `source venv/bin/activate`: that bin alone on PATH (no node)."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name != "VIRTUAL_ENV" and not name.startswith(("PYTHON", "JUPYTER"))
    }
    environment["PATH"] = str(venv / "bin")
    # Nothing of the user's Jupyter set-up (~/.jupyter, ~/.local/share/jupyter).
    environment["JUPYTER_CONFIG_DIR"] = str(scratch / "jupyter-config")
    environment["JUPYTER_DATA_DIR"] = str(scratch / "jupyter-data")
    assert shutil.which("node", path=environment["PATH"]) is None
    return environment


def run(command, folder, environment, timeout=300, needs=""):
    result = subprocess.run(
        command, cwd=folder, env=environment, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} failed{needs}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def fresh_lab(tmp_path_factory, playwright):
    """The release set up in a fresh venv as its README says, and that venv's JupyterLab serving it."""
    scratch = tmp_path_factory.mktemp("fresh-venv")
    lab, venv = scratch / "miniflow-lab", scratch / "venv"
    shutil.copytree(RELEASE, lab)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    environment = student_environment(venv, scratch)
    made = time.monotonic()
    python = venv / "bin" / "python"
    install = [python, "-m", "pip", "install", "--quiet", "-r", "requirements.txt"]
    run(install, lab, environment, timeout=1200, needs=" (it needs PyPI, or pip's cache of the packages)")
    installed = time.monotonic()
    server = JupyterServer(lab, scratch / "jupyter-state", env=environment, python=python)
    print(
        f"\nfresh venv: made in {made - started:.1f} s, requirements installed in {installed - made:.1f} s,"
        f" jupyter lab up in {time.monotonic() - installed:.1f} s"
    )
    yield venv, environment, server
    server.stop()


def test_the_extensions_server_parts_are_enabled(fresh_lab):
    venv, environment, _ = fresh_lab
    listed = COLOUR.sub("", run([venv / "bin" / "jupyter", "server", "extension", "list"], venv, environment))
    for extension in ("jupyterlab_miniflow", "jupyterlab_miniflow.kernel_websocket"):
        assert any(line.split()[:2] == [extension, "enabled"] for line in listed.splitlines()), listed


def test_the_exercises_panel_shows_in_jupyterlab(fresh_lab, page, screenshot):
    _, _, server = fresh_lab
    page.goto(server.url("lab"))
    page.locator(f".jp-SideBar .lm-TabBar-tab[data-id='{PANEL[1:]}']").click()
    page.locator(f"{PANEL} .jp-miniflow-state[data-checking='false']").wait_for(timeout=60_000)
    page.locator(f"{PANEL} .jp-miniflow-exercise[data-status='not implemented']").first.wait_for(
        timeout=120_000
    )
    page.locator(f"{PANEL} .jp-miniflow-state[data-checking='false']").wait_for(timeout=120_000)
    sections = page.locator(f"{PANEL} section.jp-miniflow-notebook")
    assert [sections.nth(i).get_attribute("data-notebook") for i in range(sections.count())] == NOTEBOOKS
    rows = page.locator(f"{PANEL} .jp-miniflow-exercise")
    assert rows.count() > len(NOTEBOOKS)
    assert {rows.nth(i).get_attribute("data-status") for i in range(rows.count())} == {"not implemented"}
    screenshot()

    page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click()
    menu = page.locator(".lm-Menu-content").first.inner_text()
    assert "Assignment List" in menu
    assert "Formgrader" not in menu
    assert "Course List" not in menu
    screenshot("-nbgrader-menu")
