"""Predict, then step, as a reader does it in JupyterLab (widgets/predict.py, issue 8),
and the latency of one stepper step on 4,096 pages (issue 13), in the browser.

A scratch notebook (in a temporary folder, never in notebooks/) shows chapter 03's
stepper with its frame question, chapter 05's counter question and a 4,096-page
stepper.  The test clicks a guess, presses Step and reads the verdict on the page:
right or wrong as the simulator decides (the same three steps chapter 03's hidden
check makes: a first insert, a two-page merge, a page joining the KSM page), the
guess kept when a batch is pressed (the frame question is about one page), and the
counter question checked on Full scan too.  Latencies (click -> log, click -> figures
redrawn) are printed, not asserted: budgets, not tests of the clock.
"""
from __future__ import annotations

import json
import os
import time

import pytest

import labshot
from ksmbook.viz.predict import FRAME_CHOICES

pytestmark = pytest.mark.browser

CELLS = [
    """\
from ksmbook.labs.scenes import Scene, identical_pages
from ksmbook.widgets import CounterPredict, FramePredict, KsmStepper

frames = KsmStepper(lambda: identical_pages(4, unique=2),
                    views=("mappings", "trees", "counters"), predict=FramePredict())
frames.box.add_class("test-frames")
frames""",
    """\
counters = KsmStepper(lambda: identical_pages(3, unique=1), views=("counters_all",),
                      predict=CounterPredict())
counters.box.add_class("test-counters")
counters""",
    """\
def big_scene(n=4096, page_size=4096):
    # one page in four a copy of one of 16 templates, the rest unique (issue 13's mix)
    s = Scene(page_size=page_size)
    s.spawn("vm1")
    s.mmap("vm1", "mem", n)
    for i in range(n):
        head = bytes([1 + (i // 4) % 16]) * 64 if i % 4 == 0 else i.to_bytes(4, "little") * 16
        s.write("vm1", i, head + bytes(page_size - 64))
    s.madvise("vm1")
    s.knob("run", 1)
    return s

big = KsmStepper(big_scene, views=("counters",))
big.box.add_class("test-big")
big.scan_full()
big""",
]

_JS_VERDICT = """(app) => (document.querySelector(`.${app} .ksmbook-predict-verdict`) || {}).innerText || ''"""
_JS_LOG = """(app) => (document.querySelector(`.${app} .ksmbook-events`) || {}).innerText || ''"""


def _notebook(path):
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def scratch_lab(browser_ready, tmp_path):
    _notebook(tmp_path / "predict.ipynb")
    with labshot.jupyter_lab(tmp_path, windowing_mode="none") as server:
        yield server


