"""Look at the book the way a reader does: JupyterLab in headless Chromium.

Used by the browser tests (tests/browser/) and by tools/screenshot.py.

- `jupyter_lab(root_dir)` starts a throw-away JupyterLab server (fresh
  temporary Jupyter config/data/runtime/settings/workspace dirs, no token,
  notebook windowing off, autosave off so the repository's notebooks are never
  rewritten) and yields a `LabServer` once it answers.
- `screenshot_notebook(lab, name, out_png)` opens one notebook in headless
  Chromium via Playwright, optionally clears and runs all cells, waits until
  the kernel is idle, saves a full-height screenshot and returns a
  `NotebookReport` (title, visible text, error outputs, browser errors).

Chromium is Debian's /usr/bin/chromium (override with KSMBOOK_CHROMIUM);
Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = os.environ.get("KSMBOOK_CHROMIUM", "/usr/bin/chromium")
# Playwright adds --headless itself (headless=True) and gives every launch a
# fresh temporary --user-data-dir, which it does not let callers pass.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# JupyterLab user settings for a quiet, deterministic, read-only session.
LAB_SETTINGS = {
    # Render every cell: JupyterLab 4 virtualises long notebooks otherwise.
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",
        "scrollPastEnd": False,   # no viewport-high blank space after the last cell
    },
    # Never write the notebook back: the stored outputs are what nbval compares.
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    # No "get Jupyter news?" toast over the screenshot, no update checks.
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}

STDERR_MIME = "application/vnd.jupyter.stderr"


class BrowserUnavailable(RuntimeError):
    """Chromium or Playwright is missing: browser checks cannot run here."""


def browser_problem() -> str | None:
    """Why headless-browser checks cannot run here, or None if they can."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return (f"{CHROMIUM} not found: install Debian's chromium "
                "(`apt-get install -y chromium`, which `make setup` does as root)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"the playwright Python package is not importable ({exc}); install ksmbook[test]"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class LabServer:
    url: str
    root_dir: Path
    log_path: Path
    process: subprocess.Popen

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def jupyter_lab(root_dir: str | os.PathLike, *, python: str | None = None,
                port: int | None = None, startup_timeout: float = 120.0,
                windowing_mode: str = "none"):
    """Run a JupyterLab server on 127.0.0.1 rooted at `root_dir`; yield a LabServer.

    `windowing_mode` is JupyterLab's notebook windowingMode: "none" renders every
    cell; "full", "defer" and "contentVisibility" render cells (and so widget views)
    only as they scroll into view, which is what a reader usually has.
    """
    root_dir = Path(root_dir).resolve()
    python = python or sys.executable
    port = port or free_port()
    tmp = Path(tempfile.mkdtemp(prefix="ksmbook-lab-"))
    dirs = {name: tmp / name for name in
            ("config", "data", "runtime", "settings", "workspaces", "ipython", "checkpoints")}
    for d in dirs.values():
        d.mkdir()
    settings = json.loads(json.dumps(LAB_SETTINGS))
    settings["@jupyterlab/notebook-extension/tracker.jupyterlab-settings"]["windowingMode"] = \
        windowing_mode
    for rel, value in settings.items():
        f = dirs["settings"] / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
        "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [
        python, "-m", "jupyter", "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={root_dir}",
        "--LabApp.expose_app_in_browser=True",   # window.jupyterapp, for commands
        f"--LabApp.user_settings_dir={dirs['settings']}",
        f"--LabApp.workspaces_dir={dirs['workspaces']}",
        "--LabApp.extension_manager=readonly",  # no package-index queries
        # Checkpoints go to the temporary dir, not notebooks/.ipynb_checkpoints.
        f"--FileCheckpoints.checkpoint_dir={dirs['checkpoints']}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log_path = tmp / "jupyter-lab.log"
    log = open(log_path, "wb")
    # Own process group, so the server and the kernels it started end together.
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    server = LabServer(f"http://127.0.0.1:{port}", root_dir, log_path, proc)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(f"{server.url}/api/status", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab did not answer in {startup_timeout:.0f} s:\n"
                                   f"{server.log_tail()}")
            time.sleep(0.3)
        yield server
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM the server's own process group, then SIGKILL what is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@dataclasses.dataclass
class NotebookReport:
    name: str
    png: Path
    title: str                  # first <h1> of the rendered notebook
    text: str                   # visible text of the notebook area
    error_outputs: list[str]    # "ename: evalue" of every error output in the model
    stderr_tracebacks: list[str]  # stderr outputs in the DOM that show a Traceback
    page_errors: list[str]      # uncaught JavaScript exceptions
    console_errors: list[str]   # console.error messages (informational)
    run_all_result: str         # "ok", "failed" (a cell raised), "not run", or "error: ..."
    # every PNG of the notebook, top to bottom: [png] when it fits Chromium's 16,000 px,
    # else png, NAME-part2.png, ... (each overlaps the one before by PART_OVERLAP px)
    parts: list[Path] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (not self.error_outputs and not self.stderr_tracebacks and not self.page_errors
                and self.run_all_result in ("ok", "not run"))


