"""Chapter 08's figures: density against likeness, from ``ksmbook.labs.guests``.

Builders only read ``Measurement`` objects.  Mixes differ by colour, dash and marker;
page kinds by colour and pattern, so nothing is told by colour alone.
"""
from __future__ import annotations

import plotly.graph_objects as go

from .style import OKABE_ITO, base_layout, line_style
_KIND_STYLE = {"zero": ("#BBBBBB", ""), "kernel": (OKABE_ITO["orange"], "/"),
               "libs": (OKABE_ITO["sky"], "x"), "private": (OKABE_ITO["black"], ".")}


def density_figure(sweep: dict, *, title: str = "Memory saved as guests are added",
                   width: int = 900, height: int = 460) -> go.Figure:
    """Saved % of guest RAM (y) against the number of guests (x), one line per mix."""
    fig = go.Figure()
    for i, (mix, rows) in enumerate(sweep.items()):
        colour, dash, symbol = line_style(i)
        fig.add_trace(go.Scatter(
            x=[r.guests for r in rows], y=[r.saved_percent for r in rows], name=mix,
            mode="lines+markers", line=dict(color=colour, dash=dash, width=3),
            marker=dict(symbol=symbol, size=10, color=colour),
            customdata=[[r.guests_per_gib()] for r in rows],
            hovertemplate=mix + ": %{y:.1f}% saved with %{x} guests "
                          "(%{customdata[0]:.0f} guests per GiB)<extra></extra>"))
    fig.update_layout(**base_layout(title, width, height, margin=dict(l=80, r=20, t=90, b=60)))
    counts = sorted({r.guests for rows in sweep.values() for r in rows})
    fig.update_xaxes(title_text="guests (log scale)", type="log", tickvals=counts,
                     ticktext=[str(c) for c in counts], gridcolor="#EEEEEE")
    fig.update_yaxes(title_text="guest RAM saved (%)", range=[0, 100], gridcolor="#EEEEEE")
    return fig


def density_cpu_figure(sweep: dict, *, page_size: int = 4096,
                       title: str = "Density bought with ksmd CPU",
                       width: int = 900, height: int = 460) -> go.Figure:
    """Guests per GiB of host RAM (y) against the ksmd CPU it took to merge them (x).

    One line per mix, points in order of guest count; the dotted line is the density
    with KSM off (guest RAM only, every page its own frame)."""
    fig = go.Figure()
    top_x = 1.0
    for i, (mix, rows) in enumerate(sweep.items()):
        colour, dash, symbol = line_style(i)
        top_x = max([top_x] + [r.ksmd_cpu_ms for r in rows])
        fig.add_trace(go.Scatter(
            x=[r.ksmd_cpu_ms for r in rows], y=[r.guests_per_gib(page_size) for r in rows],
            name=mix, mode="lines+markers", line=dict(color=colour, dash=dash, width=3),
            marker=dict(symbol=symbol, size=10, color=colour),
            customdata=[[r.guests, r.full_scans] for r in rows],
            hovertemplate=mix + ": %{customdata[0]} guests, %{y:.0f} per GiB after "
                          "%{x:.1f} ms of ksmd CPU (%{customdata[1]} full scans)<extra></extra>"))
    off = [2**30 / (rows[0].image.pages * page_size) for rows in sweep.values() if rows]
    if off:
        fig.add_hline(y=off[0], line=dict(color="#444444", width=1, dash="dot"),
                      annotation_text="KSM off", annotation_position="bottom right")
    fig.update_layout(**base_layout(title, width, height, margin=dict(l=80, r=20, t=90, b=60)))
    fig.update_xaxes(title_text="ksmd CPU to merge (ms, 5.5 µs per processed page)",
                     range=[0, top_x * 1.05], gridcolor="#EEEEEE")
    fig.update_yaxes(title_text="guests per GiB of host RAM", rangemode="tozero",
                     gridcolor="#EEEEEE")
    return fig


def breakdown_figure(rows, *, title: str = "Where the saving comes from",
                     width: int = 900, height: int = 420) -> go.Figure:
    """Stacked bars: frames saved per page kind, one bar per measurement (labelled by mix)."""
    fig = go.Figure()
    labels = [f"{r.mix} ({r.guests} guests)" for r in rows]
    for kind in ("zero", "kernel", "libs"):
        colour, pattern = _KIND_STYLE[kind]
        fig.add_trace(go.Bar(
            y=labels, x=[100.0 * r.saved[kind] / r.pages for r in rows], name=kind,
            orientation="h", marker=dict(color=colour, pattern_shape=pattern,
                                         line=dict(color="#333333", width=1)),
            hovertemplate=kind + ": %{x:.1f}% of guest RAM<extra>%{y}</extra>"))
    fig.update_layout(**base_layout(title, width, height, barmode="stack",
                                    margin=dict(l=230, r=20, t=90, b=60)))
    fig.update_xaxes(title_text="guest RAM saved (%), by page kind", range=[0, 100],
                     gridcolor="#EEEEEE")
    fig.update_yaxes(autorange="reversed")
    return fig


def divergence_figure(points, *, title: str = "As guests diverge, the saving goes",
                      width: int = 900, height: int = 420) -> go.Figure:
    """Saved % (y) against the fraction of free and library pages each guest rewrote (x)."""
    xs = [100 * f for f, _r in points]
    fig = go.Figure()
    for kind in ("zero", "kernel", "libs"):
        colour, pattern = _KIND_STYLE[kind]
        fig.add_trace(go.Bar(x=xs, y=[100.0 * r.saved[kind] / r.pages for _f, r in points],
                             name=kind, marker=dict(color=colour, pattern_shape=pattern,
                                                    line=dict(color="#333333", width=1)),
                             hovertemplate=kind + ": %{y:.1f}%<extra>%{x}% rewritten</extra>"))
    fig.update_layout(**base_layout(title, width, height, barmode="stack",
                                    margin=dict(l=80, r=20, t=90, b=60)))
    fig.update_xaxes(title_text="free and library pages each guest has rewritten (%)",
                     tickvals=xs, gridcolor="#EEEEEE")
    fig.update_yaxes(title_text="guest RAM saved (%)", range=[0, 100], gridcolor="#EEEEEE")
    return fig
