"""KVM's side of chapter 07: the state of every guest frame after each step, and the
era table (exits per step, per kernel) as a figure.

``state_table_figure(records)`` is a table whose columns are the steps of the story
and whose rows are the host PTE and the spte of each guest frame, coloured by what
they map (writable page, KSM page, nothing); ``era_table_figure(rows)`` is a
heatmap of exits with one row per kernel.  Both have text twins, and both keep a
fixed trace list so a live figure can be updated in place.
"""
from __future__ import annotations

import plotly.graph_objects as go

from .style import OKABE_ITO, base_layout

# light fills for table cells: a second cue besides the text, never the only one
FILL = {"rw": "#D6EAF8", "ksm": "#FBE3B5", "ro": "#FFF3D6", "none": "#EDEDED",
        "later": "#FFFFFF", "head": "#F4F4F4"}


def host_cell(st) -> tuple[str, str]:
    """(text, fill key) of a GfnState's host PTE."""
    if st.host_pfn is None:
        return "none", "none"
    if st.host_ksm:
        return f"RO {st.host_pfn:#x} · KSM page", "ksm"
    return (f"RW {st.host_pfn:#x}", "rw") if st.host_writable else (f"RO {st.host_pfn:#x}", "ro")


def spte_cell(st) -> tuple[str, str]:
    """(text, fill key) of a GfnState's spte."""
    if st.spte_pfn is None:
        return "none (next access exits)", "none"
    if st.spte_writable:
        return f"RW {st.spte_pfn:#x}", "rw"
    return f"RO {st.spte_pfn:#x}", "ksm" if st.host_ksm else "ro"


def _us(ns: int) -> str:
    return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns} ns"


def state_rows(records, steps, pages: int = 2) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """(row names, one column of (text, fill) cells per step); steps not run are blank."""
    names = ([f"host PTE gfn {g}" for g in range(pages)] + [f"spte gfn {g}" for g in range(pages)]
             + ["exits in the step", "guest time in the step"])
    cols = []
    for i in range(len(steps)):
        if i >= len(records):
            cols.append([("", "later")] * len(names))
            continue
        r = records[i]
        col = [host_cell(r.state[g]) for g in range(pages)]
        col += [spte_cell(r.state[g]) for g in range(pages)]
        col += [(str(r.exits), "head"), (_us(r.guest_ns) if r.guest_ns else "-", "head")]
        cols.append(col)
    return names, cols


#: the table's width in the narrowest view the book is read in (an 800 px window)
NARROW_VIEW_PX = 660
#: a 13 px font's mean character width, and one wrapped line's height, in px
CHAR_PX, LINE_PX = 7.6, 19
#: a cell's left and right padding together, in px
CELL_PAD_PX = 16


def table_row_heights(rows, widths, *, view_px: int = NARROW_VIEW_PX,
                      min_height: int = 28) -> list[int]:
    """Each row's height in px once its cells wrap at word boundaries in columns
    sized by ``widths`` (relative, as go.Table's columnwidth) across ``view_px``."""
    total = sum(widths)
    chars = [max(4, int((view_px * w / total - CELL_PAD_PX) / CHAR_PX)) for w in widths]
    heights = []
    for row in rows:
        lines = max(_wrapped_lines(str(text).replace("<b>", "").replace("</b>", ""), n)
                    for text, n in zip(row, chars))
        heights.append(max(min_height, LINE_PX * lines + 10))
    return heights


def _wrapped_lines(text: str, width: int) -> int:
    lines, used = 1, 0
    for word in text.split():
        if used and used + 1 + len(word) > width:
            lines, used = lines + 1, 0
        used += (1 if used else 0) + len(word)
        while used > width:               # a word longer than the column breaks
            lines, used = lines + 1, used - width
    return lines


def state_table_figure(records, steps, *, title: str | None = None, pages: int = 2,
                       width: int = 1080) -> go.Figure:
    """What each guest frame maps, in the host and in KVM, after each step."""
    names, cols = state_rows(records, steps, pages)
    header = ["after step"] + [f"{i + 1} · {name}" for i, (name, _d) in enumerate(steps)]
    values = [names] + [[t for t, _f in col] for col in cols]
    fills = [[FILL["head"]] * len(names)] + [[FILL[f] for _t, f in col] for col in cols]
    widths = [1.8] + [1.6] * len(steps)
    table = go.Table(
        columnwidth=widths,
        header=dict(values=[f"<b>{h}</b>" for h in header], fill_color=FILL["head"],
                    align="left", font=dict(size=13), height=30,
                    line=dict(color="#BBBBBB", width=1)),
        cells=dict(values=values, fill_color=fills, align="left", font=dict(size=13),
                   height=28, line=dict(color="#BBBBBB", width=1)))
    # a table's rows grow with their wrapped text, its figure does not: the height is
    # that of the rows as they wrap in the narrowest view (an 800 px window), or
    # the last rows are cut off
    rows = [header] + [list(r) for r in zip(*values)]
    layout = base_layout(title or "After each step: host PTE and KVM spte of each guest frame",
                         width, 90 + 20 + sum(table_row_heights(rows, widths)),
                         margin=dict(l=10, r=10, t=50, b=10))
    layout["showlegend"] = False
    return go.Figure(data=[table], layout=layout)


