"""The book's figure builders: right traces and labels for known scenes, readable
layouts (no shared label positions up to 64 pages), and no effect on the model."""
import plotly.graph_objects as go
import pytest

from ksmbook import viz
from ksmbook.labs.scenes import Scene, forked_pages, identical_pages
from ksmbook.viz.frames import CELL
from ksmbook.viz.snapshot import PAGE_COUNTERS, ROLES, content_tag
from ksmbook.viz.trees import COL, LEVEL

from machine_checks import fingerprint


def merged(n=4, unique=0, **kw):
    s = identical_pages(n, unique=unique, **kw)
    s.machine.ksmd.run_full_scans(2)
    return s


def chained():
    """7 identical pages, max_page_sharing=3: a chain of two dups and one unshared page."""
    return merged(7, knobs={"max_page_sharing": 3})


def trace(fig, name_start):
    found = [t for t in fig.data if (t.name or "").startswith(name_start)]
    assert len(found) == 1, [t.name for t in fig.data]
    return found[0]


# --- snapshot -------------------------------------------------------------------------

def test_content_tag_names_uniform_text_and_binary_pages():
    assert content_tag(b"*" * 256) == "'*'×256"
    assert content_tag(bytes(64)) == "00×64"
    assert content_tag(b"hello world" + bytes(5)) == '"hello "…'
    assert content_tag(b"hello" + bytes(59)) == '"hello"…'
    assert content_tag(bytes([7, 0, 0, 0, 1])) == "07 00 00 00…"
    assert content_tag(None) == ""


def test_snapshot_of_merged_scene_lists_roles_mappings_and_trees():
    s = merged(4, unique=1)
    snap = viz.snapshot(s)
    ksm = [f for f in snap.frames if f.role == "ksm"]
    assert len(ksm) == 1 and ksm[0].mapcount == 4 and ksm[0].tag == "'*'×256"
    assert sorted(f.owner.split()[0] for f in snap.frames if f.role == "table") == \
        ["PGD", "PMD", "PTE", "PUD"]
    assert {f.pfn for f in snap.frames if f.role == "free"} == set(s.machine.memory.free_pfns())
    assert [m.label for m in snap.mappings] == [f"vm1[{i}]" for i in range(5)]
    assert [(n.kind, n.sharers) for n in snap.stable_tree] == [("node", 4)]
    assert [n.mappers for n in snap.unstable_tree] == [("vm1[4]",)]
    assert snap.counters == s.machine.ksm.stats()


def test_snapshot_and_every_builder_leave_the_machine_untouched():
    s = chained()
    before = fingerprint(s.machine)
    with s.machine.events.capture() as events:
        snap = viz.snapshot(s)
        for build in (viz.frame_map_figure, viz.mappings_figure, viz.trees_figure):
            build(snap)
        viz.pagewalk_figure(viz.walk(s, "vm1", s.addr("vm1", 2)))
        viz.counters_figure([s.machine.ksm.stats()])
        viz.trees_text(snap), viz.mappings_text(snap), viz.frame_map_text(snap)
    assert events == []
    assert fingerprint(s.machine) == before


def test_snapshot_of_a_plain_machine_uses_default_labels():
    s = merged(2)
    snap = viz.snapshot(s.machine)            # no Scene: names from the process
    assert [m.label for m in snap.mappings] == ["vm1[0]", "vm1[1]"]


# --- frame map ------------------------------------------------------------------------

def test_frame_map_has_one_trace_per_role_with_counts_and_cells():
    s = merged(4)
    snap = viz.snapshot(s)
    fig = viz.frame_map_figure(snap)
    assert [t.name.rsplit(" (", 1)[0] for t in fig.data] == \
        ["anonymous", "KSM page", "zero page", "shmem (MAP_SHARED)", "page table", "free"]
    ksm = trace(fig, "KSM page")
    kpfn = snap.mappings[0].pfn
    assert ksm.name == "KSM page (1)" and ksm.text == (f"{kpfn:#x}<br>×4",)
    assert trace(fig, "free").name == "free (3)"
    assert "PGD" in " ".join(trace(fig, "page table").text)
    text = viz.frame_map_text(snap)
    assert f"KSM page: {kpfn:#x} ×4" in text


