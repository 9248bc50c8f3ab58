"""Chapter 06's figures: memory saved against ksmd CPU, from ``ksmbook.labs.tuning``.

Each builder takes ``Timeline`` objects (plain data) and only reads them.  Runs are
told apart by colour *and* dash and marker, so the lines stay apart in greyscale.
"""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import OKABE_ITO, base_layout, line_style


def saving_and_cpu_figure(timelines, *, title: str = "Memory saved and ksmd CPU over time",
                          width: int = 900, height: int = 560) -> go.Figure:
    """Top: MiB saved (pages_sharing + ksm_zero_pages); bottom: ksmd CPU % per interval."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        row_heights=[0.6, 0.4])
    for i, tl in enumerate(timelines):
        colour, dash, symbol = line_style(i)
        xs = [s.t_ms / 1000 for s in tl.samples]
        common = dict(mode="lines+markers", line=dict(color=colour, dash=dash, width=3),
                      marker=dict(symbol=symbol, size=7, color=colour), legendgroup=tl.label)
        fig.add_trace(go.Scatter(x=xs, y=[s.saved_bytes / 2**20 for s in tl.samples],
                                 name=tl.label, hovertemplate="%{y:.2f} MiB saved at %{x:.1f} s"
                                 "<extra>" + tl.label + "</extra>", **common), row=1, col=1)
        fig.add_trace(go.Scatter(x=xs[1:], y=[s.cpu_percent for s in tl.samples[1:]],
                                 name=tl.label, showlegend=False,
                                 hovertemplate="ksmd CPU %{y:.1f}% at %{x:.1f} s<extra>" +
                                 tl.label + "</extra>", **common), row=2, col=1)
    fig.update_layout(**base_layout(title, width, height, margin=dict(l=80, r=20, t=90, b=60)))
    fig.update_yaxes(title_text="MiB saved", rangemode="tozero", gridcolor="#EEEEEE", row=1, col=1)
    fig.update_yaxes(title_text="ksmd CPU %", rangemode="tozero", gridcolor="#EEEEEE", row=2, col=1)
    fig.update_xaxes(title_text="simulated time (s)", gridcolor="#EEEEEE", row=2, col=1)
    fig.update_xaxes(gridcolor="#EEEEEE", row=1, col=1)
    return fig


#: pixels between an axis and its tick labels in the trade-off figure
TICK_STANDOFF = 8


def tradeoff_figure(timelines, *, title: str = "Faster merging costs ksmd CPU",
                    width: int = 900, height: int = 460) -> go.Figure:
    """One point per run: mean ksmd CPU % (x) against the time to 90% of its saving (y)."""
    pts = [(tl.mean_cpu_percent(), tl.time_to_save(), tl.label) for tl in timelines]
    pts = [(x, y / 1000, label) for x, y, label in pts if y is not None]
    top_x = max([x for x, _y, _l in pts] + [1])
    x_max = top_x * 1.45
    fig = go.Figure()
    for i, (x, y, label) in enumerate(pts):
        colour, _dash, symbol = line_style(i)
        # of two neighbouring points, the higher one is labelled above, the lower below
        near = min((p for p in pts if p[2] != label), key=lambda p: abs(p[0] - x), default=None)
        above = near is None or y >= near[1]
        # a point in the right half is labelled to its left: at 800 px the label of
        # the fastest run ("pages_to_scan=1600") was cut at the plot's right edge
        side = "left" if x > x_max / 2 else "right"
        fig.add_trace(go.Scatter(
            x=[x], y=[y], mode="markers+text", name=label, text=[label],
            textposition=f"{'top' if above else 'bottom'} {side}",
            marker=dict(symbol=symbol, size=14, color=colour),
            hovertemplate=f"{label}: %{{x:.1f}}% CPU, 90% saved after %{{y:.1f}} s<extra></extra>"))
    top_y = max([y for _x, y, _l in pts] + [1])
    fig.update_layout(**base_layout(title, width, height, showlegend=False,
                                    margin=dict(l=80, r=40, t=60, b=60)))
    # the tick labels stand off their axes: both ranges start at 0, and the two "0"
    # labels touched at the origin
    fig.update_xaxes(title_text="mean ksmd CPU % (5.5 µs per processed page)",
                     range=[0, x_max], gridcolor="#EEEEEE", ticklabelstandoff=TICK_STANDOFF)
    fig.update_yaxes(title_text="seconds to 90% of the saving", range=[0, top_y * 1.25],
                     gridcolor="#EEEEEE", ticklabelstandoff=TICK_STANDOFF)
    return fig


def profit_figure(timelines, *, title: str = "general_profit: saved memory minus rmap_items",
                  width: int = 900, height: int = 420) -> go.Figure:
    """general_profit over time; a line below zero is KSM costing more than it saves."""
    fig = go.Figure()
    for i, tl in enumerate(timelines):
        colour, dash, symbol = line_style(i)
        fig.add_trace(go.Scatter(
            x=[s.t_ms / 1000 for s in tl.samples],
            y=[s.general_profit / 2**10 for s in tl.samples], name=tl.label,
            mode="lines+markers", line=dict(color=colour, dash=dash, width=3),
            marker=dict(symbol=symbol, size=7, color=colour),
            hovertemplate="%{y:.0f} KiB at %{x:.1f} s<extra>" + tl.label + "</extra>"))
    fig.add_hline(y=0, line=dict(color="#444444", width=1))
    fig.update_layout(**base_layout(title, width, height, margin=dict(l=80, r=20, t=90, b=60)))
    fig.update_xaxes(title_text="simulated time (s)", gridcolor="#EEEEEE")
    fig.update_yaxes(title_text="general_profit (KiB)", gridcolor="#EEEEEE")
    return fig


def sharing_limit_figure(timelines, *, title: str = "max_page_sharing: KSM pages against the frames saved",
                         width: int = 900, height: int = 420) -> go.Figure:
    """Per run (one value of max_page_sharing): frames still used by KSM pages
    (``pages_shared``) and frames saved (``pages_sharing``), stacked to the copies merged."""
    labels = [tl.label for tl in timelines]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=labels, y=[tl.final.pages_shared for tl in timelines],
                         name="KSM pages (frames kept, pages_shared)",
                         marker=dict(color=OKABE_ITO["vermillion"], pattern=dict(shape="/"),
                                     line=dict(color="#333333", width=1)),
                         hovertemplate="%{x}: %{y} KSM pages<extra></extra>"))
    fig.add_trace(go.Bar(x=labels, y=[tl.final.pages_sharing for tl in timelines],
                         name="frames saved (pages_sharing)",
                         marker=dict(color=OKABE_ITO["blue"], line=dict(color="#333333", width=1)),
                         hovertemplate="%{x}: %{y} frames saved<extra></extra>"))
    fig.update_layout(**base_layout(title, width, height, margin=dict(l=80, r=20, t=90, b=60)),
                      barmode="stack")
    fig.update_yaxes(title_text="frames (4 KiB)", rangemode="tozero", gridcolor="#EEEEEE")
    return fig
