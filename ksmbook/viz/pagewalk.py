"""The page-table walk of one virtual address: four tables, four indices, one frame.

Top row: the index bits of the address, one box per level, above the table it
selects in.  Middle row: each table (with the frame that holds it) and the entry
the index picks; an arrow follows the entry to the next table.  Bottom row: the
bits of the last-level entry (the PTE).  A walk that hits a hole shows the
tables that do not exist yet, dashed.  Drawn with shapes and annotations only
(no traces), in pixel coordinates.
"""
from __future__ import annotations

import plotly.graph_objects as go

from .snapshot import ROLE_NAMES, WalkSnapshot
from .style import FONT, OKABE_ITO, ROLE_COLOURS, base_layout, blank_axis

# drawn one data unit per pixel for the narrowest output: an 800 px window leaves
# about 600 px.  A wider view stretches the boxes, the text keeps its size, so every
# text is sized to fit its box at 600 px (tests/unit/test_viz.py measures them)
W, H = 604, 450
LEVELS = ("PGD", "PUD", "PMD", "PTE")
BOX_W, FRAME_W, GAP, LEFT = 104, 124, 10, 2
RIGHT = LEFT + 4 * (BOX_W + GAP) + FRAME_W        # 582: the last box's right edge
#: the PTE-bit cells: one per bit, as wide as its name (bold 11 px) needs
BIT_MIN, BIT_CHAR, BIT_PAD, BIT_GAP = 36, 7.5, 12, 5


def _col_x(i: int) -> float:
    return LEFT + i * (BOX_W + GAP)


def _box(x0, y0, x1, y1, fill, dash="solid", line="#333333", width=2):
    return dict(type="rect", xref="x", yref="y", x0=x0, y0=y0, x1=x1, y1=y1, fillcolor=fill,
                line=dict(color=line, width=width, dash=dash), layer="below")


def _text(x, y, text, size=14, colour="#222222", anchor="center", bold=False):
    return dict(x=x, y=y, xref="x", yref="y", text=f"<b>{text}</b>" if bold else text,
                showarrow=False, font=dict(size=size, color=colour, family=FONT["family"]),
                xanchor=anchor, yanchor="middle")


def _arrow(x0, y0, x1, y1, colour="#333333", dash=False):
    return dict(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", text="",
                showarrow=True, arrowhead=3, arrowsize=1.2, arrowwidth=2,
                arrowcolor=colour if not dash else "#AAAAAA")


def bit_range(level: int, page_shift: int) -> tuple[int, int]:
    """(high, low) address bits of the index at level 4 (PGD) .. 1 (PTE)."""
    low = page_shift + 9 * (level - 1)
    return low + 8, low


def bit_cell_width(name: str) -> float:
    """Width of a PTE bit's cell: ``PROTNONE`` needs twice a ``P``'s."""
    return max(BIT_MIN, len(name) * BIT_CHAR + BIT_PAD)