def test_frame_map_cells_of_a_64_page_scene_never_overlap():
    s = identical_pages(32, unique=32)
    fig = viz.frame_map_figure(viz.snapshot(s))
    cells = [(x, y) for t in fig.data for x, y in zip(t.x, t.y)]
    assert len(cells) == len(set(cells)) >= 64
    # one data unit is CELL pixels wide and tall, and a marker is smaller than that
    assert all(t.marker.size < CELL for t in fig.data)
    assert fig.layout.width >= (fig.layout.xaxis.range[1] - fig.layout.xaxis.range[0]) * CELL


def test_frame_map_legend_sits_under_its_title_at_every_width():
    """Issue 8: a fixed 100 px top margin left the one-row legend ~50 px under the title."""
    from ksmbook.viz.frames import LEGEND_ROW_PX, legend_rows
    fig = viz.frame_map_figure(viz.snapshot(merged(4)))
    shown = [t.name for t in fig.data if t.x]
    assert legend_rows(shown) == 1 and fig.layout.margin.t <= 44 + LEGEND_ROW_PX
    # all six roles wrap into two rows at 800 px: the margin grows by a row
    assert legend_rows([f"{n} (9)" for n in ("anonymous", "KSM page", "zero page",
                        "shmem (MAP_SHARED)", "page table", "free")]) == 2
    assert legend_rows(["anonymous (5)"] * 3, width=100) == 3
    lay = fig.layout
    assert lay.height == lay.margin.t + lay.margin.b + \
        (lay.yaxis.range[1] - lay.yaxis.range[0]) * CELL


# --- who maps what --------------------------------------------------------------------

def test_mappings_show_eight_virtual_pages_meeting_at_one_ksm_frame():
    s = merged(4, procs=2)
    fig = viz.mappings_figure(viz.snapshot(s))
    vpages = trace(fig, "virtual page")
    assert list(vpages.text) == [f"vm{p}[{i}]" for p in (1, 2) for i in range(4)]
    ksm = trace(fig, "KSM page")
    assert len(ksm.y) == 1 and "mapcount 8" in ksm.text[0]
    ro = trace(fig, "read-only PTE")
    ends = {ro.y[i + 1] for i in range(0, len(ro.y), 3)}
    assert len(ro.x) == 8 * 3 and ends == {ksm.y[0]}            # eight lines, one end
    assert trace(fig, "writable PTE").x == ()


def test_mappings_before_any_merge_are_writable_and_one_to_one():
    s = identical_pages(3)
    snap = viz.snapshot(s)
    fig = viz.mappings_figure(snap)
    assert len(trace(fig, "writable PTE").x) == 9 and trace(fig, "read-only").x == ()
    assert viz.mappings_text(snap).count("(rw)") == 3


def _segments(fig):
    out = []
    for name in ("writable PTE", "read-only PTE"):
        t = trace(fig, name)
        out += [(t.x[i], t.y[i], t.x[i + 1], t.y[i + 1]) for i in range(0, len(t.x), 3)]
    return out


def test_after_fork_the_parent_is_left_the_child_right_and_no_lines_cross():
    """Issue 8, bug 7: chapter 02's fork lines crossed (both columns of pages left)."""
    s = Scene()
    s.spawn("parent")
    s.mmap("parent", "mem", 4)
    for i in range(4):
        s.write("parent", i, bytes([65 + i]) * 256)
    s.fork("parent", "child")
    s.write("child", 0, b"Z" * 256)
    fig = viz.mappings_figure(viz.snapshot(s))
    v = trace(fig, "virtual page")
    xs = {label: x for label, x in zip(v.text, v.x)}
    assert {xs[f"parent[{i}]"] for i in range(4)} == {0.0}
    assert {xs[f"child[{i}]"] for i in range(4)} == {2.0}
    segs = _segments(fig)
    assert len(segs) == 8 and all(x1 == 1.0 for _, _, x1, _ in segs)
    for side in (0.0, 2.0):
        mine = sorted((y0, y1) for x0, y0, _, y1 in segs if x0 == side)
        assert [y1 for _, y1 in mine] == sorted(y1 for _, y1 in mine), "lines cross"
    # frames' labels sit above the frames, a label apart
    frames = sorted(y for t in fig.data[3:] for y in t.y)
    plot_h = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    px = plot_h / (fig.layout.yaxis.range[1] - fig.layout.yaxis.range[0])
    assert min((b - a) * px for a, b in zip(frames, frames[1:])) >= 34


