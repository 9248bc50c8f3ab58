"""The JupyterLite site (make lite) runs chapter 03 in the browser, offline.

The site is built afresh from this checkout by tools/build_lite.py (with
.venv-lite, which `make lite` creates: jupyterlite-core, jupyterlite-pyodide-kernel
and the widget/plotly labextensions) into a temporary folder, and served by a small
HTTP server of this test on 127.0.0.1.  Headless Chromium opens
03_ksmd_checksums_and_the_unstable_tree.ipynb there, clears and runs every cell in
Pyodide, clicks the stepper's "Full scan" button twice and sees the mapping figure
change to the merged page (mapcount 4) and the stable tree gain its KSM page.

Every request the page makes to a host other than 127.0.0.1 is refused and recorded:
the test fails if there was one, so Pyodide, the wheels and the labextensions are
proven to come from the build.  It also records the bytes the page received
(build/lite-metrics.json) and a screenshot (build/screenshots/lite_03_stepper.png).

Without .venv-lite (run `make lite` once) it skips, loudly, with the reason.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import xxhash

import labshot
import serve_lite

REPO = Path(__file__).resolve().parents[2]
LITE_PY = REPO / ".venv-lite" / "bin" / "python"
CHAPTER = "03_ksmd_checksums_and_the_unstable_tree.ipynb"
SCREENSHOTS = REPO / "build" / "screenshots"
METRICS = REPO / "build" / "lite-metrics.json"

pytestmark = pytest.mark.lite


@pytest.fixture(scope="module")
def lite_site(tmp_path_factory):
    if not LITE_PY.is_file():
        msg = (f"JUPYTERLITE TEST NOT RUN: {LITE_PY} is missing; `make lite` creates it "
               "(jupyterlite-core, jupyterlite-pyodide-kernel from PyPI, Pyodide from npm)")
        if os.environ.get("KSMBOOK_REQUIRE_LITE") == "1":
            pytest.fail(msg + " (KSMBOOK_REQUIRE_LITE=1)", pytrace=False)
        pytest.skip(msg)
    out = tmp_path_factory.mktemp("lite") / "site"
    t0 = time.monotonic()
    proc = subprocess.run([str(LITE_PY), str(REPO / "tools" / "build_lite.py"), "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    build_s = time.monotonic() - t0
    # the site carries the checkout's chapters, and ksmbook as a wheel built from it
    for name in (CHAPTER, "00_index.ipynb"):
        assert (out / "files" / name).read_bytes() == (REPO / "notebooks" / name).read_bytes()
    lock = json.loads((out / "static/pyodide/pyodide-lock.json").read_text())
    assert lock["packages"]["ksmbook"]["file_name"].startswith("ksmbook-")
    assert (out / "static/pyodide/pyodide.asm.wasm").is_file()
    return out, build_s


@pytest.fixture(scope="module")
def served(lite_site):
    site, _ = lite_site
    server = serve_lite.server(site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


_JS_FIGURE_SIG = """() => {
  const app = document.querySelector('.ksmbook-stepper');
  // the view's classes sit on its plotly div (FigureWidget) or on a box around it
  const v = app && app.querySelector('.ksmbook-view-mappings');
  const gd = v && (v.classList.contains('js-plotly-plot') ? v : v.querySelector('.js-plotly-plot'));
  return gd ? JSON.stringify([(gd.data || []).map(t => [t.x, t.y, t.text]),
                              ((gd.layout || {}).shapes || []).length,
                              ((gd.layout || {}).annotations || []).map(a => a.text)]) : null;
}"""


# [title, number of traces] of every plotly figure in the stepper app
_JS_DRAWN = """() => [...document.querySelectorAll('.ksmbook-stepper .js-plotly-plot')].map(
  gd => [(((gd.layout || {}).title || {}).text || ''), (gd.data || []).length])"""

# run code in the notebook's kernel (not as a cell), return what it printed
_JS_KERNEL_RUN = """async (code) => {
  const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const f = k.requestExecute({code, silent: false, store_history: false});
  let text = '';
  f.onIOPub = (m) => { if (m.header.msg_type === 'stream') text += m.content.text; };
  await f.done;
  return text;
}"""

_PY_WIDGET_BYTES = """
import json, ipywidgets
from ipywidgets.widgets.widget import _instances
sizes = {}
for w in list(_instances.values()):
    st = w.get_state()
    n = len(json.dumps({k: v for k, v in st.items() if not isinstance(v, (bytes, memoryview))},
                       default=str))
    kind = type(w).__name__
    sizes.setdefault(kind, [0, 0])
    sizes[kind][0] += 1
    sizes[kind][1] += n
print(json.dumps({"by_class": sizes, "total": sum(v[1] for v in sizes.values()),
                  "esm_total": sum(len(str(getattr(w, "_esm", "") or ""))
                                   for w in _instances.values())}))
