"""The live figure's script (widgets/plot.py LIVE_JS), run by node against a small fake
DOM: one graph div per view, moved into each new output and redrawn in place with the
latest figure; a figure that arrives while plotly.js loads is drawn once it has; a
second view gets its own div; no plotly.js at all says so instead of drawing nothing.
The real browser runs it in tests/browser (test_run_all_quick, test_run_all_modes)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from ksmbook.widgets.plot import Plot, figure_json

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="NO NODE: the live figure's script is "
                                "checked in the browser tests only")

PARTS = re.compile(r'^<div class="ksmbook-plot-slot" data-key="(p\d+)">[^<]*</div>'
                   r'<script type="application/json" class="ksmbook-plot-json">(.*?)</script>'
                   r'<script>(.*)</script>$', re.S)

FAKE_DOM = r"""
class El {
  constructor(tag, cls) { this.tagName = tag; this.className = cls || ''; this.children = [];
    this.parentNode = null; this.attrs = {}; this._text = ''; }
  appendChild(c) { if (c.parentNode) c.parentNode.removeChild(c); c.parentNode = this;
    this.children.push(c);
    if (c.tagName === 'script' && c.src) setTimeout(() => c.onerror && c.onerror(), 0);
    return c; }
  removeChild(c) { this.children = this.children.filter(x => x !== c); c.parentNode = null; }
  replaceWith(n) { const p = this.parentNode; if (n.parentNode) n.parentNode.removeChild(n);
    p.children[p.children.indexOf(this)] = n; n.parentNode = p; this.parentNode = null; }
  matches(sel) { const [tag, cls] = sel.split('.');
    return (!tag || tag === this.tagName) && (!cls || this.className.split(' ').includes(cls)); }
  querySelector(sel) { for (const c of this.children) { if (c.matches(sel)) return c;
    const r = c.querySelector(sel); if (r) return r; } return null; }
  closest(sel) { for (let e = this; e; e = e.parentNode) if (e.matches(sel)) return e; return null; }
  getAttribute(k) { return k in this.attrs ? this.attrs[k] : null; }
  get textContent() { return this._text; }
  set textContent(v) { this._text = v; this.children = []; }
  get clientWidth() { return 800; }
}
global.window = global;
global.document = {createElement: t => new El(t), head: new El('head'), currentScript: null};
const calls = [];
const plotly = {react(gd, data, layout, config) { calls.push({gd: gd.id, title: layout.title,
                  height: layout.height, host: gd.parentNode && gd.parentNode.id});
                  return Promise.resolve(gd); },
                Plots: {resize() { return Promise.resolve(); }}};