def _px_per_unit(fig, width=600):
    """(x, y) pixels per data unit of a figure drawn ``width`` px wide (an 800 px window)."""
    lay = fig.layout
    xr, yr = lay.xaxis.range, lay.yaxis.range
    return ((width - lay.margin.l - lay.margin.r) / (xr[1] - xr[0]),
            (lay.height - lay.margin.t - lay.margin.b) / (yr[1] - yr[0]))


def _label_boxes(fig, width=600):
    """Data-unit boxes of the frames' labels drawn above their frames (13 px text,
    0.6 em a character, its baseline 9 px above the frame's centre)."""
    px, py = _px_per_unit(fig, width)
    boxes = []
    for t in fig.data[3:]:
        for x, y, text in zip(t.x, t.y, t.text):
            half = len(text) * 13 * 0.6 / 2 / px
            boxes.append((text, x - half, y + 9 / py, x + half, y + 25 / py))
    return boxes


def _crosses(seg, box, steps=400):
    x0, y0, x1, y1 = seg
    _, bx0, by0, bx1, by1 = box
    return any(bx0 < x0 + (x1 - x0) * k / steps < bx1 and by0 < y0 + (y1 - y0) * k / steps < by1
               for k in range(steps + 1))


def _forked_and_written():
    s = forked_pages(4)
    for who, page in (("child", 0), ("parent", 0), ("child", 1)):
        s.write(who, page, b"x")
    return s


@pytest.mark.parametrize("scene", ["fork", "two guests merged"])
def test_no_line_crosses_a_frame_label_at_800px(scene):
    """Issue 8: chapter 02's frame labels (between the parent's and the child's pages)
    were crossed by the lines of the frames next to them in an 800 px window."""
    if scene == "fork":
        s = _forked_and_written()
    else:
        s = identical_pages(4, unique=2, procs=2)
        s.machine.ksmd.run_full_scans(2)
    fig = viz.mappings_figure(viz.snapshot(s))
    boxes = _label_boxes(fig)
    assert len(boxes) == (6 if scene == "fork" else 5)
    crossed = [(box[0], seg) for box in boxes for seg in _segments(fig) if _crosses(seg, box)]
    assert not crossed
    # and the labels do not overlap one another
    for a in boxes:
        for b in boxes:
            if a is not b:
                assert not (a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]), (a, b)
    if scene == "fork":             # one mapper a side per frame: every line is level
        assert all(y0 == y1 for _, y0, _, y1 in _segments(fig))


def test_mapping_rows_of_64_pages_are_at_least_a_label_apart():
    s = identical_pages(32, unique=32)
    fig = viz.mappings_figure(viz.snapshot(s))
    ys = sorted(trace(fig, "virtual page").y)
    plot_h = fig.layout.height - fig.layout.margin.t - fig.layout.margin.b
    px_per_unit = plot_h / (fig.layout.yaxis.range[1] - fig.layout.yaxis.range[0])
    gaps = [(b - a) * px_per_unit for a, b in zip(ys, ys[1:])]
    assert len(ys) == 64 and min(gaps) >= 18      # 13-pixel labels, never touching


# --- trees ----------------------------------------------------------------------------

