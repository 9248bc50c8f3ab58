"""KSM's two trees drawn as trees: the stable tree (with chains and dups) and the
unstable tree.

Every node is labelled with its id (``s3`` is ``stable_node`` 3; an unstable item
is the rmap_item of the page it names) and every stable node lists the virtual
pages whose rmap_items hang on it (its ``hlist``), as ``name pid:address``.
Given the snapshot taken *before* a step (``before=``), the figure also marks what
moved: a page that left the unstable tree for a stable node leaves a dashed ghost
in the unstable tree, an arrow points from it to its stable node, and every stable
node that gained pages gets a ring.

Layout is computed from the tree's shape: an in-order walk gives every node its
own column (a chain gets one column per dup), so labels never share a column;
a node's row is its parent's row plus one (plus two under a chain, whose dups
take the row in between).  Rows are as tall as the tallest label of the tree.
Fixed traces, in order: stable edges, chain->dup edges, stable nodes, chains,
dups, the ring of nodes that gained pages, unstable edges, unstable nodes, ghosts
of the pages that left the unstable tree.
"""
from __future__ import annotations

from .snapshot import MachineSnapshot, TreeNodeSnap
from .style import (LABEL_SIZE, OKABE_ITO, ROLE_COLOURS, base_layout, blank_axis, plain_builder,
                    scatter)

COL = 118          # pixels per column, one-line labels
COL_FULL = 196     # pixels per column with full labels ("vm1[0] 1000:0x7f7fffffa000")
LEVEL = 100        # minimum pixels per row
LINE_PX = 17       # one line of a label (13 px text)
MARKER_PX = 12     # from a marker's centre to the top of its label
MAX_HANGERS = 8    # virtual pages listed under a stable node (the rest: "+N more", on hover)
MAX_WIDTH = 1500
NARROWEST = 600    # the output area of an 800 px browser window
MOVED = OKABE_ITO["vermillion"]
_SUBTITLE = "<span style='font-size:12px;color:#555555'>"


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


def vpage_name(label: str, vpage) -> str:
    """'vm1[0] 1000:0x7f7fffffa000': a virtual page by its name and by pid:address."""
    pid, address = vpage
    return f"{label} {pid}:{address:#x}"


def _hangers(n: TreeNodeSnap) -> list[str]:
    return [vpage_name(lab, vp) for lab, vp in zip(n.mappers, n.vpages)] if n.vpages \
        else list(n.mappers)


def node_label(n: TreeNodeSnap, short: bool = False) -> str:
    """The node's id, content, pfn and (stable nodes) the virtual pages hanging on it;
    ``short``: one narrow line for wide trees (the rest on hover)."""
    pfn = f"{n.pfn:#x}" if n.pfn is not None else "?"
    if n.kind == "chain":
        return f"chain {n.key}" if short else f"chain {n.key}<br>{n.tag}"
    if n.kind == "unstable":
        if short:
            return n.mappers[0]
        return (_hangers(n)[0] + f"<br>{n.tag}"
                + (f"<br>pfn {pfn}" if n.pfn is not None else ""))
    if short:   # dups stand in adjacent columns of one row: the id and count alone fit
        return f"{n.key} ×{n.sharers}"
    lines = [f"{n.key} · pfn {pfn}", n.tag,
             f"{n.sharers} sharer" + ("s" if n.sharers != 1 else "") + (":" if n.sharers else "")]
    hang = _hangers(n)
    lines += hang[:MAX_HANGERS]
    if len(hang) > MAX_HANGERS:
        lines.append(f"+{len(hang) - MAX_HANGERS} more (hover)")
    return "<br>".join(lines)


def label_lines(n: TreeNodeSnap, short: bool = False) -> int:
    return node_label(n, short).count("<br>") + 1


def node_hover(n: TreeNodeSnap) -> str:
    head = {"node": "stable_node", "chain": "stable_node chain", "dup": "dup of a chain",
            "unstable": "unstable tree item (an rmap_item)"}[n.kind]
    lines = [f"{head} {n.key} ({'red' if n.red else 'black'} in the rbtree)", f"content {n.tag}"]
    if n.pfn is not None:
        lines.append(f"pfn {n.pfn:#x}")
    if n.kind == "chain":
        lines.append(f"{n.sharers} rmap_items over its dups")
    elif n.mappers:
        lines.append(("rmap_items hanging on it:<br>  " if n.kind != "unstable" else "page ")
                     + "<br>  ".join(_hangers(n)))
    return "<br>".join(lines)


# --- what moved ------------------------------------------------------------------------

