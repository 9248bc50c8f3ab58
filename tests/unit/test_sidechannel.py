"""Chapter 10's experiment (ksmbook.labs.sidechannel): the write-timing side channel.

The simulated cost of every probe comes from the kernel's VM (vm.access_log); the
timer noise is the experiment's own, seeded.  The tests check what each defence
does to the truth (which candidates merged) and to the two classes' costs.
"""
import json
import math
import random
from pathlib import Path

import pytest

from ksmbook.labs import sidechannel as sc
from ksmbook.kernel import costs


def test_timer_noise_is_seeded_and_never_below_the_timer_scaled_reading():
    a = [sc.QUIET.read(100, random.Random(7)) for _ in range(3)]
    b = [sc.QUIET.read(100, random.Random(7)) for _ in range(3)]
    assert a == b
    rng = random.Random(1)
    noisy = sc.TimerNoise(jitter_sigma=0.0, outlier_rate=1.0, outlier_median_ns=1000,
                          outlier_sigma=0.0)
    assert noisy.read(10, rng) == pytest.approx(10 + costs.DEFAULT.timer_ns + 1000)
    calm = sc.TimerNoise(jitter_sigma=0.0, outlier_rate=0.0)
    assert calm.read(10, rng) == 10 + costs.DEFAULT.timer_ns


def test_outliers_happen_at_about_their_rate():
    rng = random.Random(3)
    noise = sc.TimerNoise(outlier_rate=0.1, jitter_sigma=0.0)
    hits = sum(noise.read(0, rng) > 500 for _ in range(5000))
    assert 400 < hits < 600


def test_the_experiment_is_deterministic():
    a = sc.run_experiment(candidates=32, seed=5)
    b = sc.run_experiment(candidates=32, seed=5)
    c = sc.run_experiment(candidates=32, seed=6)
    assert a.probes == b.probes
    assert [p.measured_ns for p in a.probes] != [p.measured_ns for p in c.probes]


def test_without_defence_right_guesses_merge_and_cost_exits_and_a_copy():
    exp = sc.run_experiment(candidates=64)
    pos = [p for p in exp.probes if p.positive]
    neg = [p for p in exp.probes if not p.positive]
    assert len(pos) == len(neg) == 32
    assert all(p.merged for p in pos) and not any(p.merged for p in neg)
    assert {p.exits for p in pos} == {(2,)} and {p.exits for p in neg} == {(0,)}
    model = costs.DEFAULT
    assert {p.sim_ns for p in pos} == {(model.access_ns(2, (costs.HOST_COW, costs.HOST_NONE)),)}
    assert {p.sim_ns for p in neg} == {(model.tlb_hit_ns,)}
    assert exp.merged_fraction == 1.0 and exp.auc() > 0.95


def test_ksm_off_nothing_merges_and_both_classes_cost_the_same():
    exp = sc.run_experiment("6.18", "ksm_off", candidates=32)
    assert not any(p.merged for p in exp.probes)
    assert len({p.sim_ns for p in exp.probes}) == 1


def test_zero_only_merges_only_zero_pages():
    exp = sc.run_experiment("6.18", "zero_only", candidates=32, zero_pages=3)
    assert not any(p.merged for p in exp.probes)
    assert len({p.sim_ns for p in exp.probes}) == 1
    assert len(exp.zero_probe_ns) == 3 and min(exp.zero_probe_ns) > 1000, \
        "the attacker's own zero pages were merged: their writes are slow"


@pytest.mark.parametrize("kernel", ["2.6.32", "3.7", "6.18"])
def test_vusion_model_makes_merged_and_unmerged_writes_cost_the_same(kernel):
    exp = sc.run_experiment(kernel, "vusion", candidates=16)
    assert all(p.merged for p in exp.probes if p.positive)
    assert len({(p.sim_ns, p.exits) for p in exp.probes}) == 1
    assert exp.probes[0].exits == (2,)


