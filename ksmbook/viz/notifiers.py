"""One step of chapter 07's story as a sequence diagram: who did what, in order.

Lanes, top to bottom: the vCPU (exits and retries), KVM's spte for each guest frame,
the MMU notifier calls, the host PTE behind each guest frame, and the host's own
work (faults, ksmd merges).  Event *i* of the step sits at x = i, so the picture is
read left to right; shaded bands group the events of one host call site
(write_protect_page, replace_page, wp_page_copy ...).  The hover text of every mark
is the viz.events.explain() line of its event: which era rule fired it and why.

``sequence_items(record)`` is the data (tested); ``sequence_figure`` draws it with a
fixed list of traces, one per kind of mark, so a live figure can be updated in
place; ``sequence_text`` is the text twin, numbered like the x axis.
"""
from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

from ..kernel.events import Fault, KsmEvent, KvmEvent, NotifierCall, PteChange
from ..kernel.pagetable import pte_pfn, pte_write
from .events import explain, explain_event, rule_text
from .style import LABEL_SIZE, OKABE_ITO, base_layout

#: the kinds of mark, in legend order: name, colour, marker symbol
KINDS = {
    "exit": ("EPT-violation exit", OKABE_ITO["vermillion"], "x"),
    "retry": ("fault retried (mmu_invalidate_retry)", OKABE_ITO["vermillion"], "circle-x-open"),
    "install": ("spte installed", OKABE_ITO["green"], "circle"),
    "remap": ("spte remapped in place (change_pte)", OKABE_ITO["orange"], "diamond"),
    "zap": ("spte zapped", OKABE_ITO["vermillion"], "square-x-open"),
    "miss": ("change_pte found no spte", OKABE_ITO["grey"], "circle-open"),
    "range_start": ("invalidate_range_start (opens)", OKABE_ITO["blue"], "triangle-right"),
    "range_end": ("invalidate_range_end (closes)", OKABE_ITO["blue"], "triangle-left"),
    "change_pte": ("change_pte", OKABE_ITO["orange"], "star"),
    "invalidate_page": ("invalidate_page", OKABE_ITO["purple"], "hexagon"),
    "notifier": ("other notifier", OKABE_ITO["purple"], "hexagon-open"),
    "pte": ("host PTE written", OKABE_ITO["black"], "square"),
    "host": ("host fault / ksmd", OKABE_ITO["sky"], "triangle-up"),
}
#: KvmEvent actions that are drawn, and their kind
_KVM_KINDS = {"exit": "exit", "retry": "retry", "spte_install": "install",
              "spte_remap": "remap", "spte_zap": "zap", "change_pte_miss": "miss",
              "change_pte_skip": "miss"}
_NOTIFIER_KINDS = {"invalidate_range_start": "range_start", "invalidate_range_end": "range_end",
                   "change_pte": "change_pte", "invalidate_page": "invalidate_page"}
_NOTIFIER_LABELS = {"invalidate_range_start": "range_start",
                    "invalidate_range_end": "range_end"}
#: call sites the bands name (host functions that change a guest page's PTE)
KVM_SITE = "KVM"

WIDTH = 1080          # fixed, so the live figure keeps its size from step to step
LANE_PX = 62
MARGIN_L, MARGIN_R = 130, 30
#: labels are placed so that they do not collide down to this width of the figure
#: (an 800 px JupyterLab window leaves about 680 px to an output)
NARROWEST = 680
LABEL_FONT = 12
CHAR_PX = 0.6 * LABEL_FONT      # DejaVu Sans, average advance of the label characters
TOP, BOTTOM = "top center", "bottom center"


@dataclass(frozen=True)
class SeqItem:
    """One mark of the diagram."""
    x: int                  # 1-based position in the step
    lane: str
    kind: str               # a key of KINDS
    label: str              # the short text drawn next to the mark
    site: str               # the call site whose band it belongs to
    gfn: int | None         # the guest frame it is about (None: not one frame)
    why: str                # the explain() line of the event