def state_table_text(records, steps, pages: int = 2) -> str:
    """The text twin of state_table_figure: the rows of the steps that ran."""
    names, cols = state_rows(records[:len(steps)], steps, pages)
    ran = cols[:len(records)]
    if not ran:
        return "(no step has run yet)"
    head = f"{'after step':<24}" + "".join(f"{i + 1} · {steps[i][0]:<19}"[:26].ljust(26)
                                           for i in range(len(ran)))
    lines = [head.rstrip()]
    for r, name in enumerate(names):
        lines.append((f"{name:<24}" + "".join(f"{col[r][0]:<26}" for col in ran)).rstrip())
    return "\n".join(lines)


# --- the era table -----------------------------------------------------------------

ERA_COLUMNS = (
    ("merge", "merge"),
    ("read", "read after<br>the merge"),
    ("write_after_read", "write after<br>that read"),
    ("read_then_write", "read, then<br>write: total"),
    ("write_unread", "write, not<br>read first"),
    ("untouched_read", "first read of a<br>page QEMU wrote"),
)


def era_row_label(row) -> str:
    return f"{row.kernel} · {row.merge_action}"


def era_table_figure(rows, *, title: str | None = None, width: int = 1000) -> go.Figure:
    """Heatmap: exits per step (columns) for each kernel (rows), measured live."""
    ys = [era_row_label(r) for r in rows]
    xs = [label for _k, label in ERA_COLUMNS]
    z = [[getattr(r, k) for k, _l in ERA_COLUMNS] for r in rows]

    def cell(r, k):
        v = getattr(r, k)
        if k == "untouched_read" and not r.untouched_stays_merged:
            return f"<b>{v}</b> · COW"
        return f"<b>{v}</b>"
    text = [[cell(r, k) for k, _l in ERA_COLUMNS] for r in rows]
    heat = go.Heatmap(
        z=z, x=xs, y=ys, text=text, texttemplate="%{text}", textfont=dict(size=15),
        colorscale=[[0.0, "#FFFFFF"], [0.34, "#FBE3B5"], [0.67, OKABE_ITO["orange"]],
                    [1.0, OKABE_ITO["vermillion"]]],
        zmin=0, zmax=3, xgap=3, ygap=3, showscale=True,
        colorbar=dict(title=dict(text="exits"), tickvals=[0, 1, 2, 3], len=0.8),
        hovertemplate="%{y}<br>%{x}: %{z} exits<extra></extra>")
    layout = base_layout(title or "EPT-violation exits per step, measured in the simulator",
                         width, 170 + 44 * len(rows), margin=dict(l=190, r=20, t=110, b=50))
    layout["showlegend"] = False
    if any(not r.untouched_stays_merged for r in rows):
        layout["annotations"] = [dict(
            text="COW: that first read copied the page out of the merge (before 2.6.38 "
                 "hva_to_pfn asked for a writable page even for a read)",
            xref="paper", yref="paper", x=0, y=-0.02, xanchor="left", yanchor="top",
            showarrow=False, font=dict(size=12, color="#444444"))]
    layout["xaxis"] = dict(side="top", fixedrange=True, tickfont=dict(size=13))
    layout["yaxis"] = dict(autorange="reversed", fixedrange=True, tickfont=dict(size=13))
    return go.Figure(data=[heat], layout=layout)


def era_table_text(rows) -> str:
    """The text twin of era_table_figure, with the merge's spte work and guest time."""
    head = (f"{'kernel':<8}{'merge does':<16}{'merge':>6}{'read':>6}{'write':>7}{'r+w':>5}"
            f"{'w only':>8}{'untouched read':>16}{'change_pte':>12}{'read ns':>9}{'write ns':>10}")
    lines = [head]
    for r in rows:
        untouched = f"{r.untouched_read}{' (COW!)' if not r.untouched_stays_merged else ''}"
        cp = f"{r.change_pte_calls}" + (f" ({r.change_pte_misses} miss)"
                                         if r.change_pte_misses else "")
        lines.append(f"{r.kernel:<8}{r.merge_action:<16}{r.merge:>6}{r.read:>6}"
                     f"{r.write_after_read:>7}{r.read_then_write:>5}{r.write_unread:>8}"
                     f"{untouched:>16}{cp:>12}{r.read_ns:>9}{r.write_ns:>10}")
    return "\n".join(lines)
