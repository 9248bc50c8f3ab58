"""Chapter 06's TuningLab (wiring only) and chapter 08's density-against-CPU figure."""
import pytest

pytest.importorskip("ipywidgets")

from ksmbook.labs import guests, tuning
from ksmbook.viz import guests as gviz
from ksmbook.widgets.tuning import DEFAULTS, TuningLab, WORKLOADS


def test_tuning_lab_compares_with_the_defaults_and_caches():
    lab = TuningLab(duration_ms=1000)
    default, mine = lab.runs
    assert default.knobs == DEFAULTS and mine.knobs["pages_to_scan"] == 400
    assert mine.final.saved_bytes == default.final.saved_bytes > 0
    assert mine.mean_cpu_percent() > default.mean_cpu_percent()
    assert "sooner" in lab.verdict() and lab.updates == 0
    fig = lab.figure
    lab.pages.value = 1600
    assert lab.figure is fig and lab.updates == 1 and len(lab.cache) == 3
    lab.pages.value = 400                       # back: both runs come from the cache
    assert len(lab.cache) == 3 and lab.updates == 2
    # the text twin is the summary table of exactly the two runs drawn
    assert lab.text().splitlines()[1:3] == tuning.summary_table(lab.runs).splitlines()[1:3]
    assert [t.name for t in lab.figure.data[::2]] == [r.label for r in lab.runs]


def test_tuning_lab_reports_negative_profit_on_unique_pages():
    lab = TuningLab(duration_ms=1000, workload="nothing alike")
    assert all(r.final.general_profit < 0 for r in lab.runs)
    assert "negative" in lab.verdict()
    assert lab.runs[1].workload == WORKLOADS["nothing alike"]


def test_density_cpu_figure_reads_the_sweep():
    sweep = guests.density_sweep(counts=(1, 2, 4), mixes=("identical", "identical, KASLR"))
    fig = gviz.density_cpu_figure(sweep)
    assert [t.name for t in fig.data] == list(sweep)
    for trace, rows in zip(fig.data, sweep.values()):
        assert list(trace.x) == [r.ksmd_cpu_ms for r in rows]
        assert list(trace.y) == pytest.approx([r.guests_per_gib() for r in rows])
    ident, kaslr = sweep.values()
    assert ident[-1].guests_per_gib() > kaslr[-1].guests_per_gib()
    # CPU grows with guest RAM, whatever the guests hold
    assert [r.ksmd_cpu_ms for r in ident] == pytest.approx([r.ksmd_cpu_ms for r in kaslr])


def test_sharing_limit_figure_stacks_to_the_copies():
    from ksmbook.viz import tuning as tviz
    one_page = tuning.Workload(copies=64, templates=1, zeros=0, unique=0)      # 256 copies
    runs = tuning.sweep("max_page_sharing", (2, 64), one_page, base={"pages_to_scan": 400},
                        duration_ms=1000)
    fig = tviz.sharing_limit_figure(runs)
    kept, saved = fig.data
    assert list(kept.y) == [128, 4] and [k + s for k, s in zip(kept.y, saved.y)] == [256, 256]
