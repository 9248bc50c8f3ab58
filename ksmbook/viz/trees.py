"""KSM's two trees drawn as trees: the stable tree (with chains and dups) and the
unstable tree.

Layout is computed from the tree's shape: an in-order walk gives every node its
own column (a chain gets one column per dup), so labels never share a column;
a node's row is its parent's row plus one (plus two under a chain, whose dups
take the row in between).  Fixed traces, in order: stable edges, chain->dup
edges, stable nodes, chains, dups, unstable edges, unstable nodes.
"""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .snapshot import MachineSnapshot, TreeNodeSnap
from .style import LABEL_SIZE, OKABE_ITO, ROLE_COLOURS, base_layout, blank_axis

COL = 118          # pixels per column
LEVEL = 100        # pixels per row
#: how far (in rows) a node's label reaches below its marker: edges start there
LABEL_ROWS = {"node": 0.62, "dup": 0.62, "unstable": 0.62, "chain": 0.45}


def tree_layout(nodes) -> dict:
    """{key: (x, row)} for TreeNodeSnaps (parent/side links); x in columns."""
    kids = {}
    dups = {}
    root = None
    for n in nodes:
        if n.parent is None:
            root = n
        elif n.side == "dup":
            dups.setdefault(n.parent, []).append(n)
        else:
            kids[(n.parent, n.side)] = n
    pos = {}
    col = 0

    def place(n, row):
        nonlocal col
        below = row + (2 if n.kind == "chain" else 1)
        left = kids.get((n.key, "L"))
        if left is not None:
            place(left, below)
        mine = dups.get(n.key, [])
        if mine:
            for d in mine:
                pos[d.key] = (col, row + 1)
                col += 1
            pos[n.key] = ((pos[mine[0].key][0] + pos[mine[-1].key][0]) / 2, row)
        else:
            pos[n.key] = (col, row)
            col += 1
        right = kids.get((n.key, "R"))
        if right is not None:
            place(right, below)

    if root is not None:
        place(root, 0)
    return pos


def node_label(n: TreeNodeSnap, short: bool = False) -> str:
    """Three lines (content, pfn, sharers); ``short``: one narrow line for wide trees
    (the pfn for KSM pages, the page's name for unstable items; the rest on hover)."""
    pfn = f"{n.pfn:#x}" if n.pfn is not None else "?"
    if n.kind == "chain":
        return "chain" if short else f"chain<br>{n.tag}"
    if n.kind == "unstable":
        if short:
            return n.mappers[0]
        return f"{n.mappers[0]}<br>{n.tag}" + (f"<br>pfn {pfn}" if n.pfn is not None else "")
    if short:   # dups stand in adjacent columns of one row: the count alone fits
        return f"×{n.sharers}" if n.kind == "dup" else f"{pfn} ×{n.sharers}"
    return f"{n.tag}<br>pfn {pfn}<br>{n.sharers} sharer" + ("s" if n.sharers != 1 else "")


def node_hover(n: TreeNodeSnap) -> str:
    head = {"node": "stable node", "chain": "stable node chain", "dup": "dup of a chain",
            "unstable": "unstable tree item"}[n.kind]
    lines = [f"{head} {n.key} ({'red' if n.red else 'black'} in the rbtree)", f"content {n.tag}"]
    if n.pfn is not None:
        lines.append(f"pfn {n.pfn:#x}")
    if n.mappers:
        lines.append("mapped by " + ", ".join(n.mappers))
    if n.kind == "chain":
        lines.append(f"{n.sharers} rmap_items over its dups")
    return "<br>".join(lines)


def _edges(nodes, pos, dup: bool, short: bool = False):
    """Links from under the parent's label to the top of the child's marker."""
    kinds = {n.key: n.kind for n in nodes}
    xs, ys = [], []
    for n in nodes:
        if n.parent is None or (n.side == "dup") != dup:
            continue
        (x0, r0), (x1, r1) = pos[n.parent], pos[n.key]
        below = 0.3 if short else LABEL_ROWS[kinds[n.parent]]
        xs += [x0, x1, None]
        ys += [-r0 - below, -r1 + 0.12, None]
    return xs, ys


def _node_trace(nodes, pos, name, symbol, colour, size, short, row, col_, fig, line_colour):
    fig.add_trace(go.Scatter(
        x=[pos[n.key][0] for n in nodes], y=[-pos[n.key][1] for n in nodes],
        mode="markers+text", name=name, text=[node_label(n, short) for n in nodes],
        textposition="bottom center", textfont=dict(size=LABEL_SIZE - (1 if short else 0)),
        hovertext=[node_hover(n) for n in nodes], hoverinfo="text",
        marker=dict(symbol=symbol, size=size, color=colour, line=dict(width=2, color=line_colour))),
        row=row, col=col_)