let ids = 0;
function show(area, key, figText, js) {   // one output of a Plot's view: what JupyterLab renders
  for (const c of [...area.children]) area.removeChild(c);  // the replaced output goes
  const host = new El('div', 'jp-OutputArea-output'); host.id = 'host' + (++ids);
  const slot = new El('div', 'ksmbook-plot-slot'); slot.attrs['data-key'] = key;
  const data = new El('script', 'ksmbook-plot-json'); data._text = figText;
  const me = new El('script');
  host.appendChild(slot); host.appendChild(data); host.appendChild(me); area.appendChild(host);
  document.currentScript = me;
  (0, eval)(js);
  document.currentScript = null;
  const gd = host.querySelector('div.ksmbook-plotly');
  if (gd && !gd.id) gd.id = 'gd' + (++ids);
  return {host: host.id, gd: gd ? gd.id : null, slotLeft: !!host.querySelector('div.ksmbook-plot-slot'),
          text: gd ? gd.textContent : null};
}
const tick = () => new Promise(r => setTimeout(r, 5));
"""

SCENARIO = r"""
(async () => {
  const [key, figs, js] = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const out = {};
  const A = new El('div', 'jp-OutputArea'), B = new El('div', 'jp-OutputArea');
  // 1. plotly.js already on the page (window.Plotly): drawn at once, in place afterwards
  window.Plotly = plotly;
  out.a1 = show(A, key, figs[0], js); await tick();
  out.a2 = show(A, key, figs[1], js); await tick();
  out.b1 = show(B, key, figs[1], js); await tick();
  out.calls1 = calls.splice(0);
  // 2. not loaded yet: jupyterlab-plotly's renderer loads it; two figures arrive meanwhile
  delete window.Plotly; window.ksmbookPlot = undefined;
  let release;
  const loaded = new Promise(r => { release = r; });
  class RenderedPlotly { constructor(o) { this.mime = o.mimeType; }
    renderModel(m) { out.loadModel = Object.keys(m.data);
      return loaded.then(() => { window.Plotly = plotly; RenderedPlotly.Plotly = plotly; }); } }
  RenderedPlotly.Plotly = null;
  window._JUPYTERLAB = {'jupyterlab-plotly': {get: m => Promise.resolve(() => ({RenderedPlotly}))}};
  const C = new El('div', 'jp-OutputArea');
  out.c1 = show(C, key, figs[0], js); await tick();
  out.c2 = show(C, key, figs[1], js); await tick();
  out.callsWhileLoading = calls.length;
  release(); await tick(); await tick();
  out.calls2 = calls.splice(0);
  // 3. no plotly.js anywhere (no extension, the CDN fails): the figure says so
  delete window.Plotly; delete window._JUPYTERLAB; window.ksmbookPlot = undefined;
  const D = new El('div', 'jp-OutputArea');
  out.d1 = show(D, key, figs[0], js); await tick(); await tick();
  out.d1text = D.children[0].children[0].textContent;
  out.cdn = document.head.children.map(s => s.src);
  console.log(JSON.stringify(out));
})();
"""


def _parts(plot: Plot):
    m = PARTS.match(plot.outputs[0]["data"]["text/html"])
    assert m, plot.outputs[0]["data"]["text/html"][:300]
    return m.groups()


def test_live_figure_script_redraws_one_div_per_view_in_place():
    one = {"data": [{"type": "bar", "y": [1]}], "layout": {"title": {"text": "one"}}}
    two = {"data": [{"type": "bar", "y": [2]}], "layout": {"title": {"text": "two"},
                                                          "height": 300}}
    plot = Plot(one)
    key, fig1, js = _parts(plot)
    assert json.loads(fig1) == figure_json(one)
    plot.show_figure(two)
    key2, fig2, js2 = _parts(plot)
    assert key2 == key and js2 == js
    run = subprocess.run([NODE, "-e", FAKE_DOM + SCENARIO], input=json.dumps([key, [fig1, fig2], js]),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    a1, a2, b1 = out["a1"], out["a2"], out["b1"]
    # the slot is replaced by the view's graph div; the next output takes the same div
    assert a1["gd"] and not a1["slotLeft"] and a2["gd"] == a1["gd"] and a2["host"] != a1["host"]
    assert b1["gd"] not in (None, a1["gd"])            # another view: its own div
    assert [(c["gd"], c["title"]["text"], c["host"]) for c in out["calls1"]] == [
        (a1["gd"], "one", a1["host"]), (a1["gd"], "two", a2["host"]), (b1["gd"], "two", b1["host"])]
    assert [c["height"] for c in out["calls1"]] == [360, 300, 300]   # the renderer's default
    # loading: nothing drawn until plotly.js is there, then the latest figure, once
    assert out["loadModel"] == ["application/vnd.plotly.v1+json"]
    assert out["callsWhileLoading"] == 0 and out["c2"]["gd"] == out["c1"]["gd"]
    assert [(c["gd"], c["title"]["text"]) for c in out["calls2"]] == [(out["c1"]["gd"], "two")]
    # no plotly.js: tried the CDN, and the figure says what is missing
    assert out["cdn"] and out["cdn"][0].startswith("https://cdn.plot.ly/plotly-")
    assert "needs plotly.js" in out["d1text"]