def lanes(pages: int = 2) -> list[str]:
    """The lane names, top to bottom."""
    return (["vCPU"] + [f"spte gfn {g}" for g in range(pages)] + ["MMU notifier"]
            + [f"host PTE gfn {g}" for g in range(pages)] + ["host mm / ksmd"])


def _exit_label(reason: str) -> str:
    if reason == "write_protected":
        return "exit: write to RO spte"
    return "exit: read" if reason == "read" else "exit: write"


def _rw(writable: bool) -> str:
    return "RW" if writable else "RO"


def _gfn(e, gfn_of) -> int | None:
    if isinstance(e, KvmEvent):
        return e.gfn if e.gfn >= 0 else None
    if isinstance(e, NotifierCall):
        return gfn_of(e.start)
    if isinstance(e, (PteChange, Fault)):
        return gfn_of(e.address)
    return None


def _item(e, gfn_of) -> tuple[str, str, str, str | None] | None:
    """(lane, kind, label, site or None to inherit) for a drawn event, else None."""
    if isinstance(e, KvmEvent):
        kind = _KVM_KINDS.get(e.action)
        if kind is None:
            return None
        lane = "vCPU" if kind in ("exit", "retry") or e.gfn < 0 else f"spte gfn {e.gfn}"
        label = {"exit": lambda: _exit_label(e.reason), "retry": lambda: "retry",
                 "install": lambda: f"install {_rw(e.writable)} "
                                    f"{e.pfn:#x}",
                 "remap": lambda: f"remap → RO {e.pfn:#x}", "zap": lambda: "zap",
                 "miss": lambda: "no spte to change"}[kind]()
        site = KVM_SITE if kind in ("exit", "retry", "install") else None
        return lane, kind, label, site
    if isinstance(e, NotifierCall):
        kind = _NOTIFIER_KINDS.get(e.op, "notifier")
        return "MMU notifier", kind, _NOTIFIER_LABELS.get(e.op, e.op), e.site
    if isinstance(e, PteChange):
        gfn = gfn_of(e.address)
        if gfn is None:
            return None
        label = "clear" if not e.new else f"{_rw(pte_write(e.new))} {pte_pfn(e.new):#x}"
        return f"host PTE gfn {gfn}", "pte", label, e.site
    if isinstance(e, Fault):
        return "host mm / ksmd", "host", f"{e.access} fault", e.handler
    if isinstance(e, KsmEvent):
        return "host mm / ksmd", "host", f"ksm {e.action}", "ksmd"
    return None


def sequence_items(record) -> list[SeqItem]:
    """The marks of a chapter-06 StepRecord, in event order."""
    items, site = [], KVM_SITE
    for e in record.events:
        got = _item(e, record.hva_to_gfn.get)     # PTE changes are at page addresses
        if got is None:
            continue
        lane, kind, label, own_site = got
        site = own_site or site
        items.append(SeqItem(len(items) + 1, lane, kind, label, site,
                             _gfn(e, record.hva_to_gfn.get), explain_event(e)))
    return items


def bands(items) -> list[tuple[int, int, str]]:
    """(first x, last x, label) for each run of consecutive items of one call of one
    call site: a new band starts when the site or the guest frame changes."""
    out, key = [], None
    for it in items:
        gfn = it.gfn if it.gfn is not None else (key[1] if key and key[0] == it.site else None)
        if key is not None and key[0] == it.site and (gfn is None or key[1] in (None, gfn)):
            key = (it.site, key[1] if key[1] is not None else gfn)
            out[-1] = (out[-1][0], it.x, key)
        else:
            key = (it.site, gfn)
            out.append((it.x, it.x, key))
    return [(x0, x1, site if gfn is None or site in (KVM_SITE, "ksmd") else f"{site} · gfn {gfn}")
            for x0, x1, (site, gfn) in out]


