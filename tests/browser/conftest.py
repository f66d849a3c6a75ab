"""Fixtures of the browser tests: a JupyterLab server, Chromium, and notebook folders.

The server's root holds one folder per package under test, each with a copy
of that package as `miniflow/` next to the notebooks the tests write, as a
student's assignment folder has it. Debian's Chromium is driven through
Playwright; without either, the tests are skipped, except on CI (CI=true),
where that is a failure.
"""

import os
import shutil

import pytest
from conftest import REFERENCE, ROOT, STARTER

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
def notebook_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("notebooks")
    for name, package in (("reference", REFERENCE), ("starter", STARTER)):
        shutil.copytree(package, root / name / "miniflow", ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture(scope="module")
def jupyter(notebook_root, tmp_path_factory, playwright):
    server = JupyterServer(notebook_root, tmp_path_factory.mktemp("jupyter-state"))
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
def screenshot(page, request):
    """Call screenshot() to save the page as test-artifacts/<test name>.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    name = request.node.name.replace("[", "-").replace("]", "")

    def save():
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    return save
