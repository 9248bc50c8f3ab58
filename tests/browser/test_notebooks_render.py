"""The book as a reader sees it: JupyterLab in headless Chromium."""

from pathlib import Path

import pytest

import ksmbook

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
TITLE = "ksmbook: how Linux shares memory"


def test_index_notebook_renders(screenshot_notebook):
    out = SCREENSHOTS / "00_index.png"
    out.unlink(missing_ok=True)
    report = screenshot_notebook("00_index.ipynb", out)

    assert out.is_file() and out.stat().st_size > 10_000, "no screenshot written"
    assert report.title == TITLE
    assert TITLE in report.text
    # Outputs were cleared before Run All, so this line comes from a live run.
    assert f"ksmbook {ksmbook.__version__}" in report.text
    assert report.run_all_result == "ok"
    assert report.error_outputs == []
    assert report.stderr_tracebacks == []
    assert report.page_errors == []
