"""KSM's counters over time: one point per full scan, one line per counter.

Each counter has its own colour, dash and marker, so the lines stay apart in
greyscale too.  The history is a list of counter dicts (``m.ksm.stats()`` or a
snapshot's ``counters``) that all carry ``full_scans``; a record may also carry
``mid_scan`` (ksmd's cursor was inside a full scan when it was taken).  Such a
record is not a full scan's end: only the last one is drawn, as an open marker
half-way to the next scan, labelled "now".
"""
from __future__ import annotations

from .style import OKABE_ITO, base_layout, plain_builder, scatter

DEFAULT = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile")
STYLE = {
    "pages_shared": (OKABE_ITO["vermillion"], "solid", "circle"),
    "pages_sharing": (OKABE_ITO["orange"], "dash", "square"),
    "pages_unshared": (OKABE_ITO["blue"], "dot", "diamond"),
    "pages_volatile": (OKABE_ITO["grey"], "dashdot", "x"),
    "ksm_zero_pages": (OKABE_ITO["green"], "longdash", "triangle-up"),
    "pages_skipped": (OKABE_ITO["purple"], "longdashdot", "star"),
    "pages_scanned": (OKABE_ITO["black"], "solid", "cross"),
}


def per_full_scan(history) -> list[dict]:
    """The state after each full scan: the last record of each full_scans value that
    was not taken mid-scan."""
    out = {}
    for rec in history:
        if not rec.get("mid_scan"):
            out[rec["full_scans"]] = rec
    return [out[k] for k in sorted(out)]


def now_mid_scan(history) -> dict | None:
    """The newest record, if ksmd was inside a full scan when it was taken."""
    return history[-1] if history and history[-1].get("mid_scan") else None


@plain_builder
def counters_figure(history, counters=DEFAULT, *, title: str | None = None,
                    width: int = 900, height: int = 420) -> dict:
    rows = per_full_scan(history)
    now = now_mid_scan(history)
    xs = [r["full_scans"] for r in rows]
    labels = [f"after full scan {x}" for x in xs]
    if now is not None:
        rows = rows + [now]
        xs = xs + [now["full_scans"] + 0.5]
        labels.append(f"now, during full scan {now['full_scans'] + 1}")
    traces = []
    for i, name in enumerate(counters):
        colour, dash, symbol = STYLE.get(name, (OKABE_ITO["black"], "solid", "circle"))
        # earlier lines are drawn wider, so a later line lying on top leaves them visible
        line_width = max(2.5, 6.5 - 1.5 * i)
        traces.append(scatter(
            x=xs, y=[r[name] for r in rows], mode="lines+markers", name=name,
            line=dict(color=colour, dash=dash, width=line_width),
            marker=dict(symbol=[symbol] * (len(xs) - (now is not None)) +
                        ([f"{symbol}-open"] if now is not None else []),
                        size=max(8, 15 - 2 * i), color=colour),
            customdata=labels,
            hovertemplate=f"{name} = %{{y}} %{{customdata}}<extra></extra>"))
    top = max([r[c] for r in rows for c in counters] + [1])
    if title is None:
        title = "KSM counters after each full scan" + (
            " (open marker: now, mid-scan)" if now is not None else "")
    layout = base_layout(title, width, height,
                         margin=dict(l=70, r=20, t=60, b=60))
    # a column at the right: room for any number of counters, never over the title
    layout["legend"].update(orientation="v", y=1.0, yanchor="top", x=1.02, xanchor="left")
    layout["xaxis"] = dict(title=dict(text="full_scans"), dtick=1, range=[min(xs, default=0) - 0.3,
                                                               max(xs, default=1) + 0.3],
                           showgrid=True, gridcolor="#EEEEEE", zeroline=False)
    layout["yaxis"] = dict(title=dict(text="pages"), rangemode="tozero", range=[-0.3, top * 1.1 + 0.3],
                           showgrid=True, gridcolor="#EEEEEE", zeroline=False,
                           dtick=max(1, round(top / 8)))
    return {"data": traces, "layout": layout}


def counters_table(history, counters=DEFAULT) -> str:
    """The text twin: a table of the counters per full scan."""
    rows = per_full_scan(history)
    head = "full_scans " + " ".join(f"{c:>15}" for c in counters)
    lines = [head] + [f"{r['full_scans']:>10} " + " ".join(f"{r[c]:>15}" for c in counters)
                      for r in rows]
    now = now_mid_scan(history)
    if now is not None:
        lines.append(f"{'now*':>10} " + " ".join(f"{now[c]:>15}" for c in counters))
        lines.append(f"* mid-scan: full scan {now['full_scans'] + 1} in progress")
    return "\n".join(lines)
