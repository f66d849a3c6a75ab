"""Drive a real JupyterLab (or Notebook 7) in Debian's Chromium, for the browser tests.

The server runs on 127.0.0.1 with a token and its own settings and
workspace folders, so nothing of the user's JupyterLab set-up leaks in.
"""

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class JupyterServer:
    """A JupyterLab server serving `root`; stop() ends it.

    `extra_args` are added to the command line, e.g. to turn a server
    extension off; `env` is the environment to start from (default: this
    process's), the driver's own settings added; `python` is the
    environment's interpreter. It starts in `root`, as a user starts it
    (nbgrader's assignment list fetches into the server's working folder).
    """

    def __init__(self, root, state_dir, extra_args=(), env=None, python=sys.executable):
        self.root = Path(root)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        state_dir = Path(state_dir)
        env = {
            **(os.environ if env is None else env),
            "JUPYTER_CONFIG_DIR": str(state_dir / "config"),
            "JUPYTER_RUNTIME_DIR": str(state_dir / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(state_dir / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(state_dir / "workspaces"),
            "PYTHONWARNINGS": "ignore",
        }
        # No news pop-up: it would cover the notebook.
        announcements = state_dir / "settings" / "@jupyterlab" / "apputils-extension"
        announcements.mkdir(parents=True, exist_ok=True)
        (announcements / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        self.log = open(state_dir / "jupyter.log", "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [
                str(python),
                "-m",
                "jupyterlab",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={self.root}",
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                *(["--allow-root"] if os.geteuid() == 0 else []),
                *extra_args,
            ],
            cwd=self.root,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            self.wait_until_up()
        except BaseException:
            self.stop()
            raise

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def url(self, path):
        return f"{self.base}/{path}?token={self.token}"

    def wait_until_up(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.process.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"jupyter lab did not answer within {timeout} s; see {self.log.name}")

    def api(self, path):
        with urllib.request.urlopen(self.url(f"api/{path}"), timeout=10) as response:
            return json.load(response)

    def wait_for_connected_kernel(self, notebook_path, timeout=90):
        """Wait until the notebook's kernel is idle and a browser is connected to it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for session in self.api("sessions"):
                kernel = session.get("kernel") or {}
                if (
                    session.get("path") == notebook_path
                    and kernel.get("connections", 0) >= 1
                    and kernel.get("execution_state") == "idle"
                ):
                    return
            time.sleep(0.3)
        raise TimeoutError(f"no connected idle kernel for {notebook_path} within {timeout} s")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def write_notebook(path, cells):
    """A python3 notebook with one code cell per string in `cells` (for benchmarks/widget_latency.py)."""
    notebook = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}
            for source in cells
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(notebook, indent=1))


def open_notebook(page, server, path, ui="lab", workspace="test"):
    """Open the notebook at `path` (relative to the server root) and wait for its kernel.

    The toolbar can say "idle" before the kernel is connected, and a Run All
    sent then can be lost. So this waits for the
    server to count a connection to the notebook's kernel and for the page
    to say "Idle": JupyterLab's status bar, or Notebook 7's execution
    indicator. Each test gets its own JupyterLab workspace, so no notebook
    of an earlier test is reopened beside it.
    """
    route = f"lab/workspaces/{workspace}/tree/{path}" if ui == "lab" else f"notebooks/{path}"
    page.goto(server.url(route))
    server.wait_for_connected_kernel(path)
    if ui == "lab":
        page.locator(".jp-StatusBar-TextItem", has_text="Idle").first.wait_for(timeout=60_000)
    else:
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=60_000)
    # The notebook adds its cells to the page a few at a time: wait for all of them.
    count = len(server.api(f"contents/{urllib.parse.quote(path)}")["content"]["cells"])
    page.wait_for_function(
        "(count) => document.querySelectorAll('.jp-Notebook .jp-Cell').length === count",
        arg=count,
        timeout=60_000,
    )


# The state of every cell, in order: code or not, its prompt, and whether it
# shows a traceback. JupyterLab 4 and Notebook 7 keep every cell in the page,
# so indices are the notebook's cell indices; but off-screen cells are not
# laid out, so read them with textContent (Playwright's text_content()):
# their innerText is empty.
CELL_STATES = """() => [...document.querySelectorAll('.jp-Notebook .jp-Cell')].map(cell => ({
    code: cell.classList.contains('jp-CodeCell'),
    prompt: (cell.querySelector('.jp-InputArea-prompt') || {textContent: ''}).textContent,
    traceback: [...cell.querySelectorAll('.jp-OutputArea-output')]
        .some(output => /Traceback/.test(output.textContent)),
}))"""


def cells(page):
    """The notebook's cells (code and markdown), in order."""
    return page.locator(".jp-Notebook .jp-Cell")


def cell_states(page):
    return page.evaluate(CELL_STATES)


def execution_count(state):
    digits = "".join(ch for ch in state["prompt"] if ch.isdigit())
    return int(digits) if digits else None


def wait_until_ran(page, index, after, timeout=120_000):
    """Wait until cell `index` has an execution count above `after` and no cell shows [*]."""
    page.wait_for_function(
        f"""([index, after]) => {{
            const states = ({CELL_STATES})();
            const count = parseInt(states[index].prompt.replace(/\\D/g, ''), 10);
            return count > after && states.every(s => !s.prompt.includes('*'));
        }}""",
        arg=[index, after],
        timeout=timeout,
    )


def select_cell(page, index):
    """Select cell `index` in command mode, by clicking beside its input."""
    cells(page).nth(index).locator(".jp-InputPrompt").first.click()


def run_cell(page, index, timeout=120_000):
    """Run code cell `index` alone (Ctrl+Enter in command mode) and wait until it has run."""
    highest = max((execution_count(s) or 0 for s in cell_states(page)), default=0)
    select_cell(page, index)
    page.keyboard.press("Control+Enter")
    wait_until_ran(page, index, highest, timeout=timeout)


def run_all_cells(page, timeout=120_000):
    """Run every code cell from the top, one at a time; return the indices of those that raised.

    This is a student pressing Ctrl+Enter on each cell in turn, not Run → Run
    All Cells: that stops at the first cell that raises, and a release
    notebook's test cells raise until its exercises are done. Going on with
    Run Selected Cell and All Below is not reliable either: after an error
    the kernel (ipykernel 7) drops only the requests that reached it before
    the error, and under load the browser sends them late, so some later
    cells ran and some did not, even out of order. Run one at a time, each
    cell starts after the one before it has finished.
    """
    raised = []
    for index, state in enumerate(cell_states(page)):
        if state["code"]:
            run_cell(page, index, timeout=timeout)
            if cell_states(page)[index]["traceback"]:
                raised.append(index)
    return raised


def set_cell_source(page, index, source):
    """Replace the text of code cell `index` as a student would: select all of it and type."""
    editor = cells(page).nth(index).locator(".cm-content")
    editor.click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.insert_text(source)
