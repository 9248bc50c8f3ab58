"""Who maps what: every present PTE drawn as a line from a virtual page to its frame.

Virtual pages (grouped by process) sit in the outer columns, frames in the middle
one: the first half of the processes (the parent after a fork) on the left, the
others (the child) on the right, so that the two mappings of one frame meet it
from both sides.  Each frame has its own band of rows (the frame on its top row,
its label above, its mappers beside it), so no line crosses another frame's line
or label.  With one process, its pages are on the left and the frames on the
right, their labels to the right of them.  When
KSM merges, several lines meet at one orange frame; a read-only PTE is drawn
dashed (a write to it will fault).
Fixed traces: writable lines, read-only lines, virtual pages, then one trace of
frames per role.
"""
from __future__ import annotations

from .snapshot import ROLE_NAMES, ROLES, MachineSnapshot
from .style import (LABEL_SIZE, OKABE_ITO, ROLE_COLOURS, base_layout, blank_axis, plain_builder,
                    scatter)

ROW = 26           # pixels per row


def _sides(maps) -> dict[int, str]:
    """pid -> "left" / "right": the first half of the processes (in pid order: the
    parent before its child) on the left."""
    pids = list(dict.fromkeys(m.pid for m in maps))
    left = set(pids[:(len(pids) + 1) // 2])
    return {pid: "left" if pid in left else "right" for pid in pids}


def _spread(n: int, span: float) -> list[float]:
    """n rows spread over ``span`` (top to bottom, as negative y)."""
    return [-(i * span / (n - 1) if n > 1 else span / 2) for i in range(n)]


def _rows(snap: MachineSnapshot):
    """Virtual pages per side in process order, and frames.

    One side (one process): the pages evenly spread, the frames ordered by the mean
    height of their mappers.  Two sides (a fork, two guests): frame by frame, in the
    order of their first mapper, each frame with its own band of rows: the frame on
    its top row with its label above it, its mappers on both sides on the band's rows.
    Every line then stays inside its frame's band, so no line crosses another frame's
    line or label (chapter 02's fork: all lines are level)."""
    maps = sorted(snap.mappings, key=lambda m: (m.pid, m.address))
    side = _sides(maps)
    cols = {c: [m for m in maps if side[m.pid] == c] for c in ("left", "right")}
    if cols["right"]:
        return (maps, *_bands(cols), side)
    frames_of = {}
    for c, col in cols.items():
        for i, m in enumerate(col):
            frames_of.setdefault(m.pfn, []).append(i / (len(col) - 1) if len(col) > 1 else 0.5)
    frames = sorted(frames_of, key=lambda pfn: (sum(frames_of[pfn]) / len(frames_of[pfn]), pfn))
    span = max(len(cols["left"]), len(frames), 1) - 1
    vy = {}
    for col in cols.values():
        vy.update({(m.pid, m.address): y for m, y in zip(col, _spread(len(col), span))})
    fy = dict(zip(frames, _spread(len(frames), span)))
    return maps, frames, vy, fy, span, side


#: rows between the last row of one frame's band and the next frame (its label above it)
BAND_GAP = 1.5


def _bands(cols):
    """Two-sided rows: (frames, page y, frame y, span), one band of rows per frame."""
    mappers = {}
    for s_i, c in enumerate(("left", "right")):
        for rank, m in enumerate(cols[c]):
            mappers.setdefault(m.pfn, {"left": [], "right": [], "key": (rank, s_i)})
            mappers[m.pfn][c].append(m)
    frames = sorted(mappers, key=lambda pfn: (mappers[pfn]["key"], pfn))
    vy, fy, row = {}, {}, 0.0
    for pfn in frames:
        fy[pfn] = -row
        for c in ("left", "right"):
            vy.update({(m.pid, m.address): -(row + i) for i, m in enumerate(mappers[pfn][c])})
        rows = max(len(mappers[pfn]["left"]), len(mappers[pfn]["right"]), 1)
        last = row + rows - 1
        row = last + BAND_GAP
    return frames, vy, fy, (last if frames else 0.0)


def _line_trace(segments, name, dash, colour) -> dict:
    xs, ys = [], []
    for x0, y0, x1, y1 in segments:
        xs += [x0, x1, None]
        ys += [y0, y1, None]
    return scatter(x=xs, y=ys, mode="lines", name=name, hoverinfo="skip",
                      line=dict(color=colour, width=2, dash=dash))


@plain_builder
def mappings_figure(snap: MachineSnapshot, *, title: str | None = None) -> dict:
    maps, frames, vy, fy, span, side = _rows(snap)
    two_sided = "right" in side.values()
    # one-sided, the frames sit left of the middle: their labels (up to ~32
    # characters) need the room on the right at 680 px
    fx = 1.0 if two_sided else 0.9
    vx = {pid: (0.0 if c == "left" else 2.0) for pid, c in side.items()}
    info = {f.pfn: f for f in snap.frames}

    def seg(m):
        return (vx[m.pid], vy[(m.pid, m.address)], fx, fy[m.pfn])
    rw = [seg(m) for m in maps if m.writable]
    ro = [seg(m) for m in maps if not m.writable]
    traces = [
        _line_trace(rw, "writable PTE", "solid", OKABE_ITO["blue"]),
        _line_trace(ro, "read-only PTE (write faults)", "dash", OKABE_ITO["vermillion"]),
        scatter(
            x=[vx[m.pid] for m in maps], y=[vy[(m.pid, m.address)] for m in maps],
            mode="markers+text", name="virtual page", text=[m.label for m in maps],
            textposition=["middle left" if side[m.pid] == "left" else "middle right"
                          for m in maps],
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
        traces.append(scatter(
            x=[fx] * len(mine), y=[fy[pfn] for pfn in mine], mode="markers+text",
            name=ROLE_NAMES[role], text=[text(p) for p in mine],
            # between two columns of pages the label goes above the frame
            textposition="top center" if two_sided else "middle right",
            textfont=dict(size=LABEL_SIZE), hoverinfo="text", hovertext=[text(p) for p in mine],
            marker=dict(symbol="square", size=16, color=ROLE_COLOURS[role],
                        line=dict(width=1.5, color="#333333")),
            showlegend=role not in ("free", "table")))
    rows = span + 1
    height = max(260, int((rows + (0.4 if two_sided else 0)) * ROW) + 130)
    # the legend goes under the plot: above it, wrapped into three rows in an 800 px
    # window, it ran over the title
    layout = base_layout(title or "Who maps what: virtual pages → physical frames",
                         900, height, margin=dict(l=10, r=10, t=50, b=60))
    layout["xaxis"] = blank_axis(-0.6, 2.6) if two_sided else blank_axis(-0.5, 2.1)
    layout["yaxis"] = blank_axis(-span - 0.7, 1.1 if two_sided else 0.7)
    layout["legend"].update(y=0.0, yanchor="top", x=0.0, xanchor="left")
    if not maps:
        layout["annotations"] = [dict(text="no page is mapped yet", x=0.6, y=-span / 2,
                                      showarrow=False, font=dict(size=16, color="#666666"))]
    return {"data": traces, "layout": layout}


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
