"""Fixtures for browser tests: a throw-away JupyterLab and headless Chromium.

    def test_x(screenshot_notebook):
        report = screenshot_notebook("00_index.ipynb", "build/screenshots/00_index.png")

`screenshot_notebook(name, out_png, run_all=True)` opens notebooks/<name> in
JupyterLab, clears and runs all cells, waits for the kernel to go idle, saves a
full-height PNG and returns a `labshot.NotebookReport` (title, text, error
outputs, stderr tracebacks, JavaScript errors). The repository's notebooks are
never written (autosave is off; checkpoints go to a temporary dir).

Without /usr/bin/chromium or the playwright package every browser test is
skipped with a loud reason (shown by -ra); set KSMBOOK_REQUIRE_BROWSER=1 to
make that a failure instead.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import labshot  # noqa: E402

SCREENSHOTS = REPO / "build" / "screenshots"


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser_ready():
    problem = labshot.browser_problem()
    if problem:
        msg = f"BROWSER TESTS NOT RUN: {problem}"
        if os.environ.get("KSMBOOK_REQUIRE_BROWSER") == "1":
            pytest.fail(msg + " (KSMBOOK_REQUIRE_BROWSER=1)", pytrace=False)
        pytest.skip(msg)
    return True


@pytest.fixture(scope="session")
def lab(browser_ready):
    """A JupyterLab server rooted at <repo>/notebooks, for the whole session."""
    with labshot.jupyter_lab(REPO / "notebooks") as server:
        yield server


@pytest.fixture(scope="session")
def chromium(browser_ready):
    """One headless Debian Chromium (Playwright), shared by the session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=labshot.CHROMIUM, headless=True,
                                     args=labshot.CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def screenshot_notebook(lab, chromium):
    """screenshot_notebook(name, out_png, run_all=True) -> labshot.NotebookReport"""
    return functools.partial(labshot.screenshot_notebook, lab, browser=chromium)