def step_title(record, era_label: str = "") -> str:
    era = f" · {era_label}" if era_label else f" · Linux {record.kernel}"
    return (f"Step {record.index}: {record.name}{era} — {record.exits} exit"
            f"{'s' if record.exits != 1 else ''}")


def era_rules(record) -> list[str]:
    """The distinct era rules that made the step's notifier calls, in order, in words."""
    return [rule_text(r) for r in
            dict.fromkeys(e.rule for e in record.events if isinstance(e, NotifierCall))]


def label_half_width(label: str, span: float, width: int = NARROWEST) -> float:
    """Half the width of a mark's label, in x units, on a figure ``width`` px wide
    whose x axis shows ``span`` units."""
    px_per_x = (width - MARGIN_L - MARGIN_R) / span
    return len(label) * CHAR_PX / 2 / px_per_x


def x_range(items, n: int, width: int = NARROWEST) -> tuple[float, float]:
    """The x axis: positions 1..n with room for the first and the last label (the
    first one used to be cut at the left edge)."""
    lo, hi = 0.3, n + 0.7
    for _ in range(6):               # the labels' width in x units depends on the span
        span = hi - lo
        lo = min([0.3] + [it.x - label_half_width(it.label, span, width) - 0.1 for it in items])
        hi = max([n + 0.7] + [it.x + label_half_width(it.label, span, width) + 0.1
                              for it in items])
    return lo, hi


def label_extent(label: str, x: float, position: str, span: float,
                 width: int = NARROWEST) -> tuple[float, float]:
    """(left, right) in x units of a label drawn at ``position`` of a mark at x."""
    half = label_half_width(label, span, width)
    if position.endswith("right"):
        return x, x + 2 * half
    if position.endswith("left"):
        return x - 2 * half, x
    return x - half, x + half


def label_sides(items, span: float, width: int = NARROWEST) -> dict[int, str]:
    """x -> the textposition of each mark's label, so that no two labels of one lane
    overlap at ``width`` px.  Alternating (odd above, even below, centred) is kept
    while it fits; otherwise the other side, then a label beside the mark on either
    side; when nothing fits, the place whose last label ends first."""
    sides, right_edge = {}, {}
    gap = 0.15
    for it in sorted(items, key=lambda i: i.x):
        first, second = (TOP, BOTTOM) if it.x % 2 else (BOTTOM, TOP)
        choices = [first, second] + [f"{side.split()[0]} {h}" for h in ("right", "left")
                                     for side in (first, second)]
        def fits(pos):
            left, _right = label_extent(it.label, it.x, pos, span, width)
            return right_edge.get((it.lane, pos.split()[0]), float("-inf")) + gap <= left
        pos = next((c for c in choices if fits(c)), None)
        if pos is None:
            pos = min((first, second), key=lambda c: right_edge[(it.lane, c.split()[0])])
        sides[it.x] = pos
        right_edge[(it.lane, pos.split()[0])] = label_extent(it.label, it.x, pos, span, width)[1]
    return sides