_JS_PANEL = "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"

_JS_READY = """() => {
  const app = window.jupyterapp;
  const w = app && app.shell.currentWidget;
  if (!w || !w.sessionContext || !w.context || !w.context.isReady) return false;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle' && w.content.widgets.length > 0;
}"""

_JS_RUN_ALL = """async () => {
  const app = window.jupyterapp;
  await app.commands.execute('notebook:clear-all-cell-outputs');
  window.__ksmbookRunAll = 'running';
  app.commands.execute('notebook:run-all-cells').then(
    r => { window.__ksmbookRunAll = (r === false) ? 'failed' : 'ok'; },
    e => { window.__ksmbookRunAll = 'error: ' + e; });
}"""

_JS_RUN_DONE = """() => {
  if (window.__ksmbookRunAll === 'running') return false;
  const w = window.jupyterapp.shell.currentWidget;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  if (!k || k.status !== 'idle') return false;
  return ![...w.node.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('*'));
}"""

_JS_EXTRA_HEIGHT = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  let extra = 0;
  for (const el of [w.node, ...w.node.querySelectorAll('*')]) {
    const s = getComputedStyle(el);
    if (['auto', 'scroll', 'overlay'].includes(s.overflowY))
      extra = Math.max(extra, el.scrollHeight - el.clientHeight);
  }
  return extra;
}"""

# Scroll the element that still scrolls most (the notebook's window) to `top` px.
_JS_SCROLL_NOTEBOOK = """(top) => {
  const w = window.jupyterapp.shell.currentWidget;
  let best = null, extra = 1;
  for (const el of [w.node, ...w.node.querySelectorAll('*')]) {
    const s = getComputedStyle(el);
    if (['auto', 'scroll', 'overlay'].includes(s.overflowY)
        && el.scrollHeight - el.clientHeight > extra) {
      best = el; extra = el.scrollHeight - el.clientHeight;
    }
  }
  if (best) best.scrollTop = top;
  return best ? best.scrollTop : -1;
}"""

#: pixels each screenshot part repeats of the one before it
PART_OVERLAP = 200
MAX_PARTS = 10

_JS_REPORT = """(stderrMime) => {
  const w = window.jupyterapp.shell.currentWidget;
  const h1 = w.node.querySelector('.jp-RenderedMarkdown h1');
  const errors = [];
  const cells = w.content.model.cells;
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    const outs = c.outputs;
    for (let j = 0; j < outs.length; j++) {
      const o = outs.get(j).toJSON();
      if (o.output_type === 'error') errors.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
    }
  }
  const tracebacks = [...w.node.querySelectorAll(
      `.jp-OutputArea-output[data-mime-type="${stderrMime}"]`)]
    .map(e => e.innerText).filter(t => t.includes('Traceback'));
  return {title: h1 ? h1.textContent.replace(/\\u00b6$/, '').trim() : '',
          text: w.node.innerText, errors, tracebacks};
}"""


def _open(page, lab: LabServer, name: str, ms: int) -> None:
    """Open notebook `name` in `page` and wait until its kernel is idle."""
    page.goto(f"{lab.url}/lab/tree/{name}?reset", wait_until="domcontentloaded", timeout=ms)
    page.wait_for_function(_JS_PANEL, timeout=ms)
    page.wait_for_function(_JS_READY, timeout=ms)
    # Give the notebook the whole window: no file browser, no right panel.
    page.evaluate("() => { const s = window.jupyterapp.shell;"
                  " s.collapseLeft(); s.collapseRight(); }")


def screenshot_notebook(lab: LabServer, name: str, out_png: str | os.PathLike,
                        run_all: bool = True, *, browser=None, width: int = 1280,
                        timeout_s: float = 600.0, settle_ms: int = 1500,
                        max_height: int = 16000) -> NotebookReport:
    """Open `name` (relative to the server's root_dir), run it, screenshot it.

    `browser` is a Playwright Browser to reuse; without one a headless
    Chromium is launched (and closed) for this call.
    """
    problem = browser_problem()
    if problem:
        raise BrowserUnavailable(problem)
    from playwright.sync_api import sync_playwright

    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if browser is None:
            pw = stack.enter_context(sync_playwright())
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=CHROMIUM_ARGS)
            stack.callback(browser.close)
        context = browser.new_context(viewport={"width": width, "height": 900},
                                      device_scale_factor=1)
        stack.callback(context.close)
        page = context.new_page()
        page_errors: list[str] = []
        console_errors: list[str] = []
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

        ms = int(timeout_s * 1000)
        # ?reset: start from an empty workspace. The server's workspace dir is shared by
        # every page of a session, and without it JupyterLab reopens the notebooks of
        # earlier pages (and their kernels' widgets) in this one.
        _open(page, lab, name, ms)

        result = "not run"
        if run_all:
            page.evaluate(_JS_RUN_ALL)
            page.wait_for_function(_JS_RUN_DONE, timeout=ms, polling=250)
            result = page.evaluate("() => window.__ksmbookRunAll")
        page.wait_for_timeout(settle_ms)  # widget views and plotly render asynchronously
        # Back to the top, first cell active, nothing focused: a reader's first view.
        page.evaluate("() => { const nb = window.jupyterapp.shell.currentWidget.content;"
                      " nb.mode = 'command'; nb.activeCellIndex = 0; nb.deselectAll();"
                      " if (document.activeElement) document.activeElement.blur(); }")

        # Full height: grow the viewport until nothing inside the notebook scrolls.
        height = 900
        for _ in range(4):
            extra = page.evaluate(_JS_EXTRA_HEIGHT)
            if extra <= 1 or height >= max_height:
                break
            height = min(max_height, height + extra + 8)
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(400)
        page.evaluate("() => document.querySelectorAll('*').forEach("
                      "e => { if (e.scrollTop) e.scrollTop = 0; })")
        page.screenshot(path=str(out_png), full_page=True)
        # Taller than Chromium's limit (max_height): the notebook still scrolls inside
        # the window.  Scroll it by a window less an overlap and take more parts,
        # NAME-part2.png, NAME-part3.png, ... until its end is on one of them.
        # (the extra height is measured again after each scroll: a windowed notebook
        # learns its cells' real heights as they draw)
        pngs = [out_png]
        for old in out_png.parent.glob(f"{out_png.stem}-part*{out_png.suffix}"):
            old.unlink()                                   # parts of an earlier shot
        step = max(1000, height - PART_OVERLAP)
        top = 0
        while len(pngs) < MAX_PARTS:
            extra = page.evaluate(_JS_EXTRA_HEIGHT)
            if top >= extra - 1:
                break
            top = min(extra, top + step)
            page.evaluate(_JS_SCROLL_NOTEBOOK, top)
            page.wait_for_timeout(max(settle_ms, 1000))   # windowed cells draw
            part = out_png.with_name(f"{out_png.stem}-part{len(pngs) + 1}{out_png.suffix}")
            page.screenshot(path=str(part), full_page=True)
            pngs.append(part)
        if len(pngs) > 1:
            page.evaluate(_JS_SCROLL_NOTEBOOK, 0)

        info = page.evaluate(_JS_REPORT, STDERR_MIME)
        return NotebookReport(
            name=name, png=out_png, parts=pngs, title=info["title"], text=info["text"],
            error_outputs=info["errors"], stderr_tracebacks=info["tracebacks"],
            page_errors=page_errors, console_errors=console_errors, run_all_result=result)


# --- Run All, then look at every figure (tests/browser/test_run_all_modes.py) ---------

WINDOWING_MODES = ("full", "defer", "contentVisibility", "none")

_JS_CELL_COUNT = "() => window.jupyterapp.shell.currentWidget.content.widgets.length"

# Every code cell with a figure or a widget in its stored outputs (the notebook model,
# filled by Run All): its index, its plotly outputs and the widget models it shows.
_JS_FIGURE_CELLS = """() => {
  const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
  const out = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    let plotly = 0; const models = [];
    for (let j = 0; j < c.outputs.length; j++) {
      const data = c.outputs.get(j).toJSON().data || {};
      if (data['application/vnd.plotly.v1+json']) plotly++;
      const view = data['application/vnd.jupyter.widget-view+json'];
      if (view) models.push(view.model_id);
    }
    if (plotly || models.length) out.push({cell: i, plotly, models});
  }
  return out;
}"""

# Ask the kernel how many plotly figures each widget model holds (an Output widget
# whose outputs carry the plotly MIME type or are widgets/plot.Plot's live figures,
# anywhere in the widget's tree of children): what must be on screen, whatever the
# front end did.
_KERNEL_FIGURES = """
def _ksmbook_figures(ids):
    import json
    import ipywidgets
    from ipywidgets.widgets.widget import _instances
    def count(x, seen):
        if id(x) in seen:
            return 0
        seen.add(id(x))
        n = 0
        if isinstance(x, ipywidgets.Output):
            n += sum(1 for o in x.outputs if "application/vnd.plotly.v1+json" in o.get("data", {})
                     or "ksmbook/plot" in (o.get("metadata") or {}))
        for child in getattr(x, "children", ()) or ():
            n += count(child, seen)
        return n
    print("KSMBOOK-FIGURES " + json.dumps({i: (count(_instances[i], set()) if i in _instances
                                               else None) for i in ids}))
