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

``Plot`` is an ipywidgets ``Output`` widget whose one output is the figure, as the
plotly MIME bundle, replaced whole on every update (``outputs`` is a synced trait
of a core widget model: no module to load, no gate, nothing dropped).  Every view
of an Output widget draws the model's *current* outputs, with JupyterLab's plotly
renderer (the jupyterlab-plotly extension, which loads plotly.js once per page for
all figures).  So whatever the order of kernel messages, model creation and view
creation (a cell scrolled into view late in a windowed notebook), every view ends
on the last figure.  The figure is sent responsive (``render.responsive``): it
fills the view's width, an 800 px window included, at its designed height.

``show_figure`` takes a ``go.Figure`` or the same figure as plain dicts, which is what
the steppers send (``viz`` builders' ``.plain``, see ``viz.style.plain_builder``): a
click then never goes through plotly's validating graph objects.  ``Plot`` keeps what
it shows; ``figure`` (a ``go.Figure``, built from the dict on first use), ``data``,
``layout`` and ``to_dict()`` read like a figure's.
"""
from __future__ import annotations

import ipywidgets as w
import plotly.graph_objects as go

from ..viz import render

PLOTLY_MIME = render.PLOTLY_MIME


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


def figure_output(fig) -> dict:
    """The one output of a Plot: a display_data with the plotly MIME bundle."""
    return {"output_type": "display_data", "metadata": {},
            "data": {PLOTLY_MIME: (d := figure_json(fig)), "text/plain": _title(d)}}


class Plot(w.Output):
    """A live plotly figure: ``show_figure(fig)`` replaces what every view draws."""

    def __init__(self, fig=None, classes=(), **kwargs):
        fig = {"data": [], "layout": {}} if fig is None else fig
        # the figure and the CSS classes go with the comm's opening message
        super().__init__(outputs=(figure_output(fig),), _dom_classes=tuple(classes), **kwargs)
        self._shown = fig
        self.revision = 0

    def show_figure(self, fig) -> None:
        """Show ``fig`` (a go.Figure or its plain dict) from now on, in every view,
        old or new."""
        self._shown = fig
        new = figure_output(fig)
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
        return self.outputs[0]["data"][PLOTLY_MIME]

    @property
    def data(self):
        return self.figure.data

    @property
    def layout(self):
        return self.figure.layout

    def to_dict(self) -> dict:
        return self.figure.to_dict()
