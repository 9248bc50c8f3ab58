"""One figure per view, created once and then updated in place.

A view is a builder (snapshot + counter history -> plotly Figure) and its text
twin.  ``FigureView`` wraps the builder's first figure in a live ``Plot`` (see
plot.py) and, on every later ``update``, builds a fresh plain Figure and shows it:
the Plot's state is replaced whole, and every view, made before or after, draws it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import plotly.graph_objects as go

from .. import viz
from ..viz.snapshot import PAGE_COUNTERS
from .plot import Plot


ALL_COUNTERS = PAGE_COUNTERS


@dataclass(frozen=True)
class ViewSpec:
    build: Callable          # (snapshot, history) -> a figure (go.Figure or its plain dict)
    text: Callable           # (snapshot, history) -> str
    #: build/text also take the snapshot before the last step (None after a reset), to
    #: mark what it changed
    with_before: bool = False
    #: False: drawn from the counter history alone (the app need not copy the machine's
    #: pages into a snapshot for it: a step of a 4,096-page stepper is then cheap)
    uses_snapshot: bool = True

    def figure(self, snap, history, before=None):
        return self.build(snap, history, before) if self.with_before else self.build(snap, history)

    def twin(self, snap, history, before=None) -> str:
        return self.text(snap, history, before) if self.with_before else self.text(snap, history)


# the live views build plain dicts (``.plain``): no plotly validation on a click
VIEWS = {
    "mappings": ViewSpec(lambda s, h: viz.mappings_figure.plain(s),
                         lambda s, h: viz.mappings_text(s)),
    # the trees mark what the last step moved (a page leaving the unstable tree ...)
    "trees": ViewSpec(lambda s, h, b: viz.trees_figure.plain(s, before=b),
                      lambda s, h, b: viz.trees_text(s, before=b), with_before=True),
    "frames": ViewSpec(lambda s, h: viz.frame_map_figure.plain(s),
                       lambda s, h: viz.frame_map_text(s)),
    "counters": ViewSpec(lambda s, h: viz.counters_figure.plain(h),
                         lambda s, h: viz.counters_table(h), uses_snapshot=False),
    # the same with the zero-page and smart-scan counters (chapter 05)
    "counters_all": ViewSpec(lambda s, h: viz.counters_figure.plain(h, ALL_COUNTERS),
                             lambda s, h: viz.counters_table(h, ALL_COUNTERS),
                             uses_snapshot=False),
}


def figure_widget(fig, classes=()) -> Plot:
    """A live figure (see plot.py) showing ``fig`` (a go.Figure or its dict);
    ``classes`` are CSS classes of its views, given at creation so that they arrive
    with the widget."""
    return Plot(fig, classes=classes)


class FigureView:
    """One live figure: ``widget`` is created once; ``update`` restyles it in place."""

    def __init__(self, name: str, spec: ViewSpec, snap, history, factory=figure_widget):
        self.name = name
        self.spec = spec
        self.widget = factory(spec.figure(snap, history),
                              classes=("ksmbook-view", f"ksmbook-view-{name}"))
        self.updates = 0
        self.shown = False       # set once the app is displayed (informational)

    def update(self, snap, history, before=None) -> None:
        viz.sync_figure(self.widget, self.spec.figure(snap, history, before))
        self.updates += 1

    def text(self, snap, history, before=None) -> str:
        return self.spec.twin(snap, history, before)


def _figure_widgets(widget):
    """Every live figure (Plot) inside ``widget`` (an ipywidgets box tree), in order."""
    if isinstance(widget, Plot):
        return [widget]
    found = []
    for child in getattr(widget, "children", ()) or ():
        found += _figure_widgets(child)
    return found


def kernel_free_bundle(box, text: str) -> dict:
    """What a page shows of a widget app when no kernel runs (a static site,
    nbviewer, GitHub): the figures the widgets draw now (their first picture,
    since the book displays an app before anyone clicks) and the text twin.
    JupyterLab with a kernel prefers the widget view and never shows this."""
    import html as _html
    from ..viz import render
    parts, images = [], {}
    for fw in _figure_widgets(box):
        fig = go.Figure(fw.to_dict())
        parts.append(render.figure_html(fig))
        if not images:
            images = render.static_image(fig)
    parts.append("<pre class='ksmbook-text-twin'>" + _html.escape(text) + "</pre>")
    return {"text/html": "<div class='ksmbook-static-app'>" + "\n".join(parts) + "</div>",
            **images}
