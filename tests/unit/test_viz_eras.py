"""Figures of chapters 07 and 08: pure functions of records, fixed traces, text twins."""
import math

import plotly.graph_objects as go
import pytest

from ksmbook.labs import eras, sidechannel as sc
from ksmbook.labs.eras import STEPS, EraStory
from ksmbook.viz import kvm as kvm_viz
from ksmbook.viz import notifiers as seq
from ksmbook.viz import sidechannel as sc_viz


def merge_record(kernel):
    story = EraStory(kernel)
    story.next()
    return story.next()


def test_sequence_items_cover_the_drawn_events_in_order():
    rec = merge_record("3.7")
    items = seq.sequence_items(rec)
    assert [it.x for it in items] == list(range(1, len(items) + 1))
    lanes = seq.lanes()
    assert all(it.lane in lanes and it.kind in seq.KINDS for it in items)
    explained = rec.explain()
    assert all(it.why in explained for it in items)
    kinds = [it.kind for it in items]
    assert kinds.count("range_start") == kinds.count("range_end") == 3
    assert kinds.count("miss") == 3 and "remap" not in kinds
    # every mark is in exactly one band, bands are contiguous and in order
    bands = seq.bands(items)
    covered = [x for x0, x1, _ in bands for x in range(x0, x1 + 1)]
    assert covered == [it.x for it in items]
    assert [b[2] for b in bands] == ["write_protect_page · gfn 1", "write_protect_page · gfn 0",
                                     "replace_page · gfn 0", "ksmd"]


def test_the_seed_merge_is_drawn_as_remaps_and_no_bracket():
    items = seq.sequence_items(merge_record("2.6.32"))
    kinds = [it.kind for it in items]
    assert kinds.count("remap") == 3 and "zap" not in kinds
    assert "range_start" not in kinds and "range_end" not in kinds


def _label_boxes(fig, width):
    """(lane y, side, x0, x1) of every label, in x units, at ``width`` px."""
    span = fig.layout.xaxis.range[1] - fig.layout.xaxis.range[0]
    out = []
    for t in fig.data:
        for x, y, text, pos in zip(t.x, t.y, t.text, t.textposition):
            out.append((y, pos.split()[0], *seq.label_extent(text, x, pos, span, width)))
    return out


@pytest.mark.parametrize("era", ["2.6.32", "3.7", "6.10"])
def test_sequence_labels_never_overlap_in_a_lane_down_to_an_800px_window(era):
    """Issue 8, bug 7: range_end / range_start at events 7/8 and 14/15 collided and
    the first label was cut at the left edge."""
    story = EraStory(era)
    for _ in range(len(story.steps)):
        fig = seq.sequence_figure(story.next())
        lo, hi = fig.layout.xaxis.range
        for width in (seq.NARROWEST, seq.WIDTH):
            boxes = _label_boxes(fig, width)
            assert all(lo - 1e-6 <= x0 and x1 <= hi + 1e-6 for _, _, x0, x1 in boxes)
            for i, a in enumerate(boxes):
                for b in boxes[i + 1:]:
                    if a[:2] == b[:2]:                    # same lane, same side
                        assert a[3] <= b[2] or b[3] <= a[2], (era, a, b)


def test_sequence_figure_keeps_one_trace_per_kind():
    empty = seq.sequence_figure(None)
    full = seq.sequence_figure(merge_record("3.7"))
    assert len(empty.data) == len(full.data) == len(seq.KINDS)
    assert [t.name for t in empty.data] == [t.name for t in full.data]
    assert sum(len(t.x) for t in full.data) == len(seq.sequence_items(merge_record("3.7")))
    assert full.layout.width == empty.layout.width, "the live figure keeps its size"
    assert "press" in empty.layout.annotations[-1].text


def test_sequence_text_numbers_the_marks_like_the_x_axis():
    rec = merge_record("3.7")
    lines = seq.sequence_text(rec).splitlines()
    rules = seq.era_rules(rec)
    assert len(rules) == 2 and all("3.7-6.9" in r for r in rules)
    assert lines[0] == seq.step_title(rec)
    assert len(lines) == 1 + len(rules) + len(seq.sequence_items(rec))
    first = lines[1 + len(rules)]
    assert first.split()[0] == "1" and "range_start" in first
    assert "rule: " + rules[0] in seq.sequence_figure(rec).layout.title.text.replace("<br>", " ")


def test_story_lines_name_guest_frames_instead_of_addresses():
    rec = merge_record("3.7")
    lines = seq.story_lines(rec)
    assert len(lines) == len(rec.explain())
    for hva in rec.hva_to_gfn:
        assert f"{hva:#x}" not in "\n".join(lines)
    assert any("gfn 1 from write_protect_page" in ln for ln in lines)
    assert not any("pid " in ln for ln in lines)