def trees_figure(snap: MachineSnapshot, *, title: str | None = None,
                 width: int | None = None) -> go.Figure:
    stable, unstable = snap.stable_tree, snap.unstable_tree
    spos, upos = tree_layout(stable), tree_layout(unstable)
    s_cols = 1 + max((x for x, _ in spos.values()), default=0)
    u_cols = 1 + max((x for x, _ in upos.values()), default=0)
    s_rows = 1 + max((r for _, r in spos.values()), default=0)
    u_rows = 1 + max((r for _, r in upos.values()), default=0)
    cols = max(s_cols, u_cols, 4)
    width = width or max(760, min(1500, int(cols * COL) + 60))
    short = cols * COL > width            # too many nodes: one-line labels
    chains = sum(1 for n in stable if n.kind == "chain")
    kpages = sum(1 for n in stable if n.kind in ("node", "dup"))
    s_title = (f"Stable tree: {kpages} KSM page{'s' if kpages != 1 else ''}"
               + (f" ({chains} chain{'s' if chains != 1 else ''})" if chains else "")
               + "  — keyed by content, survives scans")
    u_title = (f"Unstable tree: {len(unstable)} item{'s' if len(unstable) != 1 else ''}"
               "  — pages unchanged for one scan, emptied when a full scan starts")
    fig = make_subplots(rows=2, cols=1, subplot_titles=(s_title, u_title),
                        row_heights=[s_rows + 0.6, u_rows + 0.6], vertical_spacing=0.12)
    sx, sy = _edges(stable, spos, dup=False, short=short)
    fig.add_trace(go.Scatter(x=sx, y=sy, mode="lines", name="rbtree link", hoverinfo="skip",
                             line=dict(color="#777777", width=2)), row=1, col=1)
    dx, dy = _edges(stable, spos, dup=True, short=short)
    fig.add_trace(go.Scatter(x=dx, y=dy, mode="lines", name="chain → dup", hoverinfo="skip",
                             line=dict(color=OKABE_ITO["vermillion"], width=2, dash="dot")),
                  row=1, col=1)
    ksm = ROLE_COLOURS["ksm"]
    _node_trace([n for n in stable if n.kind == "node"], spos, "stable node (a KSM page)",
                "circle", ksm, 22, short, 1, 1, fig, "#333333")
    _node_trace([n for n in stable if n.kind == "chain"], spos, "chain (content with several KSM copies)",
                "diamond", OKABE_ITO["vermillion"], 24, short, 1, 1, fig, "#333333")
    _node_trace([n for n in stable if n.kind == "dup"], spos, "dup (one KSM copy in a chain)",
                "circle", ksm, 20, short, 1, 1, fig, OKABE_ITO["vermillion"])
    ux, uy = _edges(unstable, upos, dup=False, short=short)
    fig.add_trace(go.Scatter(x=ux, y=uy, mode="lines", name="rbtree link ", hoverinfo="skip",
                             showlegend=False, line=dict(color="#777777", width=2)), row=2, col=1)
    _node_trace(list(unstable), upos, "unstable item (an ordinary page)", "square",
                ROLE_COLOURS["anon"], 20, short, 2, 1, fig, "#333333")
    height = int(150 + LEVEL * (s_rows + u_rows + 1.2))
    layout = base_layout(title or "KSM's trees", width, height,
                         margin=dict(l=20, r=20, t=90, b=80))
    # the legend goes under the plots: the subplot titles own the space above them
    layout["legend"].update(y=-40 / height, yanchor="top", x=0.0, xanchor="left")
    fig.update_layout(layout)
    lo, hi = -0.7, cols - 0.3
    fig.update_xaxes(blank_axis(lo, hi))
    fig.update_yaxes(blank_axis(-s_rows + 0.35, 0.45), row=1, col=1)
    fig.update_yaxes(blank_axis(-u_rows + 0.35, 0.45), row=2, col=1)
    for ann in fig.layout.annotations:
        ann.font = dict(size=15)
        ann.x, ann.xanchor = 0.0, "left"
    for tree, row in ((stable, 1), (unstable, 2)):
        if not tree:
            fig.add_annotation(text="(empty)", x=(cols - 1) / 2, y=0, showarrow=False,
                               font=dict(size=15, color="#777777"), row=row, col=1)
        else:
            # a hidden marker keeps the number of annotations fixed for in-place updates
            fig.add_annotation(text="", x=0, y=0, showarrow=False, row=row, col=1)
    return fig


def tree_text(nodes) -> list[str]:
    """Indented lines for one tree, pre-order (node, its dups, left, right)."""
    kids, dups, roots = {}, {}, []
    for n in nodes:
        if n.parent is None:
            roots.append(n)
        elif n.side == "dup":
            dups.setdefault(n.parent, []).append(n)
        else:
            kids[(n.parent, n.side)] = n
    out = []

    def line(n, depth):
        pad = "  " * depth + {"root": "", "L": "L ", "R": "R ", "dup": "dup "}[n.side]
        if n.kind == "chain":
            return f"{pad}chain {n.key} {n.tag}: {n.sharers} sharers over its dups"
        if n.kind == "unstable":
            pfn = f" pfn {n.pfn:#x}" if n.pfn is not None else ""
            return f"{pad}{n.mappers[0]} {n.tag}{pfn}"
        pfn = f" pfn {n.pfn:#x}" if n.pfn is not None else ""
        return f"{pad}{n.key} {n.tag}{pfn}: {n.sharers} sharers [{', '.join(n.mappers)}]"

    def visit(n, depth):
        out.append(line(n, depth))
        for d in dups.get(n.key, []):
            out.append(line(d, depth + 1))
        for side in ("L", "R"):
            child = kids.get((n.key, side))
            if child is not None:
                visit(child, depth + 1)

    for r in roots:
        visit(r, 0)
    return out


def trees_text(snap: MachineSnapshot) -> str:
    """The text twin of trees_figure."""
    s = tree_text(snap.stable_tree) or ["(empty)"]
    u = tree_text(snap.unstable_tree) or ["(empty)"]
    return "stable tree:\n  " + "\n  ".join(s) + "\nunstable tree:\n  " + "\n  ".join(u)
