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
    """A JupyterLab server serving `root`; stop() ends it."""

    def __init__(self, root, state_dir):
        self.root = Path(root)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        state_dir = Path(state_dir)
        env = {
            **os.environ,
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
                sys.executable,
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
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.wait_until_up()

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def url(self, path):
        return f"{self.base}/{path}?token={self.token}"

    def wait_until_up(self, timeout=60):
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
    """A python3 notebook with one code cell per string in `cells`."""
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
    sent then can be lost (DESIGN.md section 5). So this waits for the
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
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()


def run_all_cells(page):
    """Run → Run All Cells, from the menu bar (the same in JupyterLab and Notebook 7)."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def wait_for_cells_done(page, timeout=120_000):
    """Wait until no cell shows [*] and the kernel is idle again."""
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-InputArea-prompt')];
            return prompts.length > 0 && prompts.every(p => !p.textContent.includes('*'))
                && prompts.some(p => /\\d/.test(p.textContent));
        }""",
        timeout=timeout,
    )
