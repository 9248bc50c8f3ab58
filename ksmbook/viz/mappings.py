"""Who maps what: every present PTE drawn as a line from a virtual page to its frame.

Virtual pages (grouped by process) sit in the left column, frames in the right
one, ordered to keep lines short.  When KSM merges, several lines meet at one
orange frame; a read-only PTE is drawn dashed (a write to it will fault).
Fixed traces: writable lines, read-only lines, virtual pages, then one trace of
frames per role.
"""
from __future__ import annotations

import plotly.graph_objects as go

from .snapshot import ROLE_NAMES, ROLES, MachineSnapshot
from .style import LABEL_SIZE, OKABE_ITO, ROLE_COLOURS, base_layout, blank_axis

ROW = 26           # pixels per row


def _rows(snap: MachineSnapshot):
    """Virtual pages in process order, frames ordered by the mean row of their mappers."""
    maps = sorted(snap.mappings, key=lambda m: (m.pid, m.address))
    vrow = {(m.pid, m.address): i for i, m in enumerate(maps)}
    by_frame = {}
    for m in maps:
        by_frame.setdefault(m.pfn, []).append(vrow[(m.pid, m.address)])
    frames = sorted(by_frame, key=lambda pfn: (sum(by_frame[pfn]) / len(by_frame[pfn]), pfn))
    n_v, n_f = len(maps), len(frames)
    span = max(n_v, n_f, 1) - 1
    # spread the shorter column over the height of the longer one
    fy = {pfn: -(i * span / (n_f - 1) if n_f > 1 else span / 2) for i, pfn in enumerate(frames)}
    vy = {key: -(i * span / (n_v - 1) if n_v > 1 else span / 2) for key, i in vrow.items()}
    return maps, frames, vy, fy, span


def _line_trace(segments, name, dash, colour) -> go.Scatter:
    xs, ys = [], []
    for y0, y1 in segments:
        xs += [0.0, 1.0, None]
        ys += [y0, y1, None]
    return go.Scatter(x=xs, y=ys, mode="lines", name=name, hoverinfo="skip",
                      line=dict(color=colour, width=2, dash=dash))


def mappings_figure(snap: MachineSnapshot, *, title: str | None = None) -> go.Figure:
    maps, frames, vy, fy, span = _rows(snap)
    info = {f.pfn: f for f in snap.frames}
    rw = [(vy[(m.pid, m.address)], fy[m.pfn]) for m in maps if m.writable]
    ro = [(vy[(m.pid, m.address)], fy[m.pfn]) for m in maps if not m.writable]
    traces = [
        _line_trace(rw, "writable PTE", "solid", OKABE_ITO["blue"]),
        _line_trace(ro, "read-only PTE (write faults)", "dash", OKABE_ITO["vermillion"]),
        go.Scatter(
            x=[0.0] * len(maps), y=[vy[(m.pid, m.address)] for m in maps], mode="markers+text",
            name="virtual page", text=[m.label for m in maps], textposition="middle left",
            textfont=dict(size=LABEL_SIZE), hoverinfo="text",
            hovertext=[f"{m.label} @ {m.address:#x}<br>PTE {m.pte:#x} ({m.flags})"
                       + ("<br>zero page placed by KSM (dirty bit)" if m.ksm_zero else "")
                       for m in maps],
            marker=dict(symbol="circle", size=12, color="#FFFFFF",
                        line=dict(width=2, color="#333333"))),
    ]
    for role in ROLES:
        mine = [pfn for pfn in frames if info[pfn].role == role]

        def text(pfn):
            f = info[pfn]
            count = f"{f.ptes} PTEs" if f.role == "zero" else f"mapcount {f.mapcount}"
            return f"pfn {pfn:#x} {f.tag} · {count}"
        traces.append(go.Scatter(
            x=[1.0] * len(mine), y=[fy[pfn] for pfn in mine], mode="markers+text",
            name=ROLE_NAMES[role], text=[text(p) for p in mine], textposition="middle right",
            textfont=dict(size=LABEL_SIZE), hoverinfo="text", hovertext=[text(p) for p in mine],
            marker=dict(symbol="square", size=16, color=ROLE_COLOURS[role],
                        line=dict(width=1.5, color="#333333")),
            showlegend=role not in ("free", "table")))
    rows = span + 1
    height = max(260, rows * ROW + 130)
    layout = base_layout(title or "Who maps what: virtual pages → physical frames",
                         900, height, margin=dict(l=10, r=10, t=100, b=10))
    layout["xaxis"] = blank_axis(-0.75, 2.0)
    layout["yaxis"] = blank_axis(-span - 0.7, 0.7)
    layout["legend"].update(y=1.01, x=0.0, xanchor="left")
    if not maps:
        layout["annotations"] = [dict(text="no page is mapped yet", x=0.6, y=-span / 2,
                                      showarrow=False, font=dict(size=16, color="#666666"))]
    else:
        layout["annotations"] = []
    return go.Figure(data=traces, layout=layout)


def mappings_text(snap: MachineSnapshot) -> str:
    """The text twin: frame by frame, who maps it and how."""
    info = {f.pfn: f for f in snap.frames}
    by_frame = {}
    for m in sorted(snap.mappings, key=lambda m: (m.pid, m.address)):
        by_frame.setdefault(m.pfn, []).append(m)
    lines = []
    for pfn in sorted(by_frame):
        f = info[pfn]
        who = ", ".join(f"{m.label} ({'rw' if m.writable else 'ro'}{', KSM' if m.ksm_zero else ''})"
                        for m in by_frame[pfn])
        lines.append(f"pfn {pfn:#x} {ROLE_NAMES[f.role]:<9} {f.tag:<8} <- {who}")
    return "\n".join(lines) if lines else "(nothing mapped)"
