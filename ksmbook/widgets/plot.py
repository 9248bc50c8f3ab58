"""The live figure of every app: a plotly figure that always draws its current state.

Why not plotly's ``FigureWidget`` (plotly 6/7, an anywidget): its comm opens with an
*empty* figure (``_widget_data=[]``, ``_widget_layout={}``) and sends the real one
right after, as two update messages.  anywidget (0.9-0.11) holds every message of a
model until the model's ES module has loaded, and gives up on the model for good
when that takes more than 2 s (``Runtime``: ``AbortSignal.timeout(2000)`` rejects
``ready``, and ``_handle_comm_msg`` then throws for every message).  FigureWidget's
module is plotly.js itself, 4.9 MB, evaluated once per figure: on this 2-core
machine under load, evaluating plotly.js took 7-13 s in headless Chromium.  So the
first message was dropped now and then: the view drew plotly's empty default axes
(-1..6 x -1..4), and since every later update was dropped as well, no click
brought the figure back (issue 8, bug 1).

``Plot`` is an ipywidgets ``Output`` widget whose one output is the whole figure,
replaced on every update (``outputs`` is a synced trait of a core widget model: no
module to load, no gate, nothing dropped).  Every view of an Output widget draws the
model's *current* outputs, so whatever the order of kernel messages, model creation
and view creation (a cell scrolled into view late in a windowed notebook), every
view ends on the last figure.  The figure is sent responsive (``render.responsive``):
it fills the view's width, an 800 px window included, at its designed height.

How the output draws (issue 8's click budget).  The output used to be the plotly MIME
bundle, drawn by JupyterLab's plotly renderer (jupyterlab-plotly, ``RenderedPlotly``):
a replaced output is a new renderer, which makes a new plot (``Plotly.react`` into a
new node), draws it a second time (``Plotly.redraw`` on its update request) and then a
PNG of it (``Plotly.toImage``, a third plot in a hidden node); three figures a click
took 0.4-2.5 s of Chromium main thread at load 10.  Its ``renderModel`` ignores a new
model once it has a plot, so an output cannot be updated in place through it either.
The output is now ``text/html``: an empty slot, the figure JSON and a small script
(``LIVE_JS``; Output widget outputs are trusted, so JupyterLab and JupyterLite run it).
The script keeps one plotly graph div per view (on the view's output area, which
stays while its outputs are replaced), moves it into the new output and redraws it
there with ``Plotly.react``: one diffed redraw, no new plot, no PNG.  plotly.js is
the page's one copy: ``window.Plotly`` (jupyterlab-plotly sets it when it loads
plotly.js); if no figure has loaded it yet, the script has jupyterlab-plotly load it
(its ``RenderedPlotly`` draws an empty figure off the page), and without
jupyterlab-plotly (another front end) it loads plotly.js from the CDN.  A width change
of the view calls ``Plotly.Plots.resize``, as the renderer did.  The message order
argument above is unchanged: the model holds the whole current figure, any view made
at any time draws it, and a figure that arrives while plotly.js is still loading is
drawn (the latest one) once it has loaded.  Pages without a kernel (the static site,
nbviewer) never see this output: they show ``views.kernel_free_bundle``.

``show_figure`` takes a ``go.Figure`` or the same figure as plain dicts, which is what
the steppers send (``viz`` builders' ``.plain``, see ``viz.style.plain_builder``): a
click then never goes through plotly's validating graph objects.  ``Plot`` keeps what
it shows; ``figure`` (a ``go.Figure``, built from the dict on first use), ``data``,
``layout`` and ``to_dict()`` read like a figure's; ``drawn`` is the figure JSON the
views draw.
"""
from __future__ import annotations

import functools
import html
import itertools
import json
import os

import ipywidgets as w
import plotly.graph_objects as go

from ..viz import render