def test_trees_figure_draws_a_chain_with_two_dups_and_the_unshared_page():
    s = chained()
    snap = viz.snapshot(s)
    fig = viz.trees_figure(snap)
    assert len(fig.data) == 9          # fixed traces (the two "moved" ones empty without before=)
    assert trace(fig, "gained pages").x == () and trace(fig, "left the unstable").x == ()
    assert len(trace(fig, "chain (").x) == 1
    dups = trace(fig, "dup (")
    assert len(dups.x) == 2 and all("3 sharers" in t for t in dups.text)
    assert trace(fig, "stable node").x == ()
    unstable = trace(fig, "unstable item")
    assert len(unstable.x) == 1 and unstable.text[0].startswith("vm1[6]")
    titles = [a.text for a in fig.layout.annotations]
    assert any("2 KSM pages (1 chain)" in t for t in titles)
    assert any(t.startswith("Unstable tree: 1 item") for t in titles)
    assert "chain s3 '*'×256: 6 sharers" in viz.trees_text(snap)
    assert [t.split("<br>")[0] for t in dups.text] == [f"{n.key} · pfn {n.pfn:#x}"
                                                       for n in snap.stable_tree if n.kind == "dup"]
    assert trace(fig, "chain (").text[0].startswith("chain s3")


def test_stable_nodes_show_their_id_and_the_virtual_pages_hanging_on_them():
    s = merged(4, procs=2)
    snap = viz.snapshot(s)
    (node,) = snap.stable_tree
    want = sorted((p.pid, s.addr(name, i)) for name, p in s.procs.items() for i in range(4))
    assert sorted(node.vpages) == want
    label = trace(viz.trees_figure(snap), "stable node").text[0]
    assert label.startswith(f"{node.key} · pfn {node.pfn:#x}")
    for lab, (pid, addr) in zip(node.mappers, node.vpages):
        assert f"{lab} {pid}:{addr:#x}" in label               # name and pid:address
        assert s.label(pid, addr) == lab
    assert f"{node.key} '*'×256 pfn {node.pfn:#x}: 8 sharers" in viz.trees_text(snap)


def test_a_page_moving_from_the_unstable_to_the_stable_tree_is_marked():
    s = identical_pages(4, unique=2)
    m = s.machine
    m.ksmd.run_full_scans(1)
    m.ksmd.scan(1)                      # vm1[0] waits in the unstable tree
    before = viz.snapshot(s)
    assert [n.mappers for n in before.unstable_tree] == [("vm1[0]",)]
    m.ksmd.scan(1)                      # vm1[1] matches it: both on one stable node
    after = viz.snapshot(s)
    moves = viz.tree_moves(before, after)
    (key,) = {mv[3] for mv in moves}
    assert {(mv[0], mv[2]) for mv in moves} == {("vm1[0]", "unstable tree"), ("vm1[1]", "no tree")}
    fig = viz.trees_figure(after, before=before)
    ghost = trace(fig, "left the unstable tree")
    assert len(ghost.x) == 1 and ghost.text[0].startswith("vm1[0] ")
    assert key in ghost.text[0]
    ring = trace(fig, "gained pages")
    assert len(ring.x) == 1 and ring.x[0] == trace(fig, "stable node").x[0]
    arrows = [a for a in fig.layout.annotations if a.showarrow]
    assert len(arrows) == 1 and arrows[0].xref == "paper"
    text = viz.trees_text(after, before=before)
    assert f"vm1[0] {s.procs['vm1'].pid}:{s.addr('vm1', 0):#x}: unstable tree -> stable node {key}" in text
    # nothing moves in a step that merges nothing
    assert viz.tree_moves(after, after) == [] and "moved" not in viz.trees_text(after, before=after)


def test_tree_layout_keeps_binary_search_order_and_one_column_per_node():
    s = merged(0, unique=40)          # a 40-node unstable rbtree
    nodes = viz.snapshot(s).unstable_tree
    pos = viz.tree_layout(nodes)
    assert len(nodes) == 40
    xs = [pos[n.key][0] for n in nodes]
    assert len(set(xs)) == 40                                   # no two labels share a column
    by_key = {n.key: n for n in nodes}
    for n in nodes:
        if n.parent is not None:
            px, prow = pos[n.parent]
            x, row = pos[n.key]
            assert row == prow + 1
            assert (x < px) if n.side == "L" else (x > px)
    # in-order columns follow the rbtree's key order: the pages' bytes (memcmp order)
    page = {n.key: s.read("vm1", int(n.mappers[0][4:-1]), 256) for n in nodes}
    ordered = sorted(nodes, key=lambda n: pos[n.key][0])
    assert [page[n.key] for n in ordered] == sorted(page[n.key] for n in ordered)
    assert all(n.parent in by_key for n in nodes if n.parent is not None)


