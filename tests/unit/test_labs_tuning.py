"""Chapter 06's lab (ksmbook.labs.tuning): knobs against memory saved and ksmd CPU."""
import pytest

from ksmbook.exercises import ch06
from ksmbook.exercises.base import Feedback
from ksmbook.kernel.ksm.ksmd import SCAN_COST_NS
from ksmbook.labs import tuning
from ksmbook.viz import tuning as tviz

SMALL = tuning.Workload(processes=2, copies=64, templates=4, zeros=16, unique=16)


def test_build_maps_every_page_and_counts_them():
    m, volatile = tuning.build(tuning.Workload(processes=3, copies=8, templates=2, zeros=4,
                                               unique=4, volatile=2))
    assert len(volatile) == 3 and all(n == 2 for _p, _a, n in volatile)
    assert m.ksm.run == 1 and len(m.processes) == 3


def test_cpu_share_follows_the_cost_model_exactly_when_ksmd_never_runs_dry():
    w = tuning.Workload(processes=1, copies=0, zeros=0, unique=4000)
    tl = tuning.run_timeline({"pages_to_scan": 100, "sleep_millisecs": 20, "smart_scan": 0}, w,
                             duration_ms=1000, sample_ms=1000)
    batch_ms = 100 * SCAN_COST_NS / 1e6
    assert tl.mean_cpu_percent() == pytest.approx(100 * batch_ms / (batch_ms + 20), rel=0.02)


def test_more_pages_per_batch_saves_the_same_memory_sooner_for_more_cpu():
    runs = tuning.sweep("pages_to_scan", (50, 400), SMALL, duration_ms=2000)
    assert runs[0].final.saved_bytes == runs[1].final.saved_bytes > 0
    assert runs[1].time_to_save() < runs[0].time_to_save()
    assert runs[1].mean_cpu_percent() > runs[0].mean_cpu_percent()


def test_saved_bytes_are_pages_sharing_plus_zero_pages():
    tl = tuning.run_timeline({"use_zero_pages": 1, "pages_to_scan": 500}, SMALL, duration_ms=500)
    f = tl.final
    assert f.ksm_zero_pages == 2 * 16
    assert f.saved_bytes == (f.pages_sharing + f.ksm_zero_pages) * 4096


def test_nothing_alike_gives_a_negative_general_profit():
    tl = tuning.run_timeline({"pages_to_scan": 500, "smart_scan": 0},
                             tuning.Workload(processes=2, copies=0, zeros=0, unique=32),
                             duration_ms=500)
    assert tl.final.general_profit == -64 * 64 and tl.time_to_save() is None


def test_volatile_pages_are_rewritten_and_never_merge():
    w = tuning.Workload(processes=2, copies=0, zeros=0, unique=0, volatile=8, rewrite_ms=10)
    tl = tuning.run_timeline({"pages_to_scan": 100}, w, duration_ms=1000)
    assert tl.final.pages_sharing == 0 and max(s.pages_volatile for s in tl.samples) > 0


@pytest.mark.parametrize("bad", [dict(processes=-1), dict(copies=1.5), dict(templates=0),
                                 dict(rewrite_ms=0), dict(unique=True)])
def test_bad_workloads_are_refused_with_the_field_named(bad):
    with pytest.raises(ValueError, match="Workload"):
        tuning.Workload(**bad)


def test_bad_durations_are_refused():
    with pytest.raises(ValueError, match="duration_ms"):
        tuning.run_timeline({}, SMALL, duration_ms=0)
    with pytest.raises(ValueError, match="sample_ms"):
        tuning.run_timeline({}, SMALL, duration_ms=100, sample_ms=200)


def test_figures_have_one_line_per_run_and_text_twins():
    runs = tuning.sweep("pages_to_scan", (100, 400), SMALL, duration_ms=1000)
    fig = tviz.saving_and_cpu_figure(runs)
    assert len(fig.data) == 4 and all(len(t.x) for t in fig.data)
    assert len(tviz.tradeoff_figure(runs).data) == 2
    assert len(tviz.profit_figure(runs).data) == 2
    table = tuning.summary_table(runs)
    assert "pages_to_scan=100" in table and "pages_to_scan=400" in table
    long = tuning.run_timeline({}, SMALL, duration_ms=1000, label="advisor scan-time, target 2 s")
    assert max(map(len, tuning.summary_table(runs + [long]).splitlines())) <= 76   # 800 px


def test_tradeoff_labels_stay_inside_the_plot_at_800px():
    """Issue 8: the fastest run's label ("pages_to_scan=1600") was cut at the right."""
    runs = tuning.sweep("pages_to_scan", (100, 400, 1600), SMALL, duration_ms=1000)
    fig = tviz.tradeoff_figure(runs)
    lay = fig.layout
    plot_px = 600 - lay.margin.l - lay.margin.r
    for t in fig.data:
        x_px = t.x[0] / lay.xaxis.range[1] * plot_px
        label_px = len(t.text[0]) * 14 * 0.62 + 8
        if t.textposition.endswith("right"):
            assert x_px + label_px <= plot_px, t.text[0]
        else:
            assert x_px - label_px >= 0, t.text[0]
    # both ranges start at 0: the tick labels stand off the axes, so the two "0" labels
    # do not touch at the origin (plotly's default standoff put them corner to corner)
    assert lay.xaxis.range[0] == lay.yaxis.range[0] == 0
    assert lay.xaxis.ticklabelstandoff >= 6 and lay.yaxis.ticklabelstandoff >= 6


@pytest.mark.parametrize("ex", ch06.EXERCISES, ids=lambda ex: ex.name)
def test_chapter_06_exercises_accept_their_answer_and_refuse_blanks(ex):
    fb = ex.check(ex.expected())
    assert isinstance(fb, Feedback) and fb.correct is True
    assert ex.check(...).correct is None and ex.hints


def test_chapter_06_wrong_answers_say_why():
    assert "sleep alone" in ch06.cpu_share.check(
        round(100 * ch06.cpu_share.facts["batch_ms"] / 20)).text
    assert "only for pages that were *not* skipped" in ch06.who_skips.check("cmp_and_merge_page").text
    assert "wrong sign" in ch06.negative_profit.check(-ch06.negative_profit.expected()).text
    assert ch06.max_sharing.expected() == 1024 // 4
