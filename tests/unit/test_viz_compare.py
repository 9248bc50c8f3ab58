"""ksmbook.viz.compare: the side-by-side figures and their text twins."""
import dataclasses

from ksmbook.oracle import sidebyside as sb
from ksmbook.oracle.scenario import COUNTERS
from ksmbook.viz import compare as vc


def with_sharing(trace, step, value):
    snaps = [dict(s, counters=dict(s["counters"])) for s in trace.snapshots]
    snaps[step]["counters"]["pages_sharing"] = value
    return dataclasses.replace(trace, kind="recorded", kernel="test", snapshots=tuple(snaps))


SIM = sb.simulate("ten_identical_pages")
SAME = sb.Comparison(SIM, sb.recorded("ten_identical_pages"))
OFF = sb.Comparison(SIM, with_sharing(SIM, 5, 7))


def test_timeline_keeps_one_trace_list_with_or_without_a_kernel_side():
    alone = vc.timeline_figure(sb.Comparison(SIM))
    both = vc.timeline_figure(SAME)
    assert len(alone.data) == len(both.data) == 2 * len(vc.PAGE_COUNTERS) + 1
    assert [t.name for t in alone.data] == [t.name for t in both.data]
    kernel_sharing = both.data[2 * vc.PAGE_COUNTERS.index("pages_sharing") + 1]
    assert list(kernel_sharing.y) == sb.recorded("ten_identical_pages").counter("pages_sharing")
    assert both.data[-1].name == "differs" and list(both.data[-1].x) == []
    scans = [i for i, s in enumerate(SIM.scenario.steps) if s.op == "scans"]
    assert [round(s.x0 + 0.45) for s in both.layout.shapes] == scans


def test_timeline_marks_each_differing_value_where_the_kernel_has_it():
    fig = vc.timeline_figure(OFF)
    differs = fig.data[-1]
    assert list(differs.x) == [5] and list(differs.y) == [7]
    assert differs.text == ("pages_sharing: sim 9, kernel 7",)
    assert "1 value differs, first after step 5" in fig.layout.title.text.replace("<br>", " ")


def test_grid_has_a_row_per_counter_and_per_process_field_and_boxes_differences():
    labels = [label for label, _ in vc.grid_rows(OFF)]
    assert labels[:len(COUNTERS)] == list(COUNTERS)
    assert labels[len(COUNTERS):] == ["p: rmap_items", "p: zero_pages", "p: merging", "p: profit"]
    fig = vc.grid_figure(OFF)
    heat = fig.data[0]
    row = labels.index("pages_sharing")
    assert heat.z[row][5] == vc.DIFFERS and heat.text[row][5] == "9≠7"
    assert heat.z[row][6] == vc.EQUAL and heat.z[labels.index("full_scans")][4] == vc.CHANGED
    assert len(fig.layout.shapes) == 1
    box = fig.layout.shapes[0]
    assert box.x0 < 5 < box.x1 and box.y0 < row < box.y1
    assert len(vc.grid_figure(SAME).layout.shapes) == 0


def test_grid_shows_processes_that_do_not_exist_yet_as_gaps_and_one_sided_fields_in_beige():
    cmp = sb.Comparison(sb.simulate("late_joiners", "6.10"), sb.recorded("late_joiners"))
    labels = [label for label, _ in vc.grid_rows(cmp)]
    assert "a: merge_any" in labels and "c: mergeable" in labels     # differ somewhere
    heat = vc.grid_figure(cmp).data[0]
    c_first = cmp.scenario.processes().index("c")
    assert heat.z[labels.index("c: rmap_items")][c_first - 1] is None       # not spawned yet
    assert heat.z[labels.index("a: merge_any")][0] == vc.ONE_SIDED
    assert heat.text[labels.index("a: merge_any")][0] == "–≠no"


def test_compact_numbers():
    assert [vc.compact(v) for v in (0, -640, 9999, 36224, 104857600, None, "<absent>", "yes")] == \
        ["0", "-640", "9999", "36k", "105M", "–", "–", "yes"]


def test_trace_table_prints_every_counter_after_every_step():
    lines = vc.trace_table(SIM).splitlines()
    assert lines[0] == "ten_identical_pages: simulator (Linux 6.18 model)"
    n = len(SIM.snapshots)
    # two bands of columns, every counter in one of them, a blank line between
    assert [c for band in vc.BANDS for c in band] == list(COUNTERS)
    heads = [1, 1 + n + 2]
    assert lines[1 + n + 1] == "" and len(lines) == 1 + 2 * (n + 1) + 1
    for band, at in zip(vc.BANDS, heads):
        assert lines[at].split()[2:] == [vc.SHORT[c] for c in band]
        rows = lines[at + 1:at + 1 + n]
        assert rows[5].split()[-len(band):] == [str(SIM.snapshots[5]["counters"][c])
                                                for c in band]
    # an 800 px window's output holds ~78 characters: the 130-character rows wrapped
    assert max(map(len, lines)) <= vc.TEXT_WIDTH


def test_compare_table_marks_differences_and_agreement():
    text = vc.compare_table(OFF)
    assert text.count(" both ") == len(vc.BANDS) * (len(SIM.snapshots) - 1)
    sim_rows = [line for line in text.splitlines() if line.startswith("   5 ")]
    assert len(sim_rows) == len(vc.BANDS)
    lines = text.splitlines()
    kernel_rows = [lines[lines.index(row) + 1] for row in sim_rows]
    # pages_sharing is in the first band: starred there, agreement dots elsewhere
    assert "9*" in sim_rows[0] and "7*" in kernel_rows[0]
    assert kernel_rows[0].count("·") == len(vc.BANDS[0]) - 1
    assert "*" not in sim_rows[1] and kernel_rows[1].count("·") == len(vc.BANDS[1])
    assert max(len(line) for line in lines if not line.startswith("  != ")) <= vc.TEXT_WIDTH
    assert "!= counters.pages_sharing: sim 9, kernel 7  (after step 5)" in text
    assert text.endswith(OFF.summary())
    assert vc.compare_table(sb.Comparison(SIM)) == vc.trace_table(SIM)


def test_compare_table_names_each_side_and_shortens_differing_ops():
    cmp = sb.Comparison(sb.simulate(sb.chain_prune_scenario(0)),
                        sb.simulate(sb.chain_prune_scenario(2000)), sides=("0 ms", "2000 ms"))
    text = vc.compare_table(cmp)
    assert text.splitlines()[0] == "chain_prune_0ms (0 ms) beside chain_prune_2000ms (2000 ms)"
    assert "!= op: 0 ms …0'), 2000 ms …2000')  (after step 1)" in text
    assert "chain_prune_0ms vs chain_prune_2000ms" in vc.grid_figure(cmp).layout.title.text.replace("<br>", " ")
