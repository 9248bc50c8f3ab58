"""The scenario format: steps, the static check, snapshots and diffs.

Pure Python: no kernel, no simulator needed.
"""
import json
from pathlib import Path

import pytest

import ksmbook.oracle.workloads  # noqa: F401  (registers the built-ins)
from ksmbook.oracle.scenario import (COUNTERS, KSM_STAT_FIELDS, SCENARIOS, Scenario,
                              ScenarioError, diff_snapshots, diff_traces, exit,
                              fill, fork, knob, madvise, make_snapshot, mmap,
                              mprotect, munmap, parse_ksm_stat, poke, prctl_merge,
                              run, scans, spawn, touch_read, unique,
                              unique_page_bytes)

TRACES = Path(__file__).parent / "data" / "kernel_traces"


def sc(*steps, name="t"):
    return Scenario(name, "test", steps)


def test_steps_describe_like_calls():
    assert fill("vm1", "buf", 0, 2, 42).describe() == "fill('vm1', 'buf', 0, 2, 42)"
    assert scans(3).describe() == "scans(3)"
    assert knob("use_zero_pages", 1).describe() == "knob('use_zero_pages', '1')"
    assert mmap("p", "r", 4, shared=True).describe() == "mmap('p', 'r', 4, True)"


def test_round_trip_through_dict():
    s = sc(spawn("a"), mmap("a", "r", 4), unique("a", "r", 0, 4, tag=3),
           madvise("a", "r", 0, 4, "MADV_MERGEABLE"), fork("a", "b"),
           poke("b", "r", 1, 7, 0xFF), mprotect("a", "r", 0, 1, "r"),
           touch_read("a", "r", 0, 1), munmap("b", "r", 3, 1), prctl_merge("b", 1),
           exit("a"), knob("max_page_sharing", 2), run(2), scans(2))
    again = Scenario.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s


@pytest.mark.parametrize("steps, message", [
    ((mmap("a", "r", 1),), "no live process 'a'"),
    ((spawn("a"), fill("a", "r", 0, 1, 1)), "has no region 'r'"),
    ((spawn("a"), mmap("a", "r", 2), fill("a", "r", 1, 2, 1)), "outside the 2-page region"),
    ((spawn("a"), mmap("a", "r", 2), mprotect("a", "r", 0, 1, "r"), poke("a", "r", 0, 0, 1)),
     "would SIGSEGV"),
    ((spawn("a"), mmap("a", "r", 2), mprotect("a", "r", 0, 1, "none"), touch_read("a", "r", 0, 1)),
     "would SIGSEGV"),
    ((spawn("a"), mmap("a", "r", 2), munmap("a", "r", 0, 1), fill("a", "r", 0, 1, 1)), "not mapped"),
    ((spawn("a"), spawn("a")), "already used"),
    ((spawn("a"), exit("a"), spawn("a")), "already used"),
    ((spawn("a"), exit("a"), fill("a", "r", 0, 1, 1)), "no live process"),
    ((spawn("a"), mmap("a", "r", 1), mmap("a", "r", 1)), "already exists"),
])
def test_static_check_rejects(steps, message):
    with pytest.raises(ScenarioError, match=message):
        sc(*steps)


@pytest.mark.parametrize("make", [
    lambda: run(1), lambda: knob("run", 1), lambda: knob("full_scans", 0),
    lambda: unique("a", "r", 0, 1, 0), lambda: fill("a", "r", 0, 1, 256),
    lambda: madvise("a", "r", 0, 1, "MADV_HUGEPAGE"), lambda: mprotect("a", "r", 0, 1, "rwx"),
    lambda: scans(0), lambda: mmap("a", "r", 0), lambda: fill("a", "r", 0, 0, 1),
])
def test_bad_step_arguments(make):
    with pytest.raises(ScenarioError):
        make()


def test_fork_inherits_regions_by_name():
    s = sc(spawn("a"), mmap("a", "r", 2), fork("a", "b"), fill("b", "r", 0, 2, 1), exit("a"),
           fill("b", "r", 1, 1, 2))
    assert s.processes() == ["a", "b"]
    assert s.max_pages == 4


def test_unique_page_bytes_are_distinct():
    pages = {unique_page_bytes(tag, i) for tag in (1, 2) for i in range(64)}
    assert len(pages) == 128
    assert unique_page_bytes(1, 2)[:8] == bytes([2, 0, 0, 0, 1, 0, 0, 0])
    assert len(unique_page_bytes(1, 2)) == 4096


def test_parse_ksm_stat_of_linux_6_18():
    text = ("ksm_rmap_items 2\nksm_zero_pages 0\nksm_merging_pages 2\n"
            "ksm_process_profit 8064\nksm_merge_any: no\nksm_mergeable: yes\n")
    assert parse_ksm_stat(text) == {
        "ksm_rmap_items": 2, "ksm_zero_pages": 0, "ksm_merging_pages": 2,
        "ksm_process_profit": 8064, "ksm_merge_any": "no", "ksm_mergeable": "yes"}
    assert parse_ksm_stat("") == {}


