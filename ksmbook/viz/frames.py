"""The physical-frame map: every frame a cell, coloured by what it holds.

One trace per role (anonymous, KSM, zero page, shmem, page table, free), always
in that order, so a widget can restyle the figure in place.  Each cell shows the
pfn and the mapcount (page tables show their level instead).
"""
from __future__ import annotations

from .snapshot import ROLE_NAMES, ROLES, MachineSnapshot
from .style import (LABEL_SIZE, ROLE_MARKERS, ROLE_SYMBOLS, base_layout, blank_axis,
                    plain_builder, scatter)

CELL = 64          # pixels per cell, at the narrowest view
#: columns of the grid: 10 cells of CELL px fill an output 680 px wide (an 800 px
#: window); a wider output spreads the same columns
COLUMNS = 10
LEVEL_SHORT = ("PGD", "PUD", "PMD", "PTE")
#: the narrowest output the figure is drawn in (an 800 px window), and the pixels a
#: horizontal legend's row takes: an item is its symbol and gaps (40 px) and its name
#: at about 7.8 px a character (13 px font)
NARROW_PX = 600
LEGEND_ROW_PX = 24


def legend_rows(names, width: int = NARROW_PX) -> int:
    """Rows a horizontal legend of ``names`` wraps into in ``width`` pixels."""
    rows, used = 1, 0.0
    for name in names:
        item = 40 + 7.8 * len(name)
        if used and used + item > width - 20:
            rows, used = rows + 1, 0.0
        used += item
    return rows


def cell_text(f) -> str:
    if f.role == "table":
        level = next((lv for lv in LEVEL_SHORT if f.owner.startswith(lv)), "tbl")
        return f"{f.pfn:#x}<br>{level}"
    if f.role == "free":
        return f"{f.pfn:#x}<br>free"
    if f.role == "zero":
        return f"{f.pfn:#x}<br>{f.ptes} PTE" + ("s" if f.ptes != 1 else "")
    return f"{f.pfn:#x}<br>×{f.mapcount}"


def hover_text(f) -> str:
    lines = [f"pfn {f.pfn:#x}: {ROLE_NAMES[f.role]}"]
    if f.role not in ("free", "table"):
        lines.append(f"mapcount {f.mapcount}, refcount {f.refcount}, {f.ptes} PTEs")
    if f.tag:
        lines.append(f"content {f.tag}")
    if f.owner:
        lines.append(f.owner)
    return "<br>".join(lines)


@plain_builder
def frame_map_figure(snap: MachineSnapshot, *, columns: int = COLUMNS, title: str | None = None,
                     hide: tuple = ()) -> dict:
    """Frames as a grid of cells, pfn order, left to right and top to bottom."""
    frames = [f for f in snap.frames if f.role not in hide]
    cols = max(1, min(columns, len(frames)))
    rows = max(1, -(-len(frames) // cols))
    pos = {f.pfn: (i % cols, -(i // cols)) for i, f in enumerate(frames)}
    traces = []
    for role in ROLES:
        mine = [f for f in frames if f.role == role]
        traces.append(scatter(
            x=[pos[f.pfn][0] for f in mine], y=[pos[f.pfn][1] for f in mine],
            mode="markers+text", name=f"{ROLE_NAMES[role]} ({len(mine)})",
            text=[cell_text(f) for f in mine], hovertext=[hover_text(f) for f in mine],
            hoverinfo="text", textposition="middle center",
            textfont=dict(size=LABEL_SIZE - 1, color="#111111"),
            marker=dict(symbol=ROLE_SYMBOLS[role], size=CELL - 6, color=ROLE_MARKERS[role],
                        line=dict(width=1.5, color="#555555")),
            showlegend=True))
    width = max(760, cols * CELL + 40)
    plot_h = rows * CELL
    # the top margin holds the title (about 40 px) and the legend's rows as they wrap
    # at 800 px: a fixed 100 px left a 50 px gap under the title when it was one row
    shown = [t["name"] for t in traces if t["x"]]
    top = 44 + LEGEND_ROW_PX * legend_rows(shown)
    layout = base_layout(title or f"Physical frames: pfn and mapcount ({snap.page_size}-byte pages)",
                         width, plot_h + top + 20, margin=dict(l=20, r=20, t=top, b=20))
    # one data unit per CELL pixels down, at least CELL across (the figure fills its
    # view's width, so the x axis shows a whole number of columns, never fewer cells
    # than fit at 680 px: squeezed, the fixed-size markers ran into each other)
    layout["xaxis"] = blank_axis(-0.5, max(cols, columns) - 0.5)
    layout["yaxis"] = blank_axis(0.5 - plot_h / CELL, 0.5)
    layout["legend"].update(y=1.02, x=0.0, xanchor="left")
    return {"data": traces, "layout": layout}


def frame_map_text(snap: MachineSnapshot, hide: tuple = ()) -> str:
    """The text twin: one line per role with the frames in it."""
    lines = []
    for role in ROLES:
        mine = [f for f in snap.frames if f.role == role and f.role not in hide]
        if not mine:
            continue
        if role in ("table", "free"):
            cells = ", ".join(f"{f.pfn:#x}" for f in mine)
        elif role == "zero":
            cells = ", ".join(f"{f.pfn:#x} ({f.ptes} PTEs)" for f in mine)
        else:
            cells = ", ".join(f"{f.pfn:#x} ×{f.mapcount}" for f in mine)
        lines.append(f"{ROLE_NAMES[role]:>20}: {cells}")
    return "\n".join(lines)
