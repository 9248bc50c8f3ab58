"""Two runs of one scenario, step by step: figures and their text twins.

    timeline_figure(cmp)   counters after every step: simulator lines, kernel open
                           markers, a boxed cross where they differ
    grid_figure(cmp)       every counter and ksm_stat field x every step, the
                           differing cells boxed and written "sim≠kernel"
    trace_table(trace)     / compare_table(cmp): the same numbers as text

``cmp`` is a :class:`ksmbook.oracle.sidebyside.Comparison` (plain data).  Each figure
kind keeps a fixed list of traces, so a widget can restyle it in place.
"""
from __future__ import annotations

import itertools
import os

import plotly.graph_objects as go

from ..cli import SHORT, STAT_SHORT
from ..oracle.scenario import COUNTERS, KSM_STAT_FIELDS
from .snapshot import PAGE_COUNTERS
from ..oracle.sidebyside import ABSENT
from .style import OKABE_ITO, base_layout, wrap_title
from .timeline import STYLE

__all__ = ["PAGE_COUNTERS", "timeline_figure", "grid_figure", "grid_rows", "trace_table",
           "compare_table", "short_op", "compact"]

#: The counters the timeline draws (all in pages; the grid shows every counter).
#: ksm_stat fields the grid always shows per process (others only where they differ).
GRID_STAT_FIELDS = ("ksm_rmap_items", "ksm_merging_pages", "ksm_zero_pages",
                    "ksm_process_profit")
DIFF_COLOUR = OKABE_ITO["vermillion"]
SCAN_BAND = "#EFEFEF"
# grid cell classes: equal / equal but changed by this step / differs / one side lacks it
EQUAL, CHANGED, DIFFERS, ONE_SIDED = 0, 1, 2, 3
GRID_COLOURS = ("#FFFFFF", "#D4E6F4", "#F8C9A8", "#E4E0C8")
OP_WIDTH = 34


def short_op(op: str, width: int = OP_WIDTH) -> str:
    return op if len(op) <= width else op[:width - 3] + "..."


def compact(value) -> str:
    """A grid cell's text: 36224 -> '36k', 104857600 -> '105M', absent -> '–'."""
    if value is None or value == ABSENT:
        return "–"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value / 1e6:.0f}M" if abs(value) >= 1e6 else f"{value / 1e3:.0f}k"
    return str(value)


def _scan_steps(trace) -> list[int]:
    return [i for i, s in enumerate(trace.scenario.steps) if s.op == "scans"]


# --------------------------------------------------------------------------
# The timeline
# --------------------------------------------------------------------------

def _title(cmp, what: str) -> str:
    left, right = cmp.left, cmp.right
    name = left.scenario.name
    if right is None:
        sub = f"{left.label}; nothing to compare with yet"
    elif right.scenario.name != name:
        name = f"{name} vs {right.scenario.name}"
        sub = f"{cmp.sides[0]} · {cmp.sides[1]}: {cmp.headline()}"
    else:
        sub = f"{left.label} · {right.label}: {cmp.headline()}"
    # the subtitle (up to ~110 characters) in lines that fit 600 px at 13 px: one line
    # was cut at the right in an 800 px window
    lines = wrap_title(sub, SUB_CHARS).split("<br>")
    return f"{name}: {what}" + "".join(f"<br><span style='font-size:13px'>{line}</span>"
                                       for line in lines)


#: characters of a 13 px subtitle line that fit the ~600 px output of an 800 px window
SUB_CHARS = 78


def title_lines(cmp) -> int:
    """Lines of the figures' title (name and what, then the wrapped subtitle)."""
    return _title(cmp, "").count("<br>") + 1