def _click_and_wait(page, app, button, changed_from, what=_JS_LOG, timeout_s=60):
    page.click(f".{app} {button}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = page.evaluate(what, app)
        if now != changed_from:
            return now
        page.wait_for_timeout(50)
    raise AssertionError(f"{button} in {app}: nothing changed in {timeout_s} s")


def _kernel(page, code) -> str:
    return page.evaluate(labshot._JS_KERNEL_EXEC, code)


def test_predict_then_step_in_the_browser(scratch_lab, chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        labshot._open(page, scratch_lab, "predict.ipynb", 300_000)
        page.evaluate(labshot._JS_RUN_ALL)
        page.wait_for_function(labshot._JS_RUN_DONE, timeout=600_000, polling=200)
        assert page.evaluate("() => window.__ksmbookRunAll") == "ok"
        page.wait_for_selector(".test-frames .ksmbook-predict-choice input[type=radio]",
                               timeout=120_000)
        page.wait_for_selector(".test-big .ksmbook-step-page", timeout=120_000)

        # --- the frame question (chapter 03's scene) ---
        app = "test-frames"
        log = _click_and_wait(page, app, ".ksmbook-full-scan", page.evaluate(_JS_LOG, app))
        assert "run_full_scans(1)" in log
        radios = page.locator(f".{app} .ksmbook-predict-choice input[type=radio]")
        keys = [k for k, _text in FRAME_CHOICES]
        seen = []
        for guess, right in (("none", True), ("own", True), ("own", False)):
            radios.nth(keys.index(guess)).check()
            page.wait_for_function(
                f"() => document.querySelectorAll('.{app} .ksmbook-predict-choice input:checked').length == 1")
            before = page.evaluate(_JS_VERDICT, app)
            verdict = _click_and_wait(page, app, ".ksmbook-step-page", before, _JS_VERDICT)
            seen.append(verdict)
            assert ("Right" in verdict) == right and ("Not this time" in verdict) == (not right), seen
            assert "What happened" in verdict
            # the panel is cleared for the next guess, on the page as in the kernel
            page.wait_for_function(
                f"() => document.querySelectorAll('.{app} .ksmbook-predict-choice input:checked').length == 0")
        state = json.loads(_kernel(page, "import json; print(json.dumps([frames.predict.checked, "
                                         "frames.predict.right, frames.predict.last[1].answer]))"))
        assert state == [3, 2, "ksm"]

        # a batch is not a one-page step: the guess is kept and the panel says so
        radios.nth(keys.index("waiting")).check()
        verdict = _click_and_wait(page, app, ".ksmbook-step-batch", page.evaluate(_JS_VERDICT, app),
                                  _JS_VERDICT)
        assert "checked on Step 1 page" in verdict and "kept" in verdict
        assert radios.nth(keys.index("waiting")).is_checked()
        assert _kernel(page, "print(frames.predict.current_guess())").strip() == "waiting"

        # --- the counter question: ticked boxes, checked on Full scan and on a batch ---
        app = "test-counters"
        boxes = page.locator(f".{app} .ksmbook-predict-choice input[type=checkbox]")
        labels = page.locator(f".{app} .ksmbook-predict-choice").all_inner_texts()
        assert any("pages_volatile" in t for t in labels)
        # scan 1 only records checksums: every page is volatile
        page.locator(f".{app} .ksmbook-predict-choice", has_text="pages_volatile") \
            .locator("input").check()
        verdict = _click_and_wait(page, app, ".ksmbook-full-scan", page.evaluate(_JS_VERDICT, app),
                                  _JS_VERDICT)
        assert "Right" in verdict, verdict
        assert boxes.count() >= 6
        # scan 2 merges: pages_shared, pages_sharing, pages_unshared change, volatile too
        page.locator(f".{app} .ksmbook-predict-choice", has_text="none of them") \
            .locator("input").check()
        verdict = _click_and_wait(page, app, ".ksmbook-step-batch", page.evaluate(_JS_VERDICT, app),
                                  _JS_VERDICT)
        assert "Not this time" in verdict and "pages_sharing" in verdict, verdict
        assert _kernel(page, "print(counters.predict.checked, counters.predict.right)").split() \
            == ["2", "1"]

        # --- one step of a 4,096-page stepper, with its view (issue 13: 50 ms) ---
        latencies = []
        for _ in range(5):
            latencies.append(page.evaluate(labshot._JS_CLICK_LATENCY, ".test-big .ksmbook-step-page"))
        kernel_ms = json.loads(_kernel(page, """\
import json, time
ms = []
for _ in range(10):
    t = time.perf_counter(); big.step(1); ms.append((time.perf_counter() - t) * 1000)
print(json.dumps(sorted(ms)))"""))
        print(f"\n4,096-page stepper, Step 1 page (counters view): browser {latencies}; "
              f"kernel step(1) + view update: median {kernel_ms[len(kernel_ms) // 2]:.0f} ms "
              f"(min {kernel_ms[0]:.0f}, max {kernel_ms[-1]:.0f}); load {os.getloadavg()[0]:.1f}")
        assert all(t["log"] >= 0 for t in latencies), latencies
    finally:
        context.close()