def fake_snapshot(pages_sharing=1, rmap=2, procs=("a",)):
    sysfs = {n: "0" for n in COUNTERS}
    sysfs.update(pages_sharing=str(pages_sharing), pages_scanned="1000", full_scans="2")
    stat = (f"ksm_rmap_items {rmap}\nksm_zero_pages 0\nksm_merging_pages 2\n"
            "ksm_process_profit 1\nksm_merge_any: no\nksm_mergeable: yes\n")
    files = {"ksm_stat": stat, "ksm_merging_pages": "2\n"}
    return make_snapshot(5, scans(1), None, lambda n: sysfs[n] + "\n",
                         lambda pid, f: files[f], [(p, 100 + i) for i, p in enumerate(procs)],
                         {"pages_scanned": 990})


def test_make_snapshot_shape_and_deltas():
    s = fake_snapshot()
    assert s["step"] == 5 and s["op"] == "scans(1)" and s["error"] is None
    assert list(s["counters"]) == list(COUNTERS)
    assert s["counters"]["pages_scanned"] == 10          # delta since the start
    assert s["counters"]["full_scans"] == 2
    assert list(s["ksm_stat"]["a"]) == [*KSM_STAT_FIELDS, "merging_pages_file"]
    assert s["ksm_stat"]["a"]["merging_pages_file"] == 2


def test_diffs_name_every_field():
    a, b = fake_snapshot(), fake_snapshot(pages_sharing=3, rmap=1, procs=("a", "b"))
    paths = [d.path for d in diff_snapshots(a, b)]
    assert paths == ["counters.pages_sharing", "ksm_stat.a.ksm_rmap_items", "ksm_stat.b"]
    assert str(diff_snapshots(a, b)[0]) == "counters.pages_sharing: 1 != 3"
    assert diff_snapshots(a, a) == []
    d = diff_traces([a, a], [a, b])
    assert d[0].path == "[1].counters.pages_sharing"
    assert [x.path for x in diff_traces([a], [a, b])] == ["len"]


def test_builtin_scenarios_are_registered():
    assert {"two_identical_pages", "ten_identical_pages", "max_page_sharing_two",
            "zero_pages_to_zero_page"} <= set(SCENARIOS)


@pytest.mark.parametrize("path", sorted(TRACES.glob("*.json")), ids=lambda p: p.stem)
def test_recorded_kernel_traces_match_their_scenarios(path):
    """The JSON traces document what Linux did; they must still describe the
    scenario of the same name step by step."""
    doc = json.loads(path.read_text())
    scenario = Scenario.from_dict(doc["scenario"])
    if scenario.name in SCENARIOS:
        assert SCENARIOS[scenario.name] == scenario, "built-in scenario changed: re-record"
    snaps = doc["snapshots"]
    assert [s["op"] for s in snaps] == [st.describe() for st in scenario.steps]
    for s in snaps:
        assert list(s["counters"]) == list(COUNTERS)


def test_recorded_facts_of_linux_6_18():
    """Headline numbers from the traces (cf. research/ksm-kernel.md §2.11, §6.1)."""
    def last(name):
        return json.loads((TRACES / f"{name}.json").read_text())["snapshots"][-1]["counters"]
    assert (last("two_identical_pages")["pages_shared"], last("two_identical_pages")["pages_sharing"]) == (1, 1)
    assert (last("ten_identical_pages")["pages_shared"], last("ten_identical_pages")["pages_sharing"]) == (1, 9)
    c = last("max_page_sharing_two")
    assert (c["pages_shared"], c["pages_sharing"], c["pages_unshared"],
            c["stable_node_chains"], c["stable_node_dups"]) == (2, 2, 1, 1, 2)
    c = last("zero_pages_to_zero_page")
    assert (c["pages_shared"], c["pages_sharing"], c["ksm_zero_pages"]) == (0, 0, 10)


def test_hugepage_steps_accept_regions_that_hold_a_thp_and_thp_stat_observes_it():
    from ksmbook.oracle.scenario import Scenario, fill, hugepage, mmap, spawn, thp_stat
    sc = Scenario("thp_big", "", [spawn("a"), mmap("a", "r", 512), hugepage("a", "r", 0, 512),
                                  fill("a", "r", 0, 512, 1), thp_stat()])
    from ksmbook.oracle.scenario import run_in_simulator
    last = run_in_simulator(sc)[-1]
    assert last["thp"]["AnonHugePages"] == {"a": 2048}
    assert last["thp"]["vmstat"]["thp_fault_alloc"] == 1
    assert "thp" not in run_in_simulator(sc)[-2]     # only thp_stat steps observe THPs


def test_madv_hugepage_sets_the_vma_flag_and_splits_the_vma():
    import ksmbook
    m = ksmbook.Machine()
    p = m.spawn()
    addr = p.mmap(8 * 4096)
    p.madvise(addr + 4096, 2 * 4096, ksmbook.MADV_HUGEPAGE)
    vmas = p.mm.vmas
    assert [bool(v.flags & v.VM_HUGEPAGE) for v in vmas] == [False, True, False]
    p.madvise(addr, 8 * 4096, ksmbook.MADV_NOHUGEPAGE)
    assert all(v.flags & v.VM_NOHUGEPAGE and not v.flags & v.VM_HUGEPAGE for v in p.mm.vmas)