def timeline_figure(cmp, counters=PAGE_COUNTERS, *, width: int = 1000,
                    height: int = 460) -> go.Figure:
    """Counters after every step: lines for the left (simulator) trace, open markers
    for the right one, a boxed cross on every value that differs."""
    left, right = cmp.left, cmp.right
    this, other = cmp.sides[0], cmp.sides[1] or "kernel"
    steps = list(range(cmp.steps))
    ops = [s["op"] for s in left.snapshots]
    traces, bad_x, bad_y, bad_text = [], [], [], []
    for i, name in enumerate(counters):
        colour, dash, symbol = STYLE.get(name, (OKABE_ITO["black"], "solid", "circle"))
        ys = left.counter(name)
        traces.append(go.Scatter(
            x=steps, y=ys, mode="lines+markers", name=name, legendgroup=name,
            line=dict(color=colour, dash=dash, width=max(2.5, 6.5 - 1.5 * i)),
            marker=dict(symbol=symbol, size=max(7, 12 - 2 * i), color=colour),
            customdata=ops, hovertemplate=(f"{name} = %{{y}} ({this}) after step "
                                           f"%{{x}}: %{{customdata}}<extra></extra>")))
        ks = right.counter(name) if right is not None else []
        traces.append(go.Scatter(
            x=steps[:len(ks)], y=ks, mode="markers", name=f"{name} ({other})",
            legendgroup=name, showlegend=False,
            marker=dict(symbol=f"{symbol}-open", size=17, color=colour, line=dict(width=2)),
            hovertemplate=(f"{name} = %{{y}} ({other}) after step %{{x}}"
                           "<extra></extra>")))
        for x, (a, b) in enumerate(zip(ys, ks)):
            if a != b:
                bad_x.append(x)
                bad_y.append(b)
                bad_text.append(f"{name}: {this} {a}, {other} {b}")
    traces.append(go.Scatter(
        x=bad_x, y=bad_y, mode="markers", name="differs", text=bad_text,
        marker=dict(symbol="x", size=14, color=DIFF_COLOUR,
                    line=dict(width=1.5, color="#000000")),
        hovertemplate="after step %{x}: %{text}<extra>differs</extra>"))
    top = max([v for t in traces for v in (t.y or ())] + [1])
    more = 18 * (title_lines(cmp) - 2)          # a wrapped subtitle: the plot keeps its size
    layout = base_layout(_title(cmp, "counters after every step"), width, height + more,
                         margin=dict(l=70, r=20, t=95 + more, b=60))
    layout["legend"].update(orientation="v", y=1.0, yanchor="top", x=1.02, xanchor="left")
    layout["shapes"] = [dict(type="rect", xref="x", yref="paper", x0=i - 0.45, x1=i + 0.45,
                             y0=0, y1=1, fillcolor=SCAN_BAND, line=dict(width=0),
                             layer="below") for i in _scan_steps(left)]
    layout["xaxis"] = dict(title="step (grey bands: scans(n), ksmd ran)",
                           range=[-0.6, max(len(steps), 1) - 0.4],
                           dtick=1 if len(steps) <= 30 else 5, showgrid=False, zeroline=False)
    layout["yaxis"] = dict(title="pages", rangemode="tozero", range=[-0.3, top * 1.12 + 0.3],
                           showgrid=True, gridcolor="#E4E4E4", zeroline=False)
    return go.Figure(data=traces, layout=layout)


# --------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------

def _processes(cmp) -> list[str]:
    names = []
    for trace in (cmp.left, cmp.right):
        for s in (trace.snapshots if trace is not None else ()):
            names += [p for p in s["ksm_stat"] if p not in names]
    return names


def _stat(snap, proc, key):
    st = snap["ksm_stat"].get(proc)
    return None if st is None else st.get(key, ABSENT)


def grid_rows(cmp) -> list[tuple[str, object]]:
    """(label, getter(snapshot) -> value) for every row of the grid: the 11
    global counters, then per process its main ksm_stat fields and any other
    field that differs somewhere."""
    rows = [(c, lambda s, c=c: s["counters"][c]) for c in COUNTERS]
    differing = {tuple(d.path.split(".")[1:3]) for i in range(cmp.steps)
                 for d in cmp.at(i, one_sided=True) if d.path.startswith("ksm_stat.")}
    for proc in _processes(cmp):
        for key in (*KSM_STAT_FIELDS, "merging_pages_file"):
            if key in GRID_STAT_FIELDS or (proc, key) in differing:
                rows.append((f"{proc}: {STAT_SHORT[key]}",
                             lambda s, p=proc, k=key: _stat(s, p, k)))
    return rows