_ksmbook_figures(%s)
del _ksmbook_figures
"""

_JS_KERNEL_EXEC = """async (code) => {
  const w = window.jupyterapp.shell.currentWidget;
  const k = w.sessionContext.session.kernel;
  let text = '';
  const future = k.requestExecute({code, silent: false, store_history: false});
  future.onIOPub = (msg) => {
    if (msg.header.msg_type === 'stream') text += msg.content.text;
    if (msg.header.msg_type === 'error') text += 'ERROR ' + msg.content.ename + ': ' + msg.content.evalue;
  };
  await future.done;
  return text;
}"""

# Scroll cell i into view, then report every plotly figure in it (a RenderedPlotly:
# a stored output; a .ksmbook-plotly: a live figure of widgets/plot.py): traces in the figure's data and trace
# elements actually drawn in its SVG; `pending` counts renderers still waiting for
# plotly.js.
_JS_CELL_FIGURES = """async (i) => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  if (nb.scrollToItem) { await nb.scrollToItem(i, 'center'); }
  const cell = nb.widgets[i];
  cell.node.scrollIntoView({block: 'center'});
  const figs = [...cell.node.querySelectorAll('.jp-RenderedPlotly, .ksmbook-plotly')];
  const drawnAsImage = gd => { const img = gd.querySelector('img.plot-img');
    return !!img && img.style.display === 'block' && (img.src || '').startsWith('data:image'); };
  return {type: cell.model.type,
          widgets: cell.node.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.widget-view+json"]').length,
          errors: cell.node.innerText.split('\\n').filter(t => t.includes('Error displaying widget')),
          figures: figs.map(gd => ({
             data: (gd.data || []).length,
             points: (gd.data || []).filter(t => ['x', 'z', 'values', 'cells', 'y']
                       .some(k => t[k] && t[k].length)).length,
             shapes: ((gd.layout || {}).shapes || []).length,
             drawn: gd.querySelectorAll('g.trace, g.hm, .heatmaplayer image, .tablelayer .table').length,
             image: drawnAsImage(gd),
             title: (gd.querySelector('.gtitle') || {}).textContent || ''}))};
}"""

# Scroll to the first cell that shows `sel` (in a windowed notebook a cell out of view
# may not be in the page at all); its index, or -1.
_JS_SCROLL_TO = """async (sel) => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  for (let i = 0; i < nb.widgets.length; i++) {
    if (nb.widgets[i].model.type !== 'code') continue;
    if (nb.scrollToItem) { await nb.scrollToItem(i, 'center'); }
    const cell = nb.widgets[i];
    if (cell.node.querySelector(sel)) { cell.node.scrollIntoView({block: 'center'}); return i; }
  }
  return -1;
}"""

# Click a button of the first app that has one; time (ms) until the app's event log
# changed (the kernel's answer arrived: the text of the step), until its figures
# were redrawn with new data, and until both had happened and the page was idle again
# (a frame less than 40 ms after the one before: whatever drawing the update set off,
# such as a plotly renderer's PNG of the new plot, is done); -1: not within 15 s.
_JS_CLICK_LATENCY = """async (sel) => {
  const btn = [...document.querySelectorAll(sel)][0];
  if (!btn) return null;
  btn.scrollIntoView({block: 'center'});
  const app = btn.closest('.ksmbook-app') || btn.closest('.jp-OutputArea');
  // looked up every time: a live figure (widgets/plot.py) draws each update on a new
  // node; while one is being redrawn (fewer drawn figures than before) nothing counts
  const drawn = () => [...app.querySelectorAll('.js-plotly-plot')].filter(gd => gd._fullLayout);
  const n0 = drawn().length;
  const figs = () => drawn().length < n0 ? null :
      JSON.stringify(drawn().map(gd => (gd.data || []).map(t => [t.x, t.y, t.z, t.text])));
  const log = () => ((app.querySelector('.ksmbook-events') || {}).textContent || '')
                    + ((app.querySelector('.ksmbook-predict-verdict') || {}).textContent || '');
  const f0 = figs(), l0 = log();
  let tLog = null, tFig = null, tIdle = null, last = performance.now();
  const t0 = performance.now();
  btn.click();
  while (performance.now() - t0 < 15000) {
    await new Promise(r => requestAnimationFrame(r));
    const now = performance.now(), gap = now - last, t = now - t0;
    last = now;
    if (tLog === null && log() !== l0) tLog = t;
    const f = figs();
    if (tFig === null && f !== null && f !== f0) tFig = t;
    // a click that changes no figure (nothing to redraw) is idle once its text is in
    if (tLog !== null && (tFig !== null || t > 3000) && gap < 40) { tIdle = t; break; }
  }
  const ms = t => t === null ? -1 : Math.round(t);
  return {log: ms(tLog), figures: ms(tFig), idle: ms(tIdle)};
}"""


def _drawn(f: dict) -> bool:
    """A figure is drawn when its state arrived (a title; traces or shapes) and its
    traces with points put something on the SVG (a tree with no node yet has none),
    or when plotly's renderer shows its PNG of the drawn figure instead (it does so
    when an output is rendered again after it was drawn once)."""
    if f.get("image"):
        return True
    if not f["title"]:
        return False                       # the figure's state never reached this view
    if not f["data"]:
        return bool(f["shapes"])           # a figure drawn with shapes only (page walk)
    return bool(f["drawn"] or not f["points"])


def kernel_rss_kb(lab: LabServer, notebook: str) -> dict:
    """VmRSS and VmHWM (peak) in kB of the kernel serving `notebook`, from /proc."""
    with urllib.request.urlopen(f"{lab.url}/api/sessions", timeout=5) as r:
        sessions = json.loads(r.read())
    ids = [s["kernel"]["id"] for s in sessions if s.get("path", "").endswith(notebook)]
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if any(f"kernel-{k}.json" in cmd for k in ids):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(("VmRSS", "VmHWM")):
                    out[line.split(":")[0]] = int(line.split()[1])
    return out


def shutdown_sessions(lab: LabServer) -> None:
    """End every kernel session of the server (through its REST API)."""
    with urllib.request.urlopen(f"{lab.url}/api/sessions", timeout=5) as r:
        sessions = json.loads(r.read())
    for s in sessions:
        req = urllib.request.Request(f"{lab.url}/api/sessions/{s['id']}", method="DELETE")
        with contextlib.suppress(urllib.error.URLError, OSError):
            urllib.request.urlopen(req, timeout=10).close()


@dataclasses.dataclass
class RunAllReport:
    name: str
    mode: str
    run_all_result: str
    run_all_s: float
    figures: list            # (cell, title, traces, traces with points, drawn, ok)
    widget_outputs: int
    errors: list
    rss_kb: dict
    click_ms: dict
    expected: int = 0        # plotly figures the outputs and the kernel's widgets hold


def expected_figures(page) -> list[dict]:
    """[{cell, plotly, models, expected}]: every code cell that shows figures or widgets
    after Run All, with the number of plotly figures it must show (its stored plotly
    outputs plus the figures the kernel's widgets hold)."""
    cells = page.evaluate(_JS_FIGURE_CELLS)
    ids = sorted({m for c in cells for m in c["models"]})
    per_model = {}
    if ids:
        text = page.evaluate(_JS_KERNEL_EXEC, _KERNEL_FIGURES % json.dumps(ids))
        line = next((ln for ln in text.splitlines() if ln.startswith("KSMBOOK-FIGURES ")), None)
        if line is None:
            raise RuntimeError(f"the kernel did not count the widgets' figures: {text!r}")
        per_model = json.loads(line.split(" ", 1)[1])
    for c in cells:
        c["expected"] = c["plotly"] + sum(per_model.get(m) or 0 for m in c["models"])
        c["unknown_models"] = [m for m in c["models"] if per_model.get(m) is None]
    return cells


def look_at_figures(page, cells, wait_s: float = 30.0) -> tuple[list, int, list]:
    """Scroll to each cell of ``cells`` (expected_figures) and wait up to ``wait_s``
    until it shows as many drawn figures as expected.  Returns (figures, widget
    outputs, problems): figures as (cell, title, traces, with points, drawn, ok), one
    per figure on screen, and one (cell, "missing", expected, found, 0, False) per
    figure that never appeared."""
    figures, widget_outputs, problems = [], 0, []
    for c in cells:
        i = c["cell"]
        deadline = time.monotonic() + wait_s
        while True:
            info = page.evaluate(_JS_CELL_FIGURES, i)
            found = info["figures"]
            if len(found) >= c["expected"] and all(_drawn(f) for f in found):
                break
            if time.monotonic() > deadline:
                break
            page.wait_for_timeout(200)
        widget_outputs += info["widgets"]
        figures += [(i, f["title"], f["data"], f["points"], f["drawn"], _drawn(f)) for f in found]
        if len(found) < c["expected"]:
            figures.append((i, "missing", c["expected"], len(found), 0, False))
        if info["errors"] or c["unknown_models"]:
            problems.append((i, info["errors"], c["unknown_models"]))
    return figures, widget_outputs, problems


def run_all_and_look(lab: LabServer, name: str, *, browser, mode: str, width: int = 1280,
                     timeout_s: float = 600.0, clicks: tuple = ()) -> RunAllReport:
    """Open `name`, Run All (timed), scroll to every cell that shows figures or widgets
    and check that it draws as many figures as its outputs and the kernel's widgets
    hold; then time each click selector in `clicks` (click -> a figure or the event
    log changed); finally shut the kernel down."""
    context = browser.new_context(viewport={"width": width, "height": 900}, device_scale_factor=1)
    try:
        page = context.new_page()
        page_errors: list[str] = []
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        ms = int(timeout_s * 1000)
        _open(page, lab, name, ms)
        t0 = time.monotonic()
        page.evaluate(_JS_RUN_ALL)
        page.wait_for_function(_JS_RUN_DONE, timeout=ms, polling=100)
        run_s = time.monotonic() - t0
        result = page.evaluate("() => window.__ksmbookRunAll")
        rss = kernel_rss_kb(lab, name)
        cells = expected_figures(page)
        figures, widget_outputs, problems = look_at_figures(page, cells)
        click_ms = {}
        for sel in clicks:
            page.evaluate(_JS_SCROLL_TO, sel)
            page.wait_for_timeout(300)
            times = [page.evaluate(_JS_CLICK_LATENCY, sel) for _ in range(3)]
            if times[0] is not None:
                click_ms[sel] = times
        info = page.evaluate(_JS_REPORT, STDERR_MIME)
        page.evaluate("""async (name) => {
          const sessions = window.jupyterapp.serviceManager.sessions;
          await sessions.refreshRunning();
          for (const m of [...sessions.running()])
            if (m.path.endsWith(name)) await sessions.shutdown(m.id);
        }""", name)
        return RunAllReport(name, mode, result, run_s, figures, widget_outputs,
                            info["errors"] + info["tracebacks"] + page_errors
                            + [f"cell {i}: widget errors {e}, models unknown to the kernel {u}"
                               for i, e, u in problems], rss, click_ms,
                            sum(c["expected"] for c in cells))
    finally:
        context.close()
