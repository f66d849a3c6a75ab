"""Fixtures of the browser tests: a JupyterLab server, Chromium, and course folders.

Each test gets its own folder under the server's root, laid out as a
student's assignment folder: a release notebook next to a copy of a package
(the reference or the starter) as `miniflow/`. Debian's Chromium is driven
through Playwright; without either, the tests are skipped, except on CI
(CI=true), where that is a failure.
"""

import os
import re
import shutil

import pytest
from conftest import ROOT

from .jupyter_driver import CHROMIUM, CHROMIUM_ARGS, JupyterServer

ARTIFACTS = ROOT / "test-artifacts"


def missing(reason):
    if os.environ.get("CI"):
        pytest.fail(f"browser tests cannot run on CI: {reason}")
    pytest.skip(reason)


# Module scope: Playwright's synchronous driver keeps an asyncio loop marked as
# running in this thread while it is open, which would break asyncio.run() in
# the tests collected after these.
@pytest.fixture(scope="module")
def playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install playwright)")
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def server_root(tmp_path_factory):
    return tmp_path_factory.mktemp("courses")


@pytest.fixture(scope="module")
def jupyter(server_root, tmp_path_factory, playwright):
    server = JupyterServer(server_root, tmp_path_factory.mktemp("jupyter-state"))
    yield server
    server.stop()


@pytest.fixture
def page(playwright, tmp_path):
    """A page of a Chromium with a fresh profile."""
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "chromium-profile"),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1400, "height": 1000},
    )
    page = context.pages[0] if context.pages else context.new_page()
    yield page
    context.close()


@pytest.fixture
def course(jupyter, request):
    """Call course(package, notebook) for a fresh folder holding a copy of the notebook and the package.

    The package (REFERENCE or STARTER) is copied as `miniflow/` beside the
    notebook, so the kernel, started in that folder, imports it; nothing is
    installed and solutions/ is never on sys.path. Returns the notebook's
    path relative to the server's root.
    """
    folder = jupyter.root / re.sub(r"[^\w-]+", "-", request.node.name).strip("-")

    def make(package, notebook):
        shutil.copytree(package, folder / "miniflow", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(notebook, folder / notebook.name)
        return f"{folder.name}/{notebook.name}"

    return make


@pytest.fixture
def screenshot(page, request):
    """Call screenshot() to save the page as test-artifacts/<test name>.png.

    screenshot("-more") saves test-artifacts/<test name>-more.png.
    """
    ARTIFACTS.mkdir(exist_ok=True)
    name = request.node.name.replace("[", "-").replace("]", "")

    def save(suffix=""):
        page.screenshot(path=str(ARTIFACTS / f"{name}{suffix}.png"), full_page=True)

    return save