def sequence_figure(record=None, *, title: str | None = None, era_label: str = "",
                    pages: int = 2, min_items: int = 12) -> go.Figure:
    """The sequence diagram of one step (an empty frame when ``record`` is None)."""
    items = sequence_items(record) if record is not None else []
    names = lanes(pages)
    y_of = {name: i for i, name in enumerate(names)}
    n = max(len(items), min_items)
    lo, hi = x_range(items, n)
    sides = label_sides(items, hi - lo)
    traces = []
    for kind, (name, colour, symbol) in KINDS.items():
        mine = [it for it in items if it.kind == kind]
        # above or below the mark, so that neighbours in a lane do not collide
        pos = [sides[it.x] for it in mine]
        traces.append(go.Scatter(
            x=[it.x for it in mine], y=[y_of[it.lane] for it in mine], mode="markers+text",
            name=name, text=[it.label for it in mine], textposition=pos,
            textfont=dict(size=LABEL_FONT, color="#222222"), cliponaxis=False,
            hovertext=[f"{it.x}. {it.why}" for it in mine], hoverinfo="text",
            marker=dict(symbol=symbol, size=15, color=colour,
                        line=dict(width=2, color=colour))))
    shapes, annotations = [], []
    row_edge = [float("-inf"), float("-inf")]      # two rows of band names
    for k, (x0, x1, site) in enumerate(bands(items)):
        if site == KVM_SITE:
            continue
        shapes.append(dict(type="rect", xref="x", yref="paper", x0=x0 - 0.45, x1=x1 + 0.45,
                           y0=0.0, y1=1.0, line=dict(width=0), layer="below",
                           fillcolor="#EEF3F8" if k % 2 else "#F6F1E7"))
        # a name that would run into its left neighbour at the narrowest width goes
        # one row up
        mid = (x0 + x1) / 2
        half = label_half_width(site, hi - lo) * 1.1          # bold
        row = 0 if row_edge[0] + 0.2 <= mid - half else 1
        row_edge[row] = mid + half
        annotations.append(dict(text=f"<b>{site}</b>", x=mid, xref="x", y=1.0,
                                yref="paper", yanchor="bottom", showarrow=False,
                                yshift=18 * row, font=dict(size=12, color="#444444")))
    for i in range(len(names) - 1):
        shapes.append(dict(type="line", xref="paper", x0=0, x1=1, yref="y", y0=i + 0.5,
                           y1=i + 0.5, line=dict(color="#DDDDDD", width=1), layer="below"))
    if record is None:
        annotations.append(dict(text="press <b>Next step</b>", x=n / 2, y=len(names) / 2 - 0.5,
                                showarrow=False, font=dict(size=16, color="#666666")))
    elif not items:
        annotations.append(dict(text="nothing reached KVM or the notifiers in this step",
                                x=n / 2, y=len(names) / 2 - 0.5, showarrow=False,
                                font=dict(size=16, color="#666666")))
    width = WIDTH
    height = 300 + len(names) * LANE_PX
    if title is None:
        title = step_title(record, era_label) if record else "The story, step by step"
        rules = era_rules(record) if record else []
        title += "".join(f"<br><span style='font-size:12px;color:#555555'>rule: {r}</span>"
                         for r in rules[:2])
    layout = base_layout(title, width, height, margin=dict(l=MARGIN_L, r=MARGIN_R, t=130, b=150),
                         shapes=shapes, annotations=annotations)
    layout["legend"].update(y=-0.04, yanchor="top", x=0.0, xanchor="left",
                            font=dict(size=12), traceorder="normal", entrywidth=270,
                            entrywidthmode="pixels")
    layout["title"]["y"] = 0.98
    layout["title"]["yanchor"] = "top"
    layout["xaxis"] = dict(range=[lo, hi], tickvals=list(range(1, n + 1)), showgrid=False,
                           zeroline=False,
                           fixedrange=True, tickfont=dict(size=11))
    layout["yaxis"] = dict(range=[len(names) - 0.4, -0.6], tickvals=list(range(len(names))),
                           ticktext=names, showgrid=False, zeroline=False, fixedrange=True,
                           tickfont=dict(size=LABEL_SIZE))
    return go.Figure(data=traces, layout=layout)


def sequence_text(record, *, era_label: str = "") -> str:
    """The text twin of sequence_figure: the title, then one numbered line per mark."""
    items = sequence_items(record)
    lines = [step_title(record, era_label)] + [f"     rule: {r}" for r in era_rules(record)]
    for it in items:
        lines.append(f"{it.x:>3}  {it.lane:<15} {it.label:<24} [{it.site}]")
    if not items:
        lines.append("     (nothing reached KVM or the notifiers)")
    return "\n".join(lines)


def story_lines(record) -> list[str]:
    """record.explain() with the guest frames named: host addresses become 'gfn N'."""
    return explain(record.events, record.page_size, gfn_of=record.hva_to_gfn)