def test_tree_figure_labels_never_collide_for_64_pages():
    s = merged(32, unique=32, knobs={"max_page_sharing": 4})
    fig = viz.trees_figure(viz.snapshot(s))
    for row in (1, 2):
        pts = [(round(x, 3), round(y, 3)) for t in fig.data if t.mode and "text" in t.mode
               for x, y in zip(t.x, t.y) if (t.yaxis or "y") == ("y" if row == 1 else "y2")]
        assert len(pts) == len(set(pts))
    # wide trees fall back to one-line labels rather than overlapping three-line ones
    dups = trace(fig, "dup (")
    assert len(dups.x) == 8 and all(t.endswith("×4") and "<br>" not in t for t in dups.text)
    assert all(t.startswith("vm1[") for t in trace(fig, "unstable item").text)
    assert fig.layout.width <= 1500 and LEVEL >= 90 and COL >= 100


def test_empty_trees_say_so():
    fig = viz.trees_figure(viz.snapshot(identical_pages(2)))
    assert [a.text for a in fig.layout.annotations if a.text == "(empty)"] == ["(empty)"] * 2


# --- smart scan visit grid -------------------------------------------------------------

def test_visit_grid_reads_scans_and_skips_from_snapshots():
    from ksmbook.viz import visits
    s = identical_pages(0, unique=3, knobs={"smart_scan": 1})
    snaps = [viz.snapshot(s)]
    scanned = [0]
    for _ in range(14):
        s.machine.ksmd.run_full_scans(1)
        snaps.append(viz.snapshot(s))
        scanned.append(s.machine.ksm.stats()["pages_scanned"])
    labels, rows = visits.visit_grid(snaps)
    assert labels == ["vm1[0]", "vm1[1]", "vm1[2]"]
    kinds = ["".join(k[0].upper() if k == "scanned" else k[0] for k, _n in r) for r in rows]
    assert set(kinds) == {"SSSSsSssSssssS"}            # scans 1-4, 6, 9, 14 (skip_age 1, 2, 4, 8)
    assert [n for k, n in rows[0] if k == "scanned"] == [0, 0, 0, 1, 2, 4, 8]
    assert [n for k, n in rows[0] if k == "skipped"] == [0, 1, 0, 3, 2, 1, 0]
    # the column sums are what pages_scanned grew by in each full scan
    assert visits.scans_per_full_scan(rows) == [b - a for a, b in zip(scanned, scanned[1:])]
    fig = visits.visit_grid_figure(snaps)
    assert fig.data[0].type == "heatmap" and fig.data[0].text[0][4] == "skip"
    # 14 columns do not fit "scan +2" on one line at 600 px: word and number on two
    assert fig.data[0].text[0][5] == "scan<br>+2" and list(fig.data[1].text)[4] == "0"
    text = visits.visit_grid_text(snaps)
    assert text.splitlines()[1].split()[:6] == ["vm1[0]", "scan", "scan", "scan", "scan", "+1"]
    # without smart scan every page is processed in every scan
    s0 = identical_pages(0, unique=3, knobs={"smart_scan": 0})
    snaps0 = [viz.snapshot(s0)]
    for _ in range(6):
        s0.machine.ksmd.run_full_scans(1)
        snaps0.append(viz.snapshot(s0))
    assert visits.scans_per_full_scan(visits.visit_grid(snaps0)[1]) == [3] * 6


# --- counters timeline ----------------------------------------------------------------

def test_counters_figure_has_one_line_per_counter_with_the_history():
    s = identical_pages(4, unique=2)
    hist = [s.machine.ksm.stats()]
    for _ in range(3):
        s.machine.ksmd.run_full_scans(1)
        hist.append(s.machine.ksm.stats())
    fig = viz.counters_figure(hist)
    assert [t.name for t in fig.data] == ["pages_shared", "pages_sharing", "pages_unshared",
                                          "pages_volatile"]
    assert list(trace(fig, "pages_sharing").y) == [0, 0, 3, 3]
    assert list(trace(fig, "pages_volatile").y) == [0, 6, 0, 0]
    assert list(fig.data[0].x) == [0, 1, 2, 3]
    # distinguishable without colour: every line has its own dash and marker
    assert len({(t.line.dash, t.marker.symbol) for t in fig.data}) == 4
    assert "         2               1               3" in viz.counters_table(hist)