"""


def test_chapter_03_runs_in_jupyterlite_offline_and_the_stepper_redraws(served, lite_site, chromium):
    site, build_s = lite_site
    context = chromium.new_context(viewport={"width": 1280, "height": 1000},
                                   service_workers="allow")
    outside: list[str] = []
    received = {"requests": 0}

    def only_loopback(route):
        host = urlparse(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    context.on("request", lambda _: received.__setitem__("requests", received["requests"] + 1))
    served0 = serve_lite.LiteHandler.sent
    try:
        t0 = time.monotonic()
        page.goto(f"{served}/lab/index.html?path={CHAPTER}", wait_until="domcontentloaded",
                  timeout=120_000)
        page.wait_for_function("() => !!window.jupyterapp", timeout=120_000)
        page.wait_for_function(labshot._JS_READY, timeout=600_000, polling=500)
        kernel_s = time.monotonic() - t0
        boot_bytes = serve_lite.LiteHandler.sent - served0    # the server's count

        page.evaluate(labshot._JS_RUN_ALL)
        page.wait_for_function(labshot._JS_RUN_DONE, timeout=900_000, polling=500)
        run_all_s = time.monotonic() - t0 - kernel_s
        report = page.evaluate(labshot._JS_REPORT, labshot.STDERR_MIME)
        assert page.evaluate("() => window.__ksmbookRunAll") == "ok", report["errors"]
        assert report["errors"] == [] and report["tracebacks"] == []
        assert report["title"].startswith("03")

        # the kernel is Pyodide's CPython, and ksmbook came from the site's wheel
        kernel = page.evaluate(_JS_KERNEL_RUN,
                               "import sys, ksmbook, ksmbook.kernel.ksm.checksum as c; "
                               "print(sys.platform, ksmbook.__file__, c.xxh64.__module__, "
                               "c.xxhash_u32(bytes(4096)))")
        platform, where, xxh_module, zero_page = kernel.split()
        assert platform == "emscripten"
        assert "site-packages/ksmbook" in where
        # no compiled xxhash in the site: the pure-Python XXH64, equal to xxhash's value
        assert xxh_module == "ksmbook.kernel.ksm.checksum"
        assert int(zero_page) == xxhash.xxh64_intdigest(bytes(4096)) & 0xFFFFFFFF

        app = page.locator(".ksmbook-stepper").first
        app.scroll_into_view_if_needed()
        mappings = app.locator(".ksmbook-view-mappings")
        mappings.locator(".main-svg").first.wait_for(state="attached", timeout=120_000)  # drawn
        before = page.evaluate(_JS_FIGURE_SIG)
        assert before and "mapcount 4" not in mappings.inner_text()
        # figures of the app drawn before any click (informational: issue 8's race can
        # leave a view blank until its first update, in JupyterLab too)
        drawn_first = page.evaluate(_JS_DRAWN)

        # the first full scan only records checksums (the counters and the event log
        # change); the second merges the four equal pages into one KSM page
        clicks = []
        for _, done in ((1, "full_scans=1"), (2, "try_to_merge_two_pages()")):
            t = time.monotonic()
            app.locator("button.ksmbook-full-scan").click()
            page.wait_for_function(
                "(s) => document.querySelector('.ksmbook-stepper .ksmbook-events')"
                ".innerText.includes(s)", arg=done, timeout=120_000, polling=200)
            clicks.append(round(time.monotonic() - t, 2))
        page.wait_for_function(f"() => ({_JS_FIGURE_SIG})() !== {json.dumps(before)}",
                               timeout=120_000, polling=200)
        page.wait_for_function(
            "() => document.querySelector('.ksmbook-stepper .ksmbook-view-mappings')"
            ".textContent.includes('mapcount 4')", timeout=120_000)
        after = page.evaluate(_JS_FIGURE_SIG)
        assert after != before
        page.wait_for_function(
            "() => [...document.querySelectorAll('.ksmbook-stepper .ksmbook-view-trees')]"
            ".some(e => e.textContent.includes('Stable tree: 1 KSM page')"
            " && e.textContent.includes('4 sharers'))", timeout=120_000)
        assert "full_scans=" in app.locator(".ksmbook-events").inner_text()
        # what the kernel sent the page as widget state: plotly's FigureWidget carries
        # its JavaScript bundle (_esm) in every figure's state
        widget_bytes = json.loads(page.evaluate(_JS_KERNEL_RUN, _PY_WIDGET_BYTES))
        # the Pyodide kernel's memory: its WebAssembly heap (it only grows)
        heap = page.evaluate(_JS_KERNEL_RUN, "import pyodide_js; print(pyodide_js._module.HEAP8.length)")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.set_viewport_size({"width": 1280, "height": 2000})   # the whole app
        page.wait_for_timeout(1000)                                  # relayout
        app.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(500)
        page.screenshot(path=str(SCREENSHOTS / "lite_03_stepper.png"))

        assert outside == [], f"requests left 127.0.0.1: {outside[:10]}"
        assert errors == [], errors
        metrics = {"site_mb": round(sum(p.stat().st_size for p in site.rglob("*")
                                         if p.is_file()) / 1e6, 1),
                   "build_s": round(build_s, 1), "kernel_ready_s": round(kernel_s, 1),
                   "run_all_s": round(run_all_s, 1), "full_scan_click_s": clicks,
                   "bytes_to_kernel_ready": boot_bytes,
                   "bytes_total": serve_lite.LiteHandler.sent - served0,
                   "requests": received["requests"], "widget_state": widget_bytes,
                   "figures_drawn_before_click": drawn_first,
                   "kernel_wasm_heap_mb": round(int(heap) / 2**20, 1) if heap.strip().isdigit() else heap}
        METRICS.parent.mkdir(parents=True, exist_ok=True)
        METRICS.write_text(json.dumps(metrics, indent=1) + "\n")
        print("lite metrics:", metrics)
    except Exception:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "lite_03_failure.png"))
        raise
    finally:
        context.close()