def pagewalk_figure(w: WalkSnapshot, *, title: str | None = None) -> go.Figure:
    shapes, notes = [], []
    steps = {s.level: s for s in w.steps}
    top_y0, top_y1 = 335, 385            # index boxes
    tab_y0, tab_y1 = 110, 300            # tables
    entry_y = 180                        # the selected entry's row
    for i, level in enumerate(LEVELS):
        x0 = _col_x(i)
        xc = x0 + BOX_W / 2
        hi, lo = bit_range(4 - i, w.page_shift)
        # index box
        shapes.append(_box(x0, top_y0, x0 + BOX_W, top_y1, "#F2F2F2"))
        notes.append(_text(xc, top_y1 - 14, f"bits {hi}–{lo}", 11, "#555555"))
        notes.append(_text(xc, top_y0 + 16, f"{level} index {w.indices[i]}", 11, bold=True))
        step = steps.get(level)
        exists = step is not None
        shapes.append(_box(x0, tab_y0, x0 + BOX_W, tab_y1,
                           "#FBF3FA" if exists else "#FFFFFF",
                           "solid" if exists else "dash",
                           ROLE_COLOURS["table"] if exists else "#AAAAAA"))
        notes.append(_text(xc, tab_y1 - 20, f"{level} table", 13, bold=True,
                           colour="#222222" if exists else "#999999"))
        if exists:
            # two lines: "in frame pfn 0x1" on one did not fit the box at 600 px
            notes.append(_text(xc, tab_y1 - 40, "in frame", 11, "#555555"))
            notes.append(_text(xc, tab_y1 - 54, f"pfn {step.table_pfn:#x}", 11, "#555555"))
            present = step.present
            shapes.append(_box(x0 + 6, entry_y - 34, x0 + BOX_W - 6, entry_y + 34,
                               "#FFFFFF" if not present else "#EAF4FB",
                               "solid", OKABE_ITO["blue"] if present else "#AAAAAA"))
            notes.append(_text(xc, entry_y + 18, f"entry [{step.index}]", 11, "#333333"))
            value = f"{step.entry:#x}" if step.entry else "0 (none)"
            notes.append(_text(xc, entry_y, value, 13, bold=True))
            notes.append(_text(xc, entry_y - 18, step.flags if step.entry else "not present",
                               11, "#555555"))
            # down the left edge, clear of the table's title
            notes.append(_arrow(x0 + 10, top_y0, x0 + 10, entry_y + 36, OKABE_ITO["blue"]))
            if present:
                nxt = _col_x(i + 1)
                notes.append(_arrow(x0 + BOX_W - 6, entry_y, nxt, entry_y, OKABE_ITO["blue"]))
        else:
            notes.append(_text(xc, entry_y, "not allocated", 11, "#999999"))
    # the frame and the offset
    x0 = _col_x(4)
    xc = x0 + FRAME_W / 2
    shapes.append(_box(x0 + 6, top_y0, x0 + FRAME_W - 6, top_y1, "#F2F2F2"))
    notes.append(_text(xc, top_y1 - 14, f"bits {w.page_shift - 1}–0", 11, "#555555"))
    notes.append(_text(xc, top_y0 + 16, f"offset {w.offset:#x}", 12, bold=True))
    if w.complete:
        fill = ROLE_COLOURS.get(w.frame_role, "#FFFFFF")
        shapes.append(_box(x0, tab_y0, x0 + FRAME_W, tab_y1, fill))
        notes.append(_text(xc, tab_y1 - 20, "the frame", 13, bold=True))
        notes.append(_text(xc, tab_y1 - 44, f"pfn {w.pfn:#x}", 13, bold=True))
        notes.append(_text(xc, entry_y + 8, ROLE_NAMES[w.frame_role], 12))
        mc = "mapcount not kept" if w.frame_role == "zero" else f"mapcount {w.frame_mapcount}"
        notes.append(_text(xc, entry_y - 16, mc, 11))
        notes.append(_text(xc, entry_y - 40, w.frame_tag, 11, "#333333"))
        notes.append(_arrow(xc, top_y0, xc, tab_y1 + 2, OKABE_ITO["blue"]))
    else:
        shapes.append(_box(x0, tab_y0, x0 + FRAME_W, tab_y1, "#FFFFFF", "dash", "#AAAAAA"))
        notes.append(_text(xc, tab_y1 - 20, "no frame", 13, "#999999", bold=True))
        notes.append(_text(xc, entry_y + 10, "an access faults:", 11, "#555555"))
        notes.append(_text(xc, entry_y - 10, "handle_mm_fault()", 11, "#555555"))
    # PTE bits strip
    # the label above the strip, so that the strip has the whole width
    notes.append(_text(LEFT, 88, "PTE bits:", 13, anchor="left", bold=True))
    bx = LEFT
    for name, on in w.pte_bits:
        cell = bit_cell_width(name)
        shapes.append(_box(bx, 20, bx + cell, 70,
                           OKABE_ITO["blue"] if on else "#FFFFFF", line="#555555", width=1.5))
        notes.append(_text(bx + cell / 2, 45, name, 11, "#FFFFFF" if on else "#AAAAAA",
                           bold=on))
        bx += cell + BIT_GAP
    last = w.steps[-1]
    if w.complete:
        pfn_text = f"pfn {w.pfn:#x}"
    elif last.level == "PTE":
        pfn_text = "PTE is empty"
    else:
        pfn_text = f"no PTE: stopped at {last.level}"
    shapes.append(_box(bx, 20, RIGHT, 70, "#F2F2F2", line="#555555", width=1.5))
    notes.append(_text((bx + RIGHT) / 2, 45, pfn_text, 12, bold=w.complete))
    layout = base_layout(title or f"Page walk of {w.address:#x} ({w.label}) in {w.proc}",
                         W, H, margin=dict(l=10, r=10, t=50, b=10), showlegend=False)
    # a box's line is 2 px wide: the axis ends 2 units past the last box, so that
    # its right edge is not cut in half
    layout["xaxis"] = blank_axis(0, RIGHT + 2)
    layout["yaxis"] = blank_axis(0, H - 60)   # one data unit per pixel
    layout["shapes"] = shapes
    layout["annotations"] = notes
    return go.Figure(layout=layout)


def pagewalk_text(w: WalkSnapshot) -> str:
    """The text twin: the address split into indices, then each level's entry."""
    idx = ", ".join(f"{lv} {i}" for lv, i in zip(LEVELS, w.indices))
    # two lines: on one (89 characters) it wrapped in an 800 px window
    lines = [f"{w.label} (pid {w.pid}) address {w.address:#x}",
             f"  indices {idx}; offset {w.offset:#x}"]
    for s in w.steps:
        entry = f"{s.entry:#x} ({s.flags})" if s.entry else "0 (none: walk stops)"
        lines.append(f"  {s.level}[{s.index:3d}] in table pfn {s.table_pfn:#x} = {entry}")
    if w.complete:
        mc = "" if w.frame_role == "zero" else f", mapcount {w.frame_mapcount}"
        lines.append(f"  -> frame pfn {w.pfn:#x}: {ROLE_NAMES[w.frame_role]}{mc}, {w.frame_tag}")
    else:
        lines.append("  -> no frame: the next access faults")
    return "\n".join(lines)
