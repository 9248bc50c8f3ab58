"""Chapters 01-05 as a reader sees them: JupyterLab in headless Chromium.

Each chapter is run from a clean kernel (Run All), screenshotted to
build/screenshots/<chapter>.png, and must show no error output, no traceback and
no JavaScript error.  One test then clicks the ksmd stepper's buttons in the
browser, which checks the whole loop: button -> kernel -> simulator -> FigureWidget
update -> plotly.js drawing.
"""
from pathlib import Path

import pytest

import labshot

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"

CHAPTERS = {
    "01_page_tables_and_faults": ("01 · Page tables and faults", 4),
    "02_copy_on_write_and_fork": ("02 · Copy-on-write and fork()", 6),
    "03_ksmd_checksums_and_the_unstable_tree": ("03 · ksmd, checksums and the unstable tree", 6),
    "04_stable_tree_chains_max_page_sharing": ("04 · The stable tree, chains and max_page_sharing", 5),
    "05_zero_pages_and_smart_scan": ("05 · Zero pages and smart scan", 4),
}


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_chapter_runs_clean_in_jupyterlab(screenshot_notebook, chapter):
    title, min_plots = CHAPTERS[chapter]
    out = SCREENSHOTS / f"{chapter}.png"
    out.unlink(missing_ok=True)
    report = screenshot_notebook(f"{chapter}.ipynb", out)

    assert out.is_file() and out.stat().st_size > 50_000, "no screenshot written"
    assert report.title == title
    assert report.run_all_result == "ok"
    assert report.error_outputs == []
    assert report.stderr_tracebacks == []
    assert report.page_errors == []
    for heading in ("What you will see", "What is easy to get wrong", "Exercises"):
        assert heading in report.text
    # outputs were cleared before Run All: this text comes from the live kernel
    assert "Not attempted yet" in report.text
    # every plotly figure drew its title (static figures and FigureWidgets alike)
    assert report.text.count("\n") > 100
    assert sum(report.text.count(t) for t in (
        "Page walk of", "Physical frames", "Who maps what", "KSM's trees", "counters",
        "After", "Before", "max_page_sharing=3", "smart_scan=1", "Two processes",
        "use_zero_pages=1")) >= min_plots


_JS_SHUTDOWN_SESSIONS = """async (name) => {
  const sessions = window.jupyterapp.serviceManager.sessions;
  await sessions.refreshRunning();
  for (const m of [...sessions.running()])
    if (m.path.endsWith(name)) await sessions.shutdown(m.id);
}"""


def _open_and_run(lab, chromium, name, timeout_ms=300_000):
    """Open ``name`` in a fresh kernel and Run All.

    An earlier test of the session may have left this notebook's kernel running, with
    its widgets; a reader starts from a new kernel, so that session is shut down first.
    """
    context = chromium.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{lab.url}/lab?reset", wait_until="domcontentloaded", timeout=timeout_ms)
    page.wait_for_function("() => window.jupyterapp && "
                           "window.jupyterapp.serviceManager.sessions.isReady", timeout=timeout_ms)
    page.evaluate(_JS_SHUTDOWN_SESSIONS, name)
    page.goto(f"{lab.url}/lab/tree/{name}?reset", wait_until="domcontentloaded",
              timeout=timeout_ms)
    page.wait_for_function(labshot._JS_READY, timeout=timeout_ms)
    page.evaluate(labshot._JS_RUN_ALL)
    page.wait_for_function(labshot._JS_RUN_DONE, timeout=timeout_ms, polling=250)
    assert page.evaluate("() => window.__ksmbookRunAll") == "ok"
    return context, page, errors


def test_stepper_buttons_drive_ksmd_and_redraw_the_figures(lab, chromium):
    context, page, errors = _open_and_run(lab, chromium,
                                          "03_ksmd_checksums_and_the_unstable_tree.ipynb")
    try:
        app = page.locator(".ksmbook-stepper").first
        app.scroll_into_view_if_needed()
        events = app.locator(".ksmbook-events")
        mappings = app.locator(".ksmbook-view-mappings")
        mappings.locator(".main-svg").first.wait_for(timeout=60_000)     # plotly drew it
        assert "mapcount 4" not in mappings.inner_text()

        app.locator("button.ksmbook-full-scan").click()
        page.wait_for_function(
            "() => document.querySelector('.ksmbook-stepper .ksmbook-events')"
            ".innerText.includes('full_scans=1')", timeout=60_000)
        app.locator("button.ksmbook-full-scan").click()
        page.wait_for_function(
            "() => document.querySelector('.ksmbook-stepper .ksmbook-events')"
            ".innerText.includes('try_to_merge_two_pages()')", timeout=60_000)
        page.wait_for_function(
            "() => document.querySelector('.ksmbook-stepper .ksmbook-view-mappings')"
            ".textContent.includes('mapcount 4')", timeout=60_000)
        assert "pages_sharing" in app.locator(".ksmbook-counters").inner_text()
        trees = app.locator(".ksmbook-view-trees").text_content()
        assert "Stable tree: 1 KSM page" in trees and "4 sharers" in trees
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        app.screenshot(path=str(SCREENSHOTS / "03_stepper_after_two_full_scans.png"))

        app.locator("button.ksmbook-reset").click()
        page.wait_for_function(
            "() => document.querySelector('.ksmbook-stepper .ksmbook-view-trees')"
            ".textContent.includes('Stable tree: 0 KSM pages')", timeout=60_000)
        assert "reset" in events.inner_text()
        assert errors == []
    finally:
        context.close()