def _cells(cmp):
    """Per row: (class or None, text, hover) for every step."""
    rows = grid_rows(cmp)
    left = cmp.left.snapshots
    right = cmp.right.snapshots if cmp.right is not None else ()
    table = []
    for label, get in rows:
        line, before = [], None
        for i, snap in enumerate(left):
            a = get(snap)
            b = get(right[i]) if i < len(right) else a
            if a is None and b is None:
                line.append((None, "", ""))
            elif a != b:
                cls = ONE_SIDED if ABSENT in (a, b) else DIFFERS
                line.append((cls, f"{compact(a)}≠{compact(b)}",
                             f"{label}: {cmp.sides[0]} {a}, {cmp.sides[1]} {b}"))
            else:
                cls = CHANGED if i and a != before else EQUAL
                line.append((cls, compact(a), f"{label} = {a}"))
            before = a
        table.append((label, line))
    return table


def grid_figure(cmp, *, max_width: int = 1180) -> go.Figure:
    """Every value after every step; differing cells orange, boxed and 'a≠b'
    (a field only one side prints: beige, not boxed)."""
    table = _cells(cmp)
    n = max(cmp.steps, 1)
    label_w = 190
    cell_w = max(16, min(58, (max_width - label_w - 30) // n))
    row_h = 22
    labels = [label for label, _ in table]
    z = [[c for c, _, _ in line] for _, line in table]
    show_text = cell_w >= 40
    # in an 800 px window (~600 px) the cells shrink to fit: a text wider than its cell
    # there ("16k≠12k") ran into its neighbours; a differing cell then reads "≠"
    # (the hover and the text twin give both values)
    narrow_chars = int(((600 - label_w - 20) / n - 4) / 6.6)

    def fit(cls, t):
        return t if len(t) <= narrow_chars or cls != DIFFERS else "≠"
    text = [[fit(c, t) if show_text else "" for c, t, _ in line] for _, line in table]
    hover = [[f"after step {i}: {h}" for i, (_, _, h) in enumerate(line)] for _, line in table]
    bad = [(i, label) for label, line in table for i, (c, _, _) in enumerate(line)
           if c == DIFFERS]
    scale = []
    for k, colour in enumerate(GRID_COLOURS):
        scale += [[k / len(GRID_COLOURS), colour], [(k + 1) / len(GRID_COLOURS), colour]]
    heat = go.Heatmap(x=list(range(cmp.steps)), y=labels, z=z, zmin=-0.5,
                      zmax=len(GRID_COLOURS) - 0.5,
                      colorscale=scale, showscale=False, xgap=1, ygap=1, text=text,
                      texttemplate="%{text}", textfont=dict(size=11), customdata=hover,
                      hovertemplate="%{customdata}<extra></extra>")
    width = label_w + cell_w * n + 30
    height = 175 + row_h * len(labels)
    more = 18 * (title_lines(cmp) - 2)
    layout = base_layout(_title(cmp, "every value after every step"), max(width, 760),
                         height + more, margin=dict(l=label_w, r=20, t=100 + more, b=55),
                         showlegend=False,
                         plot_bgcolor="#BDBDBD")
    # a box around each differing cell (shapes: they frame the cell, not cover its text)
    layout["shapes"] = [dict(type="rect", xref="x", yref="y", x0=i - 0.47, x1=i + 0.47,
                             y0=labels.index(label) - 0.44, y1=labels.index(label) + 0.44,
                             line=dict(color=DIFF_COLOUR, width=2.5), fillcolor="rgba(0,0,0,0)")
                        for i, label in bad]
    layout["xaxis"] = dict(side="top", tickmode="array", tickvals=list(range(cmp.steps)),
                           ticktext=[str(i) if n <= 30 or i % 5 == 0 else ""
                                     for i in range(cmp.steps)],
                           showgrid=False, zeroline=False, fixedrange=True,
                           range=[-0.5, n - 0.5])
    layout["yaxis"] = dict(range=[len(labels) - 0.5, -0.5], showgrid=False, zeroline=False,
                           fixedrange=True, tickfont=dict(size=12))
    layout["annotations"] = [dict(
        text=(f"white: equal · blue: equal, changed by this step · grey: no such process<br>"
              f"orange, boxed: differs ({cmp.sides[0]}≠{cmp.sides[1] or 'other'}) · "
              "beige: a field only one side prints"),
        # from the figure's left edge, under the row labels too: from the plot's edge
        # it was cut at the right in an 800 px window
        xref="paper", yref="paper", x=0, y=0, xshift=10 - label_w, yshift=-6, xanchor="left",
        yanchor="top", align="left", showarrow=False, font=dict(size=12, color="#444444"))]
    return go.Figure(data=[heat], layout=layout)


# --------------------------------------------------------------------------
# Text twins
# --------------------------------------------------------------------------

#: characters of a text line that fit an 800 px window's output (~78 monospace)
TEXT_WIDTH = 76
#: the counters in two bands of columns: eleven side by side made ~130-character
#: lines that wrapped in two or three at 800 px
BANDS = (COUNTERS[:6], COUNTERS[6:])


def _widths(traces, counters=COUNTERS) -> list[int]:
    return [max([len(SHORT[c])] + [len(str(s["counters"][c])) for t in traces if t is not None
                                   for s in t.snapshots]) for c in counters]


def _op_width(bands_widths, side: int = 0) -> int:
    """The op column: as wide as the widest band leaves within TEXT_WIDTH."""
    cells = max(sum(w) + len(w) - 1 for w in bands_widths)
    return max(12, min(OP_WIDTH, TEXT_WIDTH - 5 - (side + 1 if side else 0) - cells - 1))


def _head(widths, side: int = 0, counters=COUNTERS, op_w: int = OP_WIDTH) -> str:
    cells = " ".join(f"{SHORT[c]:>{w}}" for c, w in zip(counters, widths))
    return f"{'step':>4} {'op':<{op_w}} " + (f"{'side':<{side}} " if side else "") + cells


def _line(step, op, values, widths, side=None, side_width=0, op_w: int = OP_WIDTH) -> str:
    cells = " ".join(f"{v:>{w}}" for v, w in zip(values, widths))
    head = f"{step:>4}" if step is not None else " " * 4
    return (f"{head} {short_op(op, op_w):<{op_w}} "
            + (f"{side:<{side_width}} " if side is not None else "") + cells)


def trace_table(trace) -> str:
    """The counters after every step of one trace (deltas for pages_scanned/skipped),
    in two bands of columns (BANDS) so that no line is wider than TEXT_WIDTH."""
    widths = [_widths([trace], band) for band in BANDS]
    op_w = _op_width(widths)
    lines = [f"{trace.scenario.name}: {trace.label}"]
    for k, (band, w) in enumerate(zip(BANDS, widths)):
        lines += [""] * (k > 0) + [_head(w, counters=band, op_w=op_w)]
        for s in trace.snapshots:
            op = s["op"] + (f" -> {s['error']}" if s["error"] else "")
            lines.append(_line(s["step"], op, [s["counters"][c] for c in band], w, op_w=op_w))
    return "\n".join(lines)


def _wrap_items(head: str, items: list[str], indent: int = 14) -> list[str]:
    """``head`` and the comma-separated ``items``, wrapped between items (never inside
    one) into lines of at most TEXT_WIDTH characters where the items allow."""
    lines, line = [], head
    for k, item in enumerate(items):
        piece = item + ("," if k < len(items) - 1 else "")
        if line.strip() and line != head and len(line) + 1 + len(piece) > TEXT_WIDTH:
            lines.append(line)
            line = " " * indent + piece
        else:
            line = f"{line}{' ' if line != head else ''}{piece}"
    return lines + [line]


def _tails(a, b) -> tuple[str, str]:
    """Two differing texts without their common beginning: ("…0')", "…2000')")."""
    if not (isinstance(a, str) and isinstance(b, str)):
        return repr(a), repr(b)
    cut = len(os.path.commonprefix([a, b]))
    return (a, b) if cut < 12 else ("…" + a[cut:], "…" + b[cut:])


def _ranges(steps: list[int]) -> str:
    runs = []
    for _, group in itertools.groupby(enumerate(steps), lambda p: p[1] - p[0]):
        run = [s for _, s in group]
        runs.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ("step " if len(steps) == 1 else "steps ") + ", ".join(runs)


def compare_table(cmp, limit: int = 24) -> str:
    """Both traces step by step: one 'both' row where everything agrees; else a row
    per side, '*' on the differing counters, '·' where the right side agrees, and
    the differing ksm_stat fields below.  Then every difference, grouped."""
    if cmp.right is None:
        return trace_table(cmp.left)
    left, right = cmp.left, cmp.right
    a_side, b_side = cmp.sides
    widths = [_widths([left, right], band) for band in BANDS]
    sw = max(len(a_side), len(b_side), len("both"), 4)
    op_w = _op_width(widths, sw)
    if left.scenario.name == right.scenario.name:
        head = f"{cmp.scenario.name}: {left.label} beside {right.label}"
    else:
        head = f"{left.scenario.name} ({a_side}) beside {right.scenario.name} ({b_side})"
    if len(head) > TEXT_WIDTH:
        head = head.replace(" beside ", "\n  beside ", 1)
    lines = [*head.split("\n"),
             f"  one 'both' row where all agree; else '{a_side}' and '{b_side}' rows,",
             f"  * on what differs, '·' where {b_side} agrees"]
    pairs = list(enumerate(zip(left.snapshots, right.snapshots)))
    for k, (band, w) in enumerate(zip(BANDS, widths)):
        last = k == len(BANDS) - 1
        lines += [""] * (k > 0) + [_head(w, sw, band, op_w)]
        for i, (a, b) in pairs:
            diffs = cmp.at(i)
            op = a["op"] + (f" -> {a['error']}" if a["error"] else "")
            if not diffs:
                lines.append(_line(i, op, [a["counters"][c] for c in band], w, "both", sw, op_w))
                continue
            bad = {d.path.split(".", 1)[1] for d in diffs if d.path.startswith("counters.")}
            lines.append(_line(i, op, [f"{a['counters'][c]}{'*' if c in bad else ''}"
                                       for c in band], w, a_side, sw, op_w))
            lines.append(_line(None, "", [f"{b['counters'][c]}*" if c in bad else "·"
                                          for c in band], w, b_side, sw, op_w))
            if not last:
                continue
            per_proc: dict[str, list[str]] = {}
            for d in diffs:
                parts = d.path.split(".")
                if parts[0] == "ksm_stat":
                    per_proc.setdefault(parts[1], []).append(
                        f"{STAT_SHORT.get(parts[2], parts[2])} {d.a}|{d.b}")
                elif parts[0] != "counters":
                    per_proc.setdefault("", []).append(f"{d.path} " + "|".join(_tails(d.a, d.b)))
            for proc, items in per_proc.items():
                where = f"ksm_stat {proc}" if proc else "step"
                lines += _wrap_items(f"{'':>12}{where} ({a_side}|{b_side}): ", items)
    groups: dict[tuple, list[int]] = {}
    for i in cmp.differing_steps():
        for d in cmp.at(i):
            groups.setdefault((d.path, d.a, d.b), []).append(i)
    if len(left.snapshots) != len(right.snapshots):
        lines.append(f"  != number of steps: {a_side} {len(left.snapshots)}, "
                     f"{b_side} {len(right.snapshots)}")
    lines.append("")
    for (path, va, vb), steps in list(groups.items())[:limit]:
        va, vb = _tails(va, vb) if path == "op" else (repr(va), repr(vb))
        lines.append(f"  != {path}: {a_side} {va}, {b_side} {vb}  (after {_ranges(steps)})")
    if len(groups) > limit:
        lines.append(f"  ... and {len(groups) - limit} more")
    lines.append(cmp.summary())
    return "\n".join(lines)