def tree_moves(before: MachineSnapshot | None, after: MachineSnapshot) -> list[tuple]:
    """Pages newly hung on a stable node between two snapshots:
    [(label, (pid, address), came_from, stable key)], came_from "unstable tree",
    another stable node's key, or "no tree" (a page KSM met for the first time this
    scan, e.g. the scanned page of a merge)."""
    if before is None:
        return []
    was = {}
    for n in before.unstable_tree:
        for vp in n.vpages:
            was[vp] = "unstable tree"
    for n in before.stable_tree:
        if n.kind != "chain":
            for vp in n.vpages:
                was[vp] = n.key
    out = []
    for n in after.stable_tree:
        if n.kind == "chain":
            continue
        for lab, vp in zip(n.mappers, n.vpages):
            came = was.get(vp, "no tree")
            if came != n.key:
                out.append((lab, vp, came, n.key))
    return out


def moves_text(moves) -> list[str]:
    return [f"moved: {vpage_name(lab, vp)}: {came} -> stable node {key}"
            for lab, vp, came, key in moves]


# --- drawing -----------------------------------------------------------------------------

def _edges(nodes, pos, dup: bool, below_rows: dict, top_rows: float):
    """Links from under the parent's label to the top of the child's marker."""
    xs, ys = [], []
    for n in nodes:
        if n.parent is None or (n.side == "dup") != dup:
            continue
        (x0, r0), (x1, r1) = pos[n.parent], pos[n.key]
        xs += [x0, x1, None]
        ys += [-r0 - below_rows[n.parent], -r1 + top_rows, None]
    return xs, ys


def _node_trace(nodes, pos, name, symbol, colour, size, short, row, line_colour, dash=None):
    return scatter(
        x=[pos[n.key][0] for n in nodes], y=[-pos[n.key][1] for n in nodes],
        mode="markers+text", name=name, text=[node_label(n, short) for n in nodes],
        textposition="bottom center", cliponaxis=False,
        textfont=dict(size=LABEL_SIZE - (1 if short else 0)),
        hovertext=[node_hover(n) for n in nodes], hoverinfo="text",
        marker=dict(symbol=symbol, size=size, color=colour,
                    line=dict(width=2, color=line_colour, **({"dash": dash} if dash else {}))),
        **_AXES[row])


#: the axes of the two rows (what plotly's make_subplots(rows=2, cols=1) names them)
_AXES = {1: dict(xaxis="x", yaxis="y"), 2: dict(xaxis="x2", yaxis="y2")}


def _row_domains(heights, spacing) -> list[tuple[float, float]]:
    """The y domains of stacked rows, top row first (make_subplots' row_heights and
    vertical_spacing)."""
    room = 1.0 - spacing * (len(heights) - 1)
    total = float(sum(heights)) or 1.0
    out, top = [], 1.0
    for h in heights:
        bottom = max(0.0, top - room * h / total)     # never -1e-16 (plotly refuses it)
        out.append((bottom, top))
        top = bottom - spacing
    return out


class _TreeGeometry:
    """Rows, columns and pixel scale of one tree in the figure (``extra_lines``: the
    height of labels drawn in its first row besides its own, the ghosts')."""

    def __init__(self, nodes, short, extra_lines=0):
        self.pos = tree_layout(nodes)
        self.cols = 1 + max((x for x, _ in self.pos.values()), default=-1)
        self.rows = 1 + max((r for _, r in self.pos.values()), default=0)
        lines = {n.key: label_lines(n, short) for n in nodes}
        most = max([*lines.values(), extra_lines, 1])
        self.level = max(LEVEL, MARKER_PX + LINE_PX * most + 30)
        self.below = {k: (MARKER_PX + LINE_PX * v + 4) / self.level for k, v in lines.items()}
        self.top = MARKER_PX / self.level
        self.bottom = (MARKER_PX + LINE_PX * most + 6) / self.level     # under the last row
        self.head = 45 / self.level                                     # above the first row

    @property
    def px(self) -> float:
        return (self.rows - 1 + self.bottom + self.head) * self.level


def _ghost_columns(stable, unstable, from_unstable) -> list[int]:
    """Columns of the ghosts: right of the unstable tree and right of their stable
    nodes, so that an arrow never runs through a label."""
    if not from_unstable:
        return []
    spos, upos = tree_layout(stable), tree_layout(unstable)
    first = max([1 + max((x for x, _ in upos.values()), default=-1)]
                + [int(spos[key][0]) + 1 for *_x, key in from_unstable])
    return [first + i for i in range(len(from_unstable))]