def test_per_full_scan_keeps_the_last_record_of_each_scan():
    rows = viz.timeline.per_full_scan([{"full_scans": 0, "v": 1}, {"full_scans": 1, "v": 2},
                                       {"full_scans": 1, "v": 3}])
    assert rows == [{"full_scans": 0, "v": 1}, {"full_scans": 1, "v": 3}]


# --- page walk ------------------------------------------------------------------------

def test_pagewalk_figure_of_a_ksm_page_shows_indices_entries_and_bits():
    s = merged(4)
    w = viz.walk(s, "vm1", s.addr("vm1", 1))
    assert w.complete and w.frame_role == "ksm" and w.frame_mapcount == 4
    fig = viz.pagewalk_figure(w)
    texts = [a.text for a in fig.layout.annotations]
    for level, index in zip(("PGD", "PUD", "PMD", "PTE"), w.indices):
        assert f"<b>{level} index {index}</b>" in texts
    assert f"<b>pfn {w.pfn:#x}</b>" in texts and "KSM page" in texts
    bits = dict(w.pte_bits)
    assert bits["P"] and not bits["RW"]                # merged pages are read-only
    assert "<b>P</b>" in texts and "RW" in texts
    assert "PTE[" in viz.pagewalk_text(w) and "-> frame" in viz.pagewalk_text(w)


def _text_px(text, size, bold=False):
    """A generous estimate of a DejaVu Sans label's width in pixels."""
    import re
    plain = re.sub(r"<[^>]+>", "", text)
    em = sum(0.72 if c.isupper() else 0.64 if c.isdigit() else 0.32 if c == " "
             else 0.6 if c.isalpha() or c in "_×" else 0.4 for c in plain)
    return em * size * (1.1 if bold else 1.0)


@pytest.mark.parametrize("state", ["hole", "zero page", "anonymous", "PTE empty"])
def test_every_pagewalk_text_fits_its_box_at_800px(state):
    """Issue 8: in an 800 px window (a ~600 px output) "PROTNONE", "PGD index 254"
    and "handle_mm_fault()" ran over their boxes."""
    s = Scene(page_size=4096)
    s.spawn("p")
    addr = s.mmap("p", "buf", 4)
    if state in ("zero page", "PTE empty"):
        s.read("p", 0, 8)
    if state == "anonymous":
        s.write("p", 0, b"hello")
    w = viz.walk(s, "p", addr + (3 * 4096 if state == "PTE empty" else 0))
    fig = viz.pagewalk_figure(w)
    lay = fig.layout
    px = (600 - lay.margin.l - lay.margin.r) / (lay.xaxis.range[1] - lay.xaxis.range[0])
    rects = [sh for sh in lay.shapes if sh.type == "rect"]
    assert max(sh.x1 for sh in rects) < lay.xaxis.range[1]     # no box cut at the right
    checked = 0
    for a in lay.annotations:
        if a.showarrow or not a.text:
            continue
        around = [sh for sh in rects if sh.x0 <= a.x <= sh.x1 and sh.y0 <= a.y <= sh.y1]
        if not around:
            continue
        box = min(around, key=lambda sh: sh.x1 - sh.x0)
        bold = a.text.startswith("<b>")
        assert _text_px(a.text, a.font.size, bold) + 4 <= (box.x1 - box.x0) * px, a.text
        checked += 1
    assert checked >= 20


def test_pagewalk_of_an_untouched_page_stops_at_the_hole():
    s = Scene(page_size=4096)
    s.spawn("p")
    addr = s.mmap("p", "buf", 2)
    w = viz.walk(s, "p", addr)
    assert not w.complete and [st.level for st in w.steps] == ["PGD"]
    texts = [a.text for a in viz.pagewalk_figure(w).layout.annotations]
    assert texts.count("not allocated") == 3 and "no PTE: stopped at PGD" in texts
    assert "no frame" in viz.pagewalk_text(w)


