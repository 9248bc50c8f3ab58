"""Chapter 09's apps, driven headlessly: menu values, button clicks.

The live app gets a fake availability check and a fake runner, so these tests
never touch the machine's KSM; the real runner is tested in tests/test_live.py.
"""
import dataclasses

import pytest

from ksmbook.oracle import sidebyside as sb
from ksmbook.oracle.live import KsmBusy, ProtocolError
from ksmbook.viz import compare as vc
from ksmbook.widgets.live import LiveCompare, RecordedCompare, SimulatorTrace
from ksmbook.widgets.plot import Plot, figure_json


def same_objects(app):
    return {k: (fig, fig.revision) for k, fig in app.figures.items()}


def assert_updated_in_place(app, before):
    """The same live figures, their output replaced (what every view draws)."""
    for k, (fig, revision) in before.items():
        assert app.figures[k] is fig and isinstance(fig, Plot) and fig.revision >= revision
        assert fig.drawn == figure_json(fig.figure)


def test_the_menu_lists_every_builtin_scenario_and_picking_one_redraws_in_place():
    app = SimulatorTrace()
    assert list(app.picker.options) == sb.scenario_names()
    before = same_objects(app)
    app.picker.value = "late_joiners"                       # what the reader's pick does
    assert app.name == "late_joiners" and app.updates == 1
    assert_updated_in_place(app, before)
    sharing = app.figures["timeline"].data[2]
    assert sharing.name == "pages_sharing"
    assert list(sharing.y) == sb.simulate("late_joiners").counter("pages_sharing")
    assert "late_joiners" in app.about.value and app.text().startswith("late_joiners: ")
    app.select("two_identical_pages")                        # the same through code
    assert app.picker.value == "two_identical_pages" and app.updates == 2
    with pytest.raises(ValueError):
        app.select("no_such_scenario")


def test_recorded_compare_shows_no_difference_on_6_18_and_boxes_them_on_an_older_model():
    app = RecordedCompare("late_joiners")
    assert set(app.picker.options) <= set(sb.recorded_names())
    assert not app.comparison().diffs and "0 fields differ" in app.text()
    grid = app.figures["grid"]
    app.model.value = "6.10"                                 # the second menu
    cmp = app.comparison()
    assert app.kernel == "6.10" and app.updates == 1 and app.figures["grid"] is grid
    boxed = sum(1 for i in range(cmp.steps) for _ in cmp.at(i))
    assert len(grid.layout.shapes) == boxed > 0
    assert "pages_sharing" in app.text() and "12 values differ" in app.text()
    app.set_kernel("6.18")
    assert len(grid.layout.shapes) == 0 and app.model.value == "6.18"   # no stale boxes


def fake_runner(change=None, calls=None):
    def run(scenario, timeout):
        if calls is not None:
            calls.append((scenario.name, timeout))
        trace = sb.simulate(scenario)
        snaps = tuple(trace.snapshots)
        if change:                      # (step, counter, delta): the kernel counted otherwise
            step, counter, delta = change
            snaps = list(dict(s, counters=dict(s["counters"])) for s in snaps)
            snaps[step]["counters"][counter] += delta
        return dataclasses.replace(trace, kind="live", kernel="6.18.0-test", snapshots=tuple(snaps))
    return run


def test_live_compare_refuses_loudly_where_it_cannot_run_and_never_calls_the_runner():
    calls = []
    app = LiveCompare(availability=lambda: (False, "needs root"), runner=fake_runner(calls=calls))
    assert app.run_button.disabled and app.run_button.tooltip == "needs root"
    assert app.run() is False and calls == []
    assert app.kernel_trace is None and app.state().startswith("LIVE COMPARISON UNAVAILABLE")
    assert "needs root" in app.about.value and "#B00020" in app.about.value
    assert app.text().splitlines()[0] == app.state()
    assert "nothing to compare with yet" in app.figures["timeline"].layout.title.text.replace("<br>", " ")


def test_live_compare_button_runs_the_scenario_and_marks_what_the_kernel_did_differently():
    calls = []
    app = LiveCompare("cow_after_merge", availability=lambda: (True, ""), timeout=7,
                      runner=fake_runner((6, "pages_volatile", 1), calls))
    assert not app.run_button.disabled and "ready" in app.state()
    before = same_objects(app)
    app.run_button.click()
    assert calls == [("cow_after_merge", 7)]
    assert app.kernel_trace.kind == "live" and app.updates == 1
    assert_updated_in_place(app, before)
    assert app.state().startswith("ran on Linux 6.18.0-test") and "1 value differs" in app.state()
    assert "!= counters.pages_volatile" in app.text()
    assert list(app.figures["timeline"].data[-1].x) == [6]
    assert len(app.figures["grid"].layout.shapes) == 1
    app.select("ten_identical_pages")                        # another scenario: not run yet
    assert app.kernel_trace is None and "ready" in app.state()
    assert len(app.figures["grid"].layout.shapes) == 0


@pytest.mark.parametrize("exc, says", [
    (KsmBusy("other processes use KSM: 42 (qemu)"), "KSM is busy"),
    (ProtocolError("ksmd: timed out"), "ProtocolError: ksmd: timed out"),
])
def test_live_compare_reports_a_refused_or_failed_run(exc, says):
    def runner(scenario, timeout):
        raise exc
    app = LiveCompare(availability=lambda: (True, ""), runner=runner)
    assert app.run() is False
    assert app.kernel_trace is None and says in app.state() and app.busy == isinstance(exc, KsmBusy)
    assert "#B00020" in app.about.value


def test_extra_scenarios_join_the_live_menu():
    app = LiveCompare(availability=lambda: (True, ""), runner=fake_runner(),
                      extra=[sb.chain_prune_scenario(0)])
    assert "chain_prune_0ms" in app.picker.options
    app.picker.value = "chain_prune_0ms"
    assert app.run() and not app.comparison().diffs
    assert vc.compare_table(app.comparison()).endswith("after every one of the 14 steps")


def test_live_compare_models_this_kernel_unless_told_otherwise():
    app = LiveCompare(availability=lambda: (True, ""), runner=fake_runner())
    assert app.kernel == sb.this_kernel_model()
    assert LiveCompare(availability=lambda: (True, ""), runner=fake_runner(),
                       kernel="6.12").comparison().left.label == "simulator (Linux 6.12 model)"