def _short(stable, unstable, width, ghost_cols) -> tuple[bool, int, int]:
    """(one-line labels?, columns, pixels per column).

    Without a ``width`` the figure is drawn responsive (render.responsive): it fills
    whatever output shows it, down to the ~600 px an 800 px window leaves, so the full
    labels (196 px a column) are used only where they fit at that width."""
    cols = max(1 + max((x for x, _ in tree_layout(stable).values()), default=-1),
               1 + max((x for x, _ in tree_layout(unstable).values()), default=-1),
               1 + max(ghost_cols, default=-1), 2)
    room = (width or NARROWEST) - 40
    if cols * COL_FULL <= room:
        return False, cols, COL_FULL
    return cols * COL > room, cols, COL


@plain_builder
def trees_figure(snap: MachineSnapshot, *, title: str | None = None,
                 width: int | None = None, before: MachineSnapshot | None = None,
                 counts: bool = True) -> dict:
    """Both trees; with ``before`` (the snapshot before the last step) also what moved.
    ``counts=False`` leaves the number of KSM pages and items out of the two captions
    (a read-the-figure exercise asks for them: the reader counts the nodes)."""
    stable, unstable = snap.stable_tree, snap.unstable_tree
    moves = tree_moves(before, snap)
    from_unstable = [mv for mv in moves if mv[2] == "unstable tree"]
    gx = _ghost_columns(stable, unstable, from_unstable)
    short, cols, colw = _short(stable, unstable, width, gx)
    sg = _TreeGeometry(stable, short)
    ug = _TreeGeometry(unstable, short, extra_lines=(1 if short else 3) if gx else 0)
    width = width or max(760, min(MAX_WIDTH, int(cols * colw) + 60))
    chains = sum(1 for n in stable if n.kind == "chain")
    kpages = sum(1 for n in stable if n.kind in ("node", "dup"))
    # two lines each, the second small: one line was cut at the right in an 800 px window
    s_title = ((f"Stable tree: {kpages} KSM page{'s' if kpages != 1 else ''}"
                + (f" ({chains} chain{'s' if chains != 1 else ''})" if chains else ""))
               if counts else "Stable tree")
    s_title += f"<br>{_SUBTITLE}keyed by content, survives scans</span>"
    u_title = (f"Unstable tree: {len(unstable)} item{'s' if len(unstable) != 1 else ''}"
               if counts else "Unstable tree")
    u_title += (f"<br>{_SUBTITLE}pages unchanged for one scan; emptied when a full scan "
                "starts</span>")
    top, bottom, gap = 105, 80, 75
    height = int(top + bottom + gap + sg.px + ug.px)
    spacing = gap / (height - top - bottom)
    (yd1, yd2) = _row_domains([sg.px, ug.px], spacing)
    xd = (0.0, 1.0)
    data = []
    sx, sy = _edges(stable, sg.pos, False, sg.below, sg.top)
    data.append(scatter(x=sx, y=sy, mode="lines", name="rbtree link", hoverinfo="skip",
                        line=dict(color="#777777", width=2), **_AXES[1]))
    dx, dy = _edges(stable, sg.pos, True, sg.below, sg.top)
    data.append(scatter(x=dx, y=dy, mode="lines", name="chain → dup", hoverinfo="skip",
                        line=dict(color=OKABE_ITO["vermillion"], width=2, dash="dot"),
                        **_AXES[1]))
    ksm = ROLE_COLOURS["ksm"]
    data.append(_node_trace([n for n in stable if n.kind == "node"], sg.pos,
                            "stable node (a KSM page)", "circle", ksm, 22, short, 1, "#333333"))
    data.append(_node_trace([n for n in stable if n.kind == "chain"], sg.pos,
                            "chain (content with several KSM copies)",
                            "diamond", OKABE_ITO["vermillion"], 24, short, 1, "#333333"))
    data.append(_node_trace([n for n in stable if n.kind == "dup"], sg.pos,
                            "dup (one KSM copy in a chain)", "circle", ksm, 20, short, 1,
                            OKABE_ITO["vermillion"]))
    gained = sorted({key for *_x, key in moves}, key=lambda k: sg.pos[k])
    data.append(scatter(
        x=[sg.pos[k][0] for k in gained], y=[-sg.pos[k][1] for k in gained], mode="markers",
        name="gained pages in the last step", hoverinfo="text",
        hovertext=["<br>".join(moves_text([mv for mv in moves if mv[3] == k])) for k in gained],
        marker=dict(symbol="circle-open", size=32, color=MOVED, line=dict(width=3, color=MOVED)),
        **_AXES[1]))
    ux, uy = _edges(unstable, ug.pos, False, ug.below, ug.top)
    data.append(scatter(x=ux, y=uy, mode="lines", name="rbtree link ", hoverinfo="skip",
                        showlegend=False, line=dict(color="#777777", width=2), **_AXES[2]))
    data.append(_node_trace(list(unstable), ug.pos, "unstable item (an ordinary page)", "square",
                            ROLE_COLOURS["anon"], 20, short, 2, "#333333"))
    # ghosts: the pages that just left the unstable tree, right of it
    data.append(scatter(
        x=gx, y=[0] * len(gx), mode="markers+text", name="left the unstable tree",
        text=[(lab if short else f"{vpage_name(lab, vp)}<br>left the unstable tree<br>for {key}")
              for lab, vp, _c, key in from_unstable],
        textposition="bottom center", textfont=dict(size=LABEL_SIZE - 1, color=MOVED),
        cliponaxis=False,
        hovertext=moves_text(from_unstable), hoverinfo="text",
        marker=dict(symbol="square-open", size=20, color=MOVED, line=dict(width=2, color=MOVED)),
        **_AXES[2]))
    layout = base_layout(title or "KSM's trees", width, height,
                         margin=dict(l=20, r=20, t=top, b=bottom))
    # the legend goes under the plots: the subplot titles own the space above them
    layout["legend"].update(y=-40 / height, yanchor="top", x=0.0, xanchor="left")
    lo, hi = -0.7, cols - 0.3
    s_range = (-(sg.rows - 1) - sg.bottom, sg.head)
    u_range = (-(ug.rows - 1) - ug.bottom, ug.head)
    layout["xaxis"] = blank_axis(lo, hi, domain=list(xd), anchor="y")
    layout["xaxis2"] = blank_axis(lo, hi, domain=list(xd), anchor="y2")
    layout["yaxis"] = blank_axis(*s_range, domain=list(yd1), anchor="x")
    layout["yaxis2"] = blank_axis(*u_range, domain=list(yd2), anchor="x2")
    # the two trees' titles, at the top left of their rows
    annotations = [dict(text=t, x=0.0, xanchor="left", align="left", xref="paper", y=dom[1],
                        yanchor="bottom",
                        yref="paper", showarrow=False, font=dict(size=15))
                   for t, dom in ((s_title, yd1), (u_title, yd2))]
    for tree, row in ((stable, 1), (unstable, 2)):
        if not tree and not (row == 2 and from_unstable):
            annotations.append(dict(text="(empty)", x=(cols - 1) / 2, y=0, showarrow=False,
                                    font=dict(size=15, color="#777777"),
                                    xref=_AXES[row]["xaxis"], yref=_AXES[row]["yaxis"]))
    # one arrow per page that moved from the unstable tree to a stable node
    plot_w, plot_h = width - 40, height - top - bottom

    def paper(x, y, dom, rng):
        return (xd[0] + (x - lo) / (hi - lo) * (xd[1] - xd[0]),
                dom[0] + (y - rng[0]) / (rng[1] - rng[0]) * (dom[1] - dom[0]))

    for gxi, (lab, vp, _c, key) in zip(gx, from_unstable):
        # from the top of the ghost to the right of the stable node's marker
        hx, hy = paper(sg.pos[key][0] + 0.18, -sg.pos[key][1], yd1, s_range)
        tx, ty = paper(gxi, ug.top, yd2, u_range)
        annotations.append(dict(xref="paper", yref="paper", x=hx, y=hy,
                                ax=(tx - hx) * plot_w, ay=-(ty - hy) * plot_h,
                                text="", showarrow=True, arrowhead=3, arrowsize=1.2,
                                arrowwidth=2.5, arrowcolor=MOVED, opacity=0.85))
    layout["annotations"] = annotations
    return {"data": data, "layout": layout}


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
            return f"{pad}{_hangers(n)[0]} {n.tag}{pfn}"
        pfn = f" pfn {n.pfn:#x}" if n.pfn is not None else ""
        return f"{pad}{n.key} {n.tag}{pfn}: {n.sharers} sharers [{', '.join(_hangers(n))}]"

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


def trees_text(snap: MachineSnapshot, before: MachineSnapshot | None = None) -> str:
    """The text twin of trees_figure (with ``before``: what moved, too)."""
    s = tree_text(snap.stable_tree) or ["(empty)"]
    u = tree_text(snap.unstable_tree) or ["(empty)"]
    out = "stable tree:\n  " + "\n  ".join(s) + "\nunstable tree:\n  " + "\n  ".join(u)
    moved = moves_text(tree_moves(before, snap))
    return out + ("\n" + "\n".join(moved) if moved else "")