def test_repeats_keep_the_smallest_reading_of_fresh_rounds():
    exp = sc.run_experiment(candidates=16, repeats=3, noise=sc.NOISY)
    assert all(len(p.sim_ns) == 3 for p in exp.probes)
    one = sc.run_experiment(candidates=16, repeats=1, noise=sc.NOISY)
    assert exp.repeats == 3 and one.repeats == 1


def test_rates_roc_and_auc():
    exp = sc.run_experiment(candidates=64)
    everything, nothing = exp.rates(0), exp.rates(math.inf)
    assert (everything.tpr, everything.fpr) == (1.0, 1.0)
    assert (nothing.tpr, nothing.fpr) == (0.0, 0.0)
    r = exp.rates(500)
    assert r.tp + r.fn == 32 and r.fp + r.tn == 32
    roc = exp.roc()
    assert all(a.tpr >= b.tpr and a.fpr >= b.fpr for a, b in zip(roc, roc[1:]))
    best = exp.best()
    assert best.tpr - best.fpr == max(x.tpr - x.fpr for x in roc)
    assert "TPR" in str(r) and "FPR" in str(r)


def test_the_write_signal_is_the_same_in_every_era_the_read_signal_is_not():
    write = {k: sc.signal(k, "write") for k in ("2.6.32", "3.7", "6.10")}
    read = {k: sc.signal(k, "read") for k in ("2.6.32", "3.7", "6.10")}
    assert len({s.gap_ns for s in write.values()}) == 1 and write["3.7"].gap_ns > 1000
    assert read["2.6.32"].gap_ns == 0, "change_pte kept merged pages mapped: reads are free"
    assert read["3.7"].gap_ns == read["6.10"].gap_ns > 0
    assert read["3.7"].merged_exits == 1


def test_ksmd_needs_two_scans_and_smart_scan_can_make_it_wait_longer():
    assert sc.merge_delay("6.6", steady_scans=5) == 2
    assert sc.merge_delay("6.18", steady_scans=5, smart_scan=False) == 2
    assert sc.merge_delay("6.18", steady_scans=5) > 2


def test_time_to_merge_counts_ksmd_batches():
    t = sc.time_to_merge("6.18", victim_pages=300, attacker_pages=200)
    per = t["pages_to_scan"]
    # scan 1: ceil(500/100) batches + the one that finds the end; scan 2: the victim's
    # 300 pages, then the attacker's first page starts the next batch
    assert t["batches"] == math.ceil(500 / per) + 1 + math.ceil(300 / per) + 1
    assert t["ms"] >= (t["batches"] - 1) * t["sleep_millisecs"]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        sc.trial(defence="salting")
    with pytest.raises(ValueError):
        sc.trial(probe="execute")


TRACES = Path(__file__).parents[1] / "data" / "kernel_traces"


@pytest.mark.parametrize("path", sorted(TRACES.glob("attacker_wait_*.json")), ids=lambda p: p.stem)
def test_merge_delay_matches_the_recorded_6_18_kernel(path):
    """The traces were recorded on Linux 6.18 (ksmbook.oracle.live): a victim's 16 pages sit
    unmerged for some full scans, an attacker plants copies, then one scan at a time."""
    doc = json.loads(path.read_text())
    steps = doc["scenario"]["steps"]
    steady = next(s["n"] for s in steps if s["op"] == "scans")
    smart = next(int(s["value"]) for s in steps if s["op"] == "knob" and s["name"] == "smart_scan")
    pages = next(s["count"] for s in steps if s["op"] == "unique")
    plant = max(i for i, s in enumerate(steps) if s["op"] == "madvise")
    after = [snap["counters"]["pages_sharing"] for snap in doc["snapshots"][plant + 1:]]
    kernel_scans = after.index(pages) + 1
    assert sc.merge_delay("6.18", steady_scans=steady, pages=pages,
                          smart_scan=bool(smart)) == kernel_scans
