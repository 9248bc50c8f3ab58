"""ksmbook.oracle.sidebyside: traces from the simulator and from recorded kernel runs, and
the comparison that lines them up (chapter 09)."""
import dataclasses
from pathlib import Path

import pytest

from ksmbook.oracle import sidebyside as sb
from ksmbook.oracle.scenario import COUNTERS, Scans, _SimRunner, diff_traces


def altered(trace, step, path, value):
    """A copy of ``trace`` with one field of one snapshot changed."""
    snaps = [dict(s, counters=dict(s["counters"]),
                  ksm_stat={p: dict(v) for p, v in s["ksm_stat"].items()})
             for s in trace.snapshots]
    where = snaps[step]
    *parents, last = path.split(".")
    for key in parents:
        where = where[key]
    if value is None:
        del where[last]
    else:
        where[last] = value
    return dataclasses.replace(trace, kind="recorded", kernel="test", snapshots=tuple(snaps))


def test_every_recorded_trace_loads_with_its_scenario_and_the_simulator_agrees():
    names = sb.recorded_names()
    assert "ten_identical_pages" in names and len(names) >= 42
    for name in names[:6]:
        rec = sb.recorded(name)
        assert rec.kind == "recorded" and rec.kernel.startswith("6.18")
        assert len(rec.snapshots) == len(rec.scenario.steps)
        cmp = sb.Comparison(sb.simulate(rec.scenario), rec)
        assert cmp.diffs == () and cmp.first_step is None and cmp.summary().startswith("0 fields")


def test_simulate_is_cached_and_labelled():
    a = sb.simulate("two_identical_pages")
    b = sb.simulate(sb.scenario_named("two_identical_pages"))
    assert a.snapshots is b.snapshots
    assert a.label == "simulator (Linux 6.18 model)" and a.side == "sim"
    assert sb.simulate("two_identical_pages", "6.10").label == "simulator (Linux 6.10 model)"
    assert sb.recorded("two_identical_pages").side == "kernel"


def test_a_changed_counter_is_found_at_its_step_and_nowhere_else():
    sim = sb.simulate("ten_identical_pages")
    other = altered(sim, 5, "counters.pages_sharing", 8)
    cmp = sb.Comparison(sim, other)
    assert cmp.differing_steps() == [5] and cmp.first_step == 5
    assert [(d.path, d.a, d.b) for d in cmp.at(5)] == [("counters.pages_sharing", 9, 8)]
    assert cmp.counters_that_differ() == ["pages_sharing"]
    assert cmp.summary() == "1 value differs; first after step 5: scans(1)"
    assert cmp.headline() == "1 value differs, first after step 5"


def test_a_field_only_one_side_prints_is_not_a_value_difference():
    sim = sb.simulate("ten_identical_pages")
    other = altered(sim, 3, "ksm_stat.p.ksm_merge_any", None)
    cmp = sb.Comparison(sim, other)
    assert len(cmp.diffs) == 1 and cmp.value_diffs == [] and cmp.first_step is None
    assert cmp.at(3) == [] and len(cmp.at(3, one_sided=True)) == 1
    assert cmp.missing_fields() == ["ksm_stat.p.ksm_merge_any"]
    assert cmp.summary() == ("0 values differ\n1 more field differs only because one side "
                             "does not print it: ksm_merge_any")


def test_an_older_model_against_the_recording_differs_where_the_kernel_changed():
    cmp = sb.Comparison(sb.simulate("late_joiners", "6.10"), sb.recorded("late_joiners"))
    scans_after_opt_in = [i for i, s in enumerate(cmp.scenario.steps)
                          if isinstance(s, Scans) and cmp.scenario.steps[i - 1].op == "madvise"]
    assert cmp.differing_steps() == scans_after_opt_in[1:]        # b's and c's first scans
    assert "pages_sharing" in cmp.counters_that_differ()
    assert {m.rsplit(".", 1)[1] for m in cmp.missing_fields()} == {"ksm_merge_any",
                                                                   "ksm_mergeable"}


def test_values_counts_every_counter_and_ksm_stat_field():
    rec = sb.recorded("ten_identical_pages")
    per_step = len(COUNTERS) + len(rec.snapshots[0]["ksm_stat"]["p"])
    assert sb.Comparison(sb.simulate("ten_identical_pages"), rec).values() == 7 * per_step


def test_nothing_to_compare_with():
    cmp = sb.Comparison(sb.simulate("ten_identical_pages"))
    assert cmp.diffs == () and cmp.sides == ("sim", "")
    assert "nothing to compare with" in cmp.summary()
    assert cmp.headline() == "nothing to compare with"


def test_traces_dir_is_found_from_the_notebooks_folder_without_a_source_checkout(monkeypatch):
    repo = Path(__file__).resolve().parents[2]
    monkeypatch.setattr(sb, "__file__", "/nonexistent/site-packages/ksmbook/oracle/sidebyside.py")
    monkeypatch.chdir(repo / "notebooks")
    assert sb.traces_dir().resolve() == (repo / "tests" / "data" / "kernel_traces").resolve()
    monkeypatch.chdir("/")
    with pytest.raises(FileNotFoundError, match="no recorded kernel traces"):
        sb.traces_dir()


# --- the clock rule of chapter 09 -------------------------------------------------

def run_with_pause(scenario, before_step, ms):
    """The scenario in the simulator with ``ms`` of idle time before one step (a
    machine that stalls): the scenario runner itself has no such step."""
    class Pausing(_SimRunner):
        def do_scans(self, s):
            if self.index == before_step:
                self.m.advance(ms)
            super().do_scans(s)
    return Pausing(scenario, "6.18").run()


def test_chain_pruning_depends_on_the_interval_and_on_elapsed_time():
    now = sb.simulate(sb.chain_prune_scenario(0))
    later = sb.simulate(sb.chain_prune_scenario(2000))
    cmp = sb.Comparison(now, later)
    walk = cmp.differing_steps()[-1]
    assert [d.path for d in cmp.at(walk)] == ["counters.stable_node_chains",
                                              "counters.stable_node_dups"]
    assert now.counter("stable_node_chains")[walk] == 0 < later.counter("stable_node_chains")[walk]
    # two and a half seconds of stall before that scan: the 2000 ms run prunes too
    stalled = run_with_pause(sb.chain_prune_scenario(2000), walk, 2500)
    assert [s["counters"] for s in stalled] == [s["counters"] for s in now.snapshots]
    # ... and a short one changes nothing
    brief = run_with_pause(sb.chain_prune_scenario(2000), walk, 100)
    assert not diff_traces(brief, list(later.snapshots))



def test_the_live_comparison_models_the_running_kernels_version():
    assert sb.this_kernel_model("6.18.44-fc-v595") == "6.18"
    assert sb.this_kernel_model("6.8.0-45-generic") == "6.8"
    assert sb.this_kernel_model("6.12rc3") == "6.12"
    assert sb.this_kernel_model("7.1.0") == "6.18"           # newer: the newest model
    assert sb.this_kernel_model("not-a-release") == "6.18"