def test_state_table_shows_steps_that_ran_and_leaves_the_rest_blank():
    story = EraStory("2.6.32")
    story.next()
    story.next()
    fig = kvm_viz.state_table_figure(story.records, STEPS)
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Table)
    cols = fig.data[0].cells.values
    assert len(cols) == len(STEPS) + 1
    assert all(v == "" for v in cols[3]) and all(v == "" for v in cols[4])
    assert "KSM page" in cols[2][0]
    text = kvm_viz.state_table_text(story.records, STEPS)
    assert "2 · merge" in text and "3 · read" not in text
    assert kvm_viz.state_table_text([], STEPS) == "(no step has run yet)"


def test_era_table_figure_shows_every_row_and_its_exits():
    rows = eras.era_table(("2.6.32", "3.7"))
    fig = kvm_viz.era_table_figure(rows)
    heat = fig.data[0]
    assert list(heat.y) == [kvm_viz.era_row_label(r) for r in rows]
    assert [z[1] for z in heat.z] == [r.read for r in rows]
    assert "COW" in heat.text[0][-1] and "COW" not in heat.text[1][-1]
    text = kvm_viz.era_table_text(rows).splitlines()
    assert len(text) == 3 and text[1].startswith("2.6.32") and "remap in place" in text[1]


def test_histogram_counts_every_probe_once():
    exp = sc.run_experiment(candidates=64)
    edges = sc_viz.bin_edges()
    assert sum(sc_viz.counts(exp.measured(True), edges)) == 32
    assert sum(sc_viz.counts([0.1, 1e9], edges)) == 2, "out-of-range readings are clamped"
    fig = sc_viz.latency_figure(exp, 500)
    assert len(fig.data) == 3 and fig.layout.xaxis.type == "log"
    assert list(fig.data[2].x) == [500, 500]
    text = sc_viz.latency_text(exp, 500)
    assert str(exp.rates(500)) in text
    rows = text.splitlines()[2:6]
    assert sum(int(r.split()[-2]) for r in rows) == 32


def test_roc_and_signal_figures():
    exps = {"a": sc.run_experiment(candidates=32), "b": sc.run_experiment(
        "6.18", "ksm_off", candidates=32)}
    fig = sc_viz.roc_figure(exps)
    assert len(fig.data) == 3 and "AUC" in fig.data[1].name
    xs, ys = sc_viz.roc_points(exps["a"])
    assert xs == sorted(xs) and (xs[0], ys[0]) == (0.0, 0.0)
    assert len(sc_viz.roc_text(exps).splitlines()) == 3
    # chapter 10's long setting names: two lines a setting, none over 76 characters
    long = sc_viz.roc_text({"VUsion-like same behaviour": exps["a"], "no defence": exps["b"]})
    assert max(map(len, long.splitlines())) <= 76 and str(exps["a"].best()).split(", ")[0] in long
    # issue 8, bug 7: the square plot shrinks a domain instead of running the x axis
    # to ~115%
    assert fig.layout.xaxis.range[1] <= 1.02 and fig.layout.xaxis.constrain == "domain"
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis.constrain == "domain"
    sigs = [sc.signal("3.7", "write"), sc.signal("3.7", "read")]
    sfig = sc_viz.signal_figure(sigs)
    assert [t.name for t in sfig.data] == ["write probe", "read probe"]
    assert list(sfig.data[0].y) == [sigs[0].gap_ns]
    # bar labels on two short lines: one long line ran into the next group's label
    assert all("<br>" in t and max(len(p) for p in t.split("<br>")) <= 9
               for t in sfig.data[0].text)
    assert len(sc_viz.signal_text(sigs).splitlines()) == 3
    assert sc_viz.fmt_ns(1500) == "1.5 µs" and sc_viz.fmt_ns(20) == "20 ns"
    assert math.isclose(sc_viz.bin_edges()[0], sc_viz.LO_NS)


def test_state_table_is_as_tall_as_its_rows_wrap_in_a_narrow_view():
    """A go.Table's rows grow with wrapped text but its figure does not: at 800 px
    the last row of a 7-step table was cut off (issue 8, ch07 exercise 5)."""
    assert kvm_viz._wrapped_lines("none (next access exits)", 30) == 1
    assert kvm_viz._wrapped_lines("none (next access exits)", 10) == 3
    assert kvm_viz._wrapped_lines("abcdefghijkl", 5) == 3
    short = EraStory("2.6.32", steps=STEPS[:2]).run_all()
    full = EraStory("2.6.32").run_all()
    few = kvm_viz.state_table_figure(short, STEPS[:2])
    many = kvm_viz.state_table_figure(full, STEPS)
    rows = [["after step"] + [""] * len(STEPS)] + [list(r) for r in zip(*many.data[0].cells.values)]
    heights = kvm_viz.table_row_heights(rows, many.data[0].columnwidth)
    assert len(heights) == 7 and min(heights) >= 28
    assert max(heights) >= 2 * kvm_viz.LINE_PX, "narrow columns wrap 'none (next access exits)'"
    assert many.layout.height >= 90 + sum(heights) > few.layout.height