PLOTLY_MIME = render.PLOTLY_MIME
#: the output metadata that marks a live figure (tools/labshot.py counts them)
LIVE_META = "ksmbook/plot"
#: "live": the output is drawn by LIVE_JS (in place); "mime": the plotly MIME bundle,
#: drawn by JupyterLab's plotly renderer (a new plot per update; for a front end that
#: runs no script in outputs).  Set before the Plots are made, or through KSMBOOK_PLOT.
OUTPUT = os.environ.get("KSMBOOK_PLOT", "live")
#: bumped when LIVE_JS changes: a page that ran an older script replaces it
LIVE_VERSION = 1

# One live figure's output runs this, with ``me`` its own <script> element.  See the
# module docstring.  State per view: ``area.ksmbookPlots[key]`` (area: the widget view's
# output area, which stays while the outputs are replaced) = {gd, fig, drawn, busy, width}.
LIVE_JS = r"""(function (me) {
  var K = window.ksmbookPlot;
  if (!K || K.version !== %(version)d) {
    K = window.ksmbookPlot = {version: %(version)d};
    var MIME = "application/vnd.plotly.v1+json";
    K.cdn = function () {
      return new Promise(function (ok, fail) {
        var s = document.createElement("script");
        s.src = %(cdn)s;
        s.onload = function () { ok(window.Plotly); };
        s.onerror = function () { fail(new Error("could not load " + s.src)); };
        document.head.appendChild(s);
      });
    };
    // the page's one plotly.js: jupyterlab-plotly's (it sets window.Plotly when it has
    // loaded it); else jupyterlab-plotly loads it (its renderer draws an empty figure
    // off the page); else the CDN's
    K.plotly = function () {
      if (window.Plotly) return Promise.resolve(window.Plotly);
      if (K.loading) return K.loading;
      var lab = window._JUPYTERLAB && window._JUPYTERLAB["jupyterlab-plotly"];
      var load = lab ? lab.get("./mimeExtension").then(function (factory) {
        var R = factory().RenderedPlotly;
        if (!R) return K.cdn();
        if (R.Plotly) return window.Plotly || R.Plotly;
        var model = {data: {}, metadata: {}, trusted: true, setData: function () {}};
        model.data[MIME] = {data: [], layout: {height: 10}};
        return Promise.resolve(new R({mimeType: MIME}).renderModel(model))
          .catch(function () {})
          .then(function () { return window.Plotly || R.Plotly || K.cdn(); });
      }) : K.cdn();
      K.loading = load.then(function (P) {
        if (!P || !P.react) throw new Error("plotly.js did not load");
        return P;
      });
      K.loading.catch(function () { K.loading = null; });
      return K.loading;
    };
    K.draw = function (st) {
      if (st.busy) return;               // the draw under way ends on st.fig
      st.busy = true;
      K.plotly().then(function (Plotly) {
        var next = function () {
          if (st.drawn === st.fig) { st.busy = false; return; }
          var f = st.drawn = st.fig;
          if (st.failed) { st.gd.textContent = ""; st.failed = false; }
          return Promise.resolve(Plotly.react(st.gd, f.data, f.layout, f.config))
            .catch(function (e) { console.error("ksmbook figure:", e); })
            .then(function () { st.width = st.gd.clientWidth; return next(); });
        };
        return next();
      }).catch(function (e) {
        st.busy = false;
        st.drawn = null;
        st.failed = true;
        st.gd.textContent = "This figure needs plotly.js: " + e;
      });
    };
    K.show = function (me) {
      var host = me.parentNode;
      var slot = host.querySelector(".ksmbook-plot-slot");
      var fig = JSON.parse(host.querySelector("script.ksmbook-plot-json").textContent);
      if (!fig.layout.height) fig.layout.height = 360;
      var area = host.closest(".jp-OutputArea") || host;
      var all = area.ksmbookPlots = area.ksmbookPlots || {};
      var key = slot.getAttribute("data-key");
      var st = all[key];
      if (!st) {
        st = all[key] = {gd: document.createElement("div"), fig: null, drawn: null,
                         busy: false, width: 0, failed: false};
        st.gd.className = "ksmbook-plotly";
        if (window.ResizeObserver) new ResizeObserver(function () {
          var wd = st.gd.clientWidth;
          if (st.drawn && !st.busy && wd > 0 && Math.abs(wd - st.width) > 1 && window.Plotly) {
            st.width = wd;
            Promise.resolve(window.Plotly.Plots.resize(st.gd)).catch(function () {});
          }
        }).observe(st.gd);
      }
      slot.replaceWith(st.gd);           // the plot leaves the output this one replaced
      st.fig = fig;
      K.draw(st);
    };
  }
  K.show(me);
})(document.currentScript);"""