# --- in-place updates and event text ----------------------------------------------------

def test_sync_figure_updates_in_place():
    s = identical_pages(4, unique=2)
    fig = go.Figure(viz.trees_figure(viz.snapshot(s)))
    traces_before = list(fig.data)
    s.machine.ksmd.run_full_scans(2)
    new = viz.trees_figure(viz.snapshot(s))
    viz.sync_figure(fig, new)
    assert all(a is b for a, b in zip(fig.data, traces_before))       # same trace objects
    assert fig.data[2].text == new.data[2].text and len(fig.data[2].x) == 1
    assert fig.layout.annotations[0].text == new.layout.annotations[0].text
    assert fig.layout.height == new.layout.height


def _scenes_for_plain_builders():
    """Snapshots (before, after) of scenes that exercise every trace of the four live
    views: empty, mid-scan, merged, a chain, pages moving out of the unstable tree."""
    out = []
    for s in (identical_pages(4, unique=2), identical_pages(7, knobs={"max_page_sharing": 3})):
        history = [s.machine.ksm.stats()]
        before = None
        for step in ([1] * 6) + [None, None]:
            snap = viz.snapshot(s)
            out.append((before, snap, list(history)))
            before = snap
            s.machine.ksmd.scan(step) if step else s.machine.ksmd.run_full_scans(1)
            history.append({**s.machine.ksm.stats(), "mid_scan": s.machine.ksm.scan_in_progress()})
        out.append((before, viz.snapshot(s), list(history)))
    from ksmbook.kernel.machine import Machine
    out.append((None, viz.snapshot(Machine()), []))          # nothing mapped
    return out


def test_plain_builders_send_what_their_go_figure_holds():
    """The live views send the builders' plain dicts (viz.style.plain_builder) without
    plotly's validation: each must be exactly the figure go.Figure makes of it (no magic
    underscore such as font_size, no string axis title, which plotly.js would not read)."""
    from ksmbook.viz import render
    builders = [lambda b, a, h: viz.trees_figure.plain(a, before=b),
                lambda b, a, h: viz.mappings_figure.plain(a),
                lambda b, a, h: viz.frame_map_figure.plain(a),
                lambda b, a, h: viz.counters_figure.plain(h or [a.counters]),
                lambda b, a, h: viz.counters_figure.plain(h or [a.counters], PAGE_COUNTERS)]
    checked = 0
    for before, after, history in _scenes_for_plain_builders():
        for build in builders:
            plain = render.responsive(build(before, after, history))
            assert isinstance(plain["data"], list) and all(isinstance(t, dict) for t in plain["data"])
            assert plain == render.responsive(go.Figure(plain)), plain["layout"].get("title")
            checked += 1
    assert checked >= 80


def test_describe_events_names_pages_and_kernel_functions():
    s = identical_pages(2)
    s.machine.ksmd.run_full_scans(1)
    events = s.machine.ksmd.scan()
    lines = viz.describe_events(events, s.label)
    merge = [ln for ln in lines if "try_to_merge_two_pages()" in ln]
    assert len(merge) == 1 and merge[0].startswith("vm1[1]") and "vm1[0] now maps it" in merge[0]
    assert any("[replace_page]" in ln and ln.startswith("vm1[0]") for ln in lines)
    assert viz.describe_events(events, s.label, limit=2)[-1].startswith("... and ")


def test_roles_are_the_legend_order():
    assert ROLES == ("anon", "ksm", "zero", "shmem", "table", "free")


def test_a_mid_scan_record_is_drawn_as_now_not_as_a_scan_end():
    """Issue 8: the counters figure said "after each full scan" but plotted a mid-scan point."""
    s = identical_pages(4, unique=2)
    hist = [s.machine.ksm.stats()]
    s.machine.ksmd.run_full_scans(2)
    hist.append({**s.machine.ksm.stats(), "mid_scan": s.machine.ksm.scan_in_progress()})
    assert not hist[-1]["mid_scan"]
    s.machine.ksmd.scan(1)
    assert s.machine.ksm.scan_in_progress()
    hist.append({**s.machine.ksm.stats(), "mid_scan": True})
    fig = viz.counters_figure(hist)
    assert list(fig.data[0].x) == [0, 2, 2.5]
    assert list(fig.data[0].marker.symbol)[-1].endswith("-open")
    assert "now, mid-scan" in fig.layout.title.text.replace("<br>", " ")
    table = viz.counters_table(hist)
    assert "now*" in table and "full scan 3 in progress" in table
    # without a mid-scan record the figure is as before
    assert "now" not in viz.counters_figure(hist[:2]).layout.title.text.replace("<br>", " ")


