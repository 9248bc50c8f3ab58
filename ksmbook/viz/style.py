"""One look for every figure of the book: palette, fonts, blank axes, in-place sync.

Colours are the Okabe-Ito palette (safe for the common colour-vision
deficiencies); every colour is paired with a second cue (marker symbol, dash or
text) so that nothing is told by colour alone.
"""
from __future__ import annotations

import functools

import plotly.graph_objects as go

# Okabe & Ito, "Color Universal Design" (2008)
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky": "#56B4E9", "green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7",
    "grey": "#999999",
}

ROLE_COLOURS = {
    "anon": OKABE_ITO["sky"],
    "ksm": OKABE_ITO["orange"],
    "zero": "#D9D9D9",
    "shmem": OKABE_ITO["green"],
    "table": OKABE_ITO["purple"],
    "free": "#FFFFFF",
}
#: the marker colour of a role (an open square's outline for free frames)
ROLE_MARKERS = {**ROLE_COLOURS, "free": "#999999"}
ROLE_SYMBOLS = {"anon": "square", "ksm": "square", "zero": "square", "shmem": "square",
                "table": "square", "free": "square-open"}

FONT = dict(family="DejaVu Sans, Arial, sans-serif", size=14, color="#222222")
TITLE_SIZE = 18
LABEL_SIZE = 13
BG = "#FFFFFF"


#: Lines told apart by colour, dash *and* marker: run i of a figure takes line_style(i).
LINE_STYLES = ((OKABE_ITO["blue"], "solid", "circle"), (OKABE_ITO["vermillion"], "dash", "square"),
               (OKABE_ITO["green"], "dot", "diamond"), (OKABE_ITO["purple"], "dashdot", "x"),
               (OKABE_ITO["orange"], "longdash", "triangle-up"))


def line_style(i: int) -> tuple[str, str, str]:
    """(colour, dash, marker symbol) of the i-th line of a figure, cycling."""
    return LINE_STYLES[i % len(LINE_STYLES)]


#: characters of a title line that fit the ~600 px output of an 800 px window
TITLE_CHARS = 58
TITLE_LINE_PX = 24


def _greedy_lines(words: list[str], chars: int) -> list[str]:
    lines, line = [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > chars:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return lines + [line]


def wrap_title(title: str, chars: int = TITLE_CHARS) -> str:
    """``title`` broken into lines of at most ``chars`` characters at spaces (plotly
    never wraps a title: a long one was cut at the right in an 800 px window), as
    few lines as that takes and of about equal length (no lone last word).  A title
    that already has a ``<br>`` is kept as it is."""
    if not title or "<br>" in title or len(title) <= chars:
        return title
    words = title.split(" ")
    lines = _greedy_lines(words, chars)
    for narrower in range(-(-len(title) // len(lines)), chars):
        even = _greedy_lines(words, narrower)
        if len(even) == len(lines):
            lines = even
            break
    return "<br>".join(lines)


def title_pad(text: str) -> float:
    """Pixels above a title anchored at the figure's top edge (``yanchor="top"``).

    plotly.js shifts a title down by 0.7 em (``dy``) so that its top, not its baseline,
    sits at the anchor; a multi-line title is drawn as one ``<tspan>`` per line, each
    with its own ``y``, and that shift is lost: the first line's baseline sat on the
    figure's top edge, its letters above it, over the output before it (every
    wrapped title of the book, at every width).  The pad puts the shift back."""
    return 10 + (round(0.7 * TITLE_SIZE) if "<br>" in (text or "") else 0)


def base_layout(title: str, width: int, height: int, **extra) -> dict:
    """Layout shared by every builder: white, explicit size, big fonts, no zoom clutter.
    A title too long for an 800 px window is wrapped (``wrap_title``); the figure then
    grows by the extra lines above its plot, whose size stays as designed."""
    wrapped = wrap_title(title)
    more = wrapped.count("<br>") - (title or "").count("<br>")
    layout = dict(
        # at the top edge, not in the middle of the top margin: a legend above the plot,
        # wrapped into rows in a narrow window, grows up into that margin without
        # running over the title
        title=dict(text=wrapped, x=0.01, xanchor="left", y=1.0, yref="container",
                   yanchor="top", pad=dict(t=title_pad(wrapped)), font=dict(size=TITLE_SIZE)),
        width=width, height=height, font=FONT, plot_bgcolor=BG, paper_bgcolor=BG,
        margin=dict(l=20, r=20, t=60, b=20), hoverlabel=dict(font=dict(size=13)),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0,
                    font=dict(size=13)),
        showlegend=True,
        # everything is styled here; keeps stored outputs small.  plotly's "none"
        # template as go.Figure spells it out, so a plain-dict figure (plain_builder)
        # draws and compares the same as its go.Figure
        template={"data": {"scatter": [{"type": "scatter"}]}},
    )
    layout.update(extra)
    if more:
        layout["margin"] = {**layout["margin"], "t": layout["margin"].get("t", 60)
                            + more * TITLE_LINE_PX}
        layout["height"] = height + more * TITLE_LINE_PX
    return layout


def blank_axis(lo: float, hi: float, **extra) -> dict:
    axis = dict(range=[lo, hi], visible=False, fixedrange=True, zeroline=False,
                showgrid=False)
    axis.update(extra)
    return axis


def plain_builder(build):
    """Make ``build`` (which returns a figure as plain dicts: ``{"data": [{"type":
    "scatter", ...}], "layout": {...}}``) a builder of ``go.Figure`` objects, and keep
    the plain one as ``.plain``.

    Why: plotly's graph objects validate every property as it is set; building chapter
    03's trees figure that way took 650 of a click's 950 ms.  The live views
    (widgets/views.py) call ``builder.plain(...)`` and send the dict as it is; readers,
    exercises and tests get the usual ``go.Figure`` (validated once, off the click path).
    """
    @functools.wraps(build)
    def figure(*args, **kwargs) -> go.Figure:
        return go.Figure(build(*args, **kwargs))
    figure.plain = build
    return figure


def scatter(**props) -> dict:
    """A scatter trace as a plain dict (what ``go.Scatter(**props)`` would hold)."""
    return {"type": "scatter", **props}


def sync_figure(target, source) -> None:
    """Make ``target`` show ``source``.

    A live figure of the widgets (``widgets.plot.Plot``: anything with
    ``show_figure``) replaces its whole state, which every view, old or new, draws
    (see widgets/plot.py for why not plotly's FigureWidget).  A plain figure is
    restyled in place: builders keep a fixed list of traces per figure kind, so the
    traces are updated, or replaced when their number or types differ.
    """
    if hasattr(target, "show_figure"):
        target.show_figure(source)
        return
    if len(target.data) != len(source.data) or any(
            a.type != b.type for a, b in zip(target.data, source.data)):
        target.data = ()
        target.add_traces(list(source.data))
        target.layout.update(source.layout.to_plotly_json(), overwrite=True)
    else:
        for old, new in zip(target.data, source.data):
            old.update(new.to_plotly_json(), overwrite=True)
        target.layout.update(source.layout.to_plotly_json(), overwrite=True)
    # layout.update() skips an empty tuple: without this, the boxes and labels of the
    # previous figure would stay when the new one has none
    target.layout.shapes = source.layout.shapes
    target.layout.annotations = source.layout.annotations


def empty_figure() -> go.Figure:
    return go.Figure(layout=base_layout("", 400, 200))
