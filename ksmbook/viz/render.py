"""How the book's figures are saved in a notebook: one MIME bundle that every
reader of the .ipynb can show.

plotly's default renderer in a kernel (``plotly_mimetype``) stores only
``application/vnd.plotly.v1+json``, which JupyterLab draws but nbconvert,
jupyter-book/myst-nb, nbviewer and GitHub skip.  The ``ksmbook`` renderer
keeps that bundle (JupyterLab still uses it) and adds

* ``text/html``: the plotly div and its ``Plotly.newPlot`` call, *without*
  plotly.js (``include_plotlyjs=False``): the page loads plotly.js once (the
  static site adds it to every page, see book/conf.py) instead of 4.8 MB per
  figure; the div id is a hash of the figure, so a re-run stores the same text;
* a static ``image/svg+xml`` (or ``image/png``) when asked for with
  ``KSMBOOK_STATIC_IMAGES=svg|png`` and kaleido (>= 1, which drives a Chrome or
  Chromium; ``BROWSER_PATH`` or /usr/bin/chromium) can draw it.  Without
  kaleido or a browser the figure is saved without the image and one line on
  the kernel's stderr says why: nothing fails.  ``make execute-notebooks``
  asks for svg.

``html_and_image`` gives the same two outputs for a widget's current figure
(widgets/views.py uses it for the picture a page shows when no kernel runs).

Width: every builder designs its figure at a fixed ``layout.width`` (900 px for
most).  The saved plotly JSON and HTML are *responsive* instead
(``responsive()``: no width, ``autosize``; see PLOTLY_CONFIG), so a
figure fills the output area, in an 800 px window too, rather than being cut off
at its right edge; the height stays as designed.  The static image is drawn at
the designed width.  (The live widgets keep the designed width while it fits and
shrink to the view otherwise: widgets/plot.js.)
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings

import plotly.io as pio
from plotly.io._base_renderers import PlotlyRenderer

RENDERER = "ksmbook"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
IMAGE_ENV = "KSMBOOK_STATIC_IMAGES"
_image_failed: list[str] = []      # the reason, once: kaleido is not retried per figure
# The book's plotly config for every figure it sends.  Not ``responsive``: with it,
# ``autosize`` and no ``layout.width``, plotly.js sizes the plot's containers at 100% of
# the figure div, whose height is auto; once ``Plots.resize`` (which JupyterLab's plotly
# renderer calls on every panel resize) has dropped ``layout.height`` the figure
# collapses to 0 px.  ``autosize`` alone still fills the width whenever plotly.js lays
# the figure out, and keeps the designed height.
PLOTLY_CONFIG = {"displaylogo": False, "responsive": False}


def _fig_dict(fig) -> dict:
    return fig if isinstance(fig, dict) else fig.to_dict()


def responsive(fig) -> dict:
    """A copy of the figure's dict that fills its container's width (no
    ``layout.width``, ``autosize``); the designed height is kept."""
    d = json.loads(json.dumps(_fig_dict(fig), default=_json_default))
    layout = d.setdefault("layout", {})
    layout.pop("width", None)
    layout["autosize"] = True
    return d


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()            # numpy arrays and scalars
    return str(o)


def figure_id(fig) -> str:
    """A div id that depends only on the figure (stable stored outputs)."""
    text = json.dumps(_fig_dict(fig), sort_keys=True, default=str)
    return "ksmbook-fig-" + hashlib.sha1(text.encode()).hexdigest()[:12]


def figure_html(fig) -> str:
    """The figure as an HTML fragment that needs plotly.js loaded once by the page."""
    return pio.to_html(responsive(fig), include_plotlyjs=False, full_html=False,
                       div_id=figure_id(fig), validate=False, default_width="100%",
                       config=dict(PLOTLY_CONFIG))


def wanted_image_format() -> str | None:
    fmt = os.environ.get(IMAGE_ENV, "").strip().lower()
    return fmt if fmt in ("svg", "png") else None


_server: list[bool] = []


def _start_kaleido() -> None:
    """One Chromium for the whole session (0.4 s a figure instead of 5 s)."""
    if _server:
        return
    import atexit
    import kaleido
    kaleido.start_sync_server(silence_warnings=True)
    atexit.register(kaleido.stop_sync_server, silence_warnings=True)
    _server.append(True)


def static_image(fig) -> dict:
    """``{mime: data}`` of the figure drawn by kaleido, or {} (not asked for, or
    kaleido / a browser missing: warned once)."""
    fmt = wanted_image_format()
    if fmt is None or _image_failed:
        return {}
    if not os.environ.get("BROWSER_PATH") and os.path.exists("/usr/bin/chromium"):
        os.environ["BROWSER_PATH"] = "/usr/bin/chromium"     # kaleido cannot download one offline
    try:
        _start_kaleido()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)     # "kopts ignored with a server"
            data = pio.to_image(fig, format=fmt, validate=False)
    except Exception as exc:         # kaleido missing, no Chrome, Chrome crashed...
        _image_failed.append(f"{type(exc).__name__}: {exc}")
        # the kernel's own stderr (the terminal running nbconvert), not the cell's
        # output: a stored warning would differ between machines with and without kaleido
        print(f"ksmbook: no static {fmt} images for the figures ({_image_failed[0]}); "
              f"unset {IMAGE_ENV} or install kaleido>=1 and chromium", file=sys.__stderr__)
        return {}
    if fmt == "svg":
        return {"image/svg+xml": data.decode()}
    import base64
    return {"image/png": base64.b64encode(data).decode()}


def html_and_image(fig) -> dict:
    """text/html (+ a static image if wanted) of one figure."""
    return {"text/html": figure_html(fig), **static_image(fig)}


class BookRenderer(PlotlyRenderer):
    """plotly's MIME bundle plus text/html and an optional static image."""

    def to_mimebundle(self, fig_dict):
        image = static_image(fig_dict)                      # at the designed width
        bundle = super().to_mimebundle(responsive(fig_dict))
        bundle[PLOTLY_MIME].setdefault("config", {}).update(PLOTLY_CONFIG)
        bundle["text/html"] = figure_html(fig_dict)
        bundle.update(image)
        return bundle


def install() -> None:
    """Register the renderer and make it the default inside a Jupyter kernel
    (where plotly would pick ``plotly_mimetype``); elsewhere (a terminal, a
    test) plotly's own choice is kept.  ``PLOTLY_RENDERER`` still wins."""
    if RENDERER not in pio.renderers:
        pio.renderers[RENDERER] = BookRenderer(config={"displaylogo": False})
    if os.environ.get("PLOTLY_RENDERER"):
        return
    if pio.renderers.default in ("plotly_mimetype", "plotly_mimetype+notebook"):
        pio.renderers.default = RENDERER
