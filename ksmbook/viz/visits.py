"""Smart scan as a visit grid: one row per page, one column per full scan, and in
each cell what ksmd did with that page in that scan.

The grid is read from snapshots taken after each full scan (``snaps[0]`` before
the first), never from the machine: an rmap_item whose ``remaining_skips`` went
down by one between two snapshots was skipped in that scan
(``should_skip_rmap_item()`` in mm/ksm.c, 6.7+, decrements it and returns true);
any other page with an rmap_item was processed by ``cmp_and_merge_page()``, and
a processed page whose ``remaining_skips`` went from 0 to N will now be skipped N
times (``skip_age()``).  A page with no rmap_item was not met (not mapped yet,
or forgotten, as zero-page merges are).

Every cell carries its word as well as its colour: "scan", "scan +N" (then N
skips), "skip k" (k skips still to come), "·" (not met).
"""
from __future__ import annotations

import plotly.graph_objects as go

from .style import OKABE_ITO, base_layout

#: cell kinds, in the heatmap's value order
KINDS = ("absent", "scanned", "skipped")
COLOURS = {"absent": "#F2F2F2", "scanned": OKABE_ITO["sky"], "skipped": "#FFFFFF"}
CELL_W, CELL_H = 62, 30
NARROWEST = 600    # the output area of an 800 px browser window


def visit_grid(snaps) -> tuple[list[str], list[list[tuple[str, int]]]]:
    """(page labels, rows): rows[p][k] = (kind, n) for page p in full scan k+1;
    n is the skips granted (scanned) or still to come (skipped)."""
    items = [{(r.pid, r.address): r for r in s.rmap_items} for s in snaps]
    labels = {}
    for s in snaps:
        for r in s.rmap_items:
            labels.setdefault((r.pid, r.address), r.label)
    pages = sorted(labels)
    rows = []
    for vp in pages:
        row = []
        for prev, now in zip(items, items[1:]):
            a, b = prev.get(vp), now.get(vp)
            if b is None:
                row.append(("absent", 0))
            elif a is not None and a.remaining_skips > 0 and b.remaining_skips == a.remaining_skips - 1:
                row.append(("skipped", b.remaining_skips))
            else:
                granted = b.remaining_skips if (a is None or a.remaining_skips == 0) else 0
                row.append(("scanned", granted))
        rows.append(row)
    return [labels[vp] for vp in pages], rows


def cell_text(kind: str, n: int, sep: str = " ") -> str:
    if kind == "absent":
        return "·"
    if kind == "skipped":
        return f"skip{sep}{n}" if n else "skip"
    return f"scan{sep}+{n}" if n else "scan"


def scans_per_full_scan(rows) -> list[int]:
    """Pages processed in each full scan (the column sums of "scan" cells)."""
    return [sum(1 for r in rows if r[k][0] == "scanned") for k in range(len(rows[0]))] \
        if rows else []


def visit_grid_figure(snaps, *, title: str | None = None, width: int | None = None) -> go.Figure:
    """The grid as a heatmap with a word in every cell; a last row counts the pages
    processed per scan (what pages_scanned grows by)."""
    labels, rows = visit_grid(snaps)
    n_scans = len(snaps) - 1
    scans = [f"{k}" for k in range(1, n_scans + 1)]
    done = scans_per_full_scan(rows)
    z = [[KINDS.index(kind) for kind, _n in r] for r in rows]
    # the ~600 px an 800 px window leaves: a word and its number on two lines when the
    # columns are too narrow for "scan +4" (they ran into each other)
    narrow = CELL_W * n_scans > NARROWEST - 150
    cell_h = CELL_H + (14 if narrow else 0)
    text = [[cell_text(kind, n, "<br>" if narrow else " ") for kind, n in r] for r in rows]
    hover = [[f"{labels[p]}, full scan {k + 1}: " + {
        "absent": "no rmap_item (not met)",
        "scanned": "processed by cmp_and_merge_page()"
                   + (f"; should_skip_rmap_item() will now skip it {n} scan(s)" if n else ""),
        "skipped": f"skipped by should_skip_rmap_item(); {n} more skip(s) to come"}[kind]
        for k, (kind, n) in enumerate(r)] for p, r in enumerate(rows)]
    ys = list(labels)
    scale = [[0.0, COLOURS["absent"]], [1 / 3, COLOURS["absent"]],
             [1 / 3, COLOURS["scanned"]], [2 / 3, COLOURS["scanned"]],
             [2 / 3, COLOURS["skipped"]], [1.0, COLOURS["skipped"]]]
    grid = go.Heatmap(
        z=z, x=scans, y=ys, zmin=-0.5, zmax=2.5, colorscale=scale, showscale=False,
        text=text, texttemplate="%{text}", textfont=dict(size=11 if narrow else 12),
        xgap=2, ygap=2,
        hovertext=hover, hoverinfo="text", name="visits")
    total = go.Scatter(
        x=scans, y=["pages processed"] * n_scans, mode="text", text=[str(d) for d in done],
        textfont=dict(size=13, color="#222222"), name="pages processed per scan",
        hovertext=[f"full scan {k + 1}: {d} page(s) processed, "
                   f"{len(rows) - d} skipped or absent" for k, d in enumerate(done)],
        hoverinfo="text", showlegend=False)
    width = width or max(520, 130 + CELL_W * n_scans)
    height = 150 + cell_h * (len(rows) + 1)
    fig = go.Figure([grid, total])
    layout = base_layout(title or "Smart scan: what ksmd did with each page in each full scan",
                         width, height, margin=dict(l=130, r=20, t=60, b=60), showlegend=False)
    layout["xaxis"] = dict(title="full scan", side="bottom", type="category", fixedrange=True,
                           showgrid=False, zeroline=False)
    layout["yaxis"] = dict(type="category", autorange="reversed", fixedrange=True,
                           categoryorder="array", categoryarray=ys + ["pages processed"],
                           showgrid=False, zeroline=False)
    fig.update_layout(layout)
    return fig


def visit_grid_text(snaps) -> str:
    """The text twin: the same grid in columns."""
    labels, rows = visit_grid(snaps)
    n_scans = len(snaps) - 1
    w = max([len(x) for x in labels] + [15])
    head = f"{'page':<{w}} " + " ".join(f"{k:>7}" for k in range(1, n_scans + 1))
    lines = [head] + [f"{lab:<{w}} " + " ".join(f"{cell_text(*c):>7}" for c in r)
                      for lab, r in zip(labels, rows)]
    lines.append(f"{'pages processed':<{w}} " + " ".join(f"{d:>7}" for d in scans_per_full_scan(rows)))
    return "\n".join(lines)