def test_sync_figure_replaces_the_whole_state_every_view_draws_from():
    """A live figure's state is its one output, the whole figure, replaced on every
    update, in a core widget model every view reads (bug 1 of issue 8: blank
    steppers after Run All)."""
    from ksmbook.widgets.plot import LIVE_META, Plot, figure_in_output, figure_json
    s = identical_pages(4, unique=2)
    first = viz.trees_figure(viz.snapshot(s))
    fig = Plot(first, classes=("a",))
    assert fig.drawn == figure_json(first) and fig.revision == 0
    assert fig._dom_classes == ("a",) and len(fig.outputs) == 1
    # responsive: no fixed width, the designed height
    assert "width" not in fig.drawn["layout"] and fig.drawn["layout"]["autosize"] is True
    assert fig.drawn["layout"]["height"] == first.layout.height
    s.machine.ksmd.run_full_scans(2)
    new = viz.trees_figure(viz.snapshot(s))
    viz.sync_figure(fig, new)
    assert fig.revision == 1 and fig.figure is new and len(fig.outputs) == 1
    assert fig.drawn == figure_json(new) != figure_json(first)
    assert fig.drawn["layout"]["annotations"][0]["text"] == new.layout.annotations[0].text
    # drawn in place by the output's own script (widgets/plot.py), not by a new
    # RenderedPlotly per update; the figure JSON inside it cannot end its <script> tag
    out = fig.outputs[0]
    assert set(out["data"]) == {"text/html", "text/plain"} and LIVE_META in out["metadata"]
    assert out["data"]["text/html"].count("</script>") == 2
    assert figure_in_output(out) == figure_json(new)
    viz.sync_figure(fig, new)                  # nothing changed: nothing sent
    assert fig.revision == 1
    # a core widget (no ES module to load, nothing of plotly.js in the kernel's messages)
    assert fig._model_module == "@jupyter-widgets/output"
    assert "plotly.js v" not in out["data"]["text/html"] and len(out["data"]["text/html"]) < 10 ** 5


def test_long_titles_wrap_for_an_800px_window_and_the_plot_keeps_its_size():
    from ksmbook.viz.style import TITLE_CHARS, base_layout, wrap_title
    long = "smart_scan=1: what ksmd did with each of eight pages that never merge"
    wrapped = wrap_title(long)
    assert wrapped.replace("<br>", " ") == long and wrapped.count("<br>") == 1
    assert all(len(line) <= TITLE_CHARS for line in wrapped.split("<br>"))
    assert wrap_title("short") == "short" and wrap_title("a<br>" + long) == "a<br>" + long
    plain, grown = base_layout("short", 900, 400), base_layout(long, 900, 400)
    assert grown["height"] - plain["height"] == grown["margin"]["t"] - plain["margin"]["t"] > 0
    # plotly.js loses a multi-line title's 0.7 em cap shift (one tspan per line, each
    # with its own y): the first line's baseline sat on the top edge, its letters
    # above the figure, unless the pad puts the shift back
    assert plain["title"]["pad"]["t"] == 10
    assert grown["title"]["pad"]["t"] >= 10 + 0.7 * grown["title"]["font"]["size"]
    lines = wrapped.count("<br>") + 1
    assert grown["margin"]["t"] >= grown["title"]["pad"]["t"] + 1.3 * 18 * lines - 0.7 * 18
    # lines of about equal length: no lone last word
    lines = wrap_title("Before vm1[1] is scanned: vm1[0] waits in the unstable tree").split("<br>")
    assert len(lines) == 2 and min(map(len, lines)) >= 0.7 * max(map(len, lines))