_keys = itertools.count(1)


@functools.cache
def _live_js() -> str:
    from plotly.offline import get_plotlyjs_version
    return LIVE_JS % {"version": LIVE_VERSION,
                      "cdn": json.dumps(f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js")}


def figure_json(fig) -> dict:
    """``fig`` (a go.Figure or its dict) as plain JSON types (numpy arrays become
    lists), responsive, with the book's plotly config: what every view draws."""
    d = render.responsive(fig)
    d["config"] = dict(render.PLOTLY_CONFIG)
    return d


def _title(d: dict) -> str:
    t = d.get("layout", {}).get("title")
    t = t.get("text") if isinstance(t, dict) else t
    return f"<figure: {t}>" if t else "<figure>"


def live_html(d: dict, key: str) -> str:
    """The text/html of a live figure: a slot (the figure's title until the script
    runs), the figure JSON and LIVE_JS."""
    # "<" only occurs inside JSON strings: as \u003c no "</script>" or "<!--" ends the tag
    text = json.dumps(d, separators=(",", ":")).replace("<", "\\u003c")
    return (f'<div class="ksmbook-plot-slot" data-key="{key}">{html.escape(_title(d))}</div>'
            f'<script type="application/json" class="ksmbook-plot-json">{text}</script>'
            f"<script>{_live_js()}</script>")


def figure_output(fig, key: str = "0") -> dict:
    """The one output of a Plot: a display_data whose text/html draws the figure
    (``live_html``) and whose text/plain names it."""
    d = figure_json(fig)
    if OUTPUT == "mime":
        return {"output_type": "display_data", "metadata": {},
                "data": {PLOTLY_MIME: d, "text/plain": _title(d)}}
    return {"output_type": "display_data", "metadata": {LIVE_META: {"key": key}},
            "data": {"text/html": live_html(d, key), "text/plain": _title(d)}}


def figure_in_output(output: dict) -> dict:
    """The figure JSON a Plot's output draws (the inverse of figure_output)."""
    if PLOTLY_MIME in output["data"]:
        return output["data"][PLOTLY_MIME]
    text = output["data"]["text/html"]
    tag = '<script type="application/json" class="ksmbook-plot-json">'
    start = text.index(tag) + len(tag)
    return json.loads(text[start:text.index("</script>", start)])


class Plot(w.Output):
    """A live plotly figure: ``show_figure(fig)`` replaces what every view draws."""

    def __init__(self, fig=None, classes=(), **kwargs):
        fig = {"data": [], "layout": {}} if fig is None else fig
        self._key = f"p{next(_keys)}"
        # the figure and the CSS classes go with the comm's opening message
        super().__init__(outputs=(figure_output(fig, self._key),),
                         _dom_classes=tuple(classes), **kwargs)
        self._shown = fig
        self.revision = 0

    def show_figure(self, fig) -> None:
        """Show ``fig`` (a go.Figure or its plain dict) from now on, in every view,
        old or new."""
        self._shown = fig
        new = figure_output(fig, self._key)
        if self.outputs != (new,):
            self.outputs = (new,)
            self.revision += 1

    @property
    def figure(self) -> go.Figure:
        """What the views draw, as a go.Figure (built once from a plain dict)."""
        if not isinstance(self._shown, go.Figure):
            self._shown = go.Figure(self._shown)
        return self._shown

    @property
    def drawn(self) -> dict:
        """The figure JSON every view draws now."""
        return figure_in_output(self.outputs[0])

    @property
    def data(self):
        return self.figure.data

    @property
    def layout(self):
        return self.figure.layout

    def to_dict(self) -> dict:
        return self.figure.to_dict()
