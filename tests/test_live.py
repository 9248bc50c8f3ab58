"""The live runner on the real kernel: the scan protocol and its hygiene.

Runs only as root on a Linux with KSM and a C compiler; otherwise every test
here is skipped with the reason (pytest -ra prints it).
"""
import json
import os
import time
from pathlib import Path

import pytest

import ksmbook.oracle.workloads  # noqa: F401
from ksmbook.oracle import live
from ksmbook.oracle.scenario import (SCENARIOS, Scenario, diff_traces, fill, madvise, mmap,
                              prctl_merge, scans, spawn, unique)

OK, WHY = live.available()
needs_live = pytest.mark.skipif(not OK, reason=f"live KSM runner unavailable: {WHY}")
TRACES = Path(__file__).parent / "data" / "kernel_traces"
KNOBS = ("run", "pages_to_scan", "sleep_millisecs", *live.DEFAULT_TUNABLES)


def knob_state():
    return {k: live.read_knob(k) for k in KNOBS if (live.KSM_DIR / k).exists()}


def test_available_explains_why_not(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert live.available() == (False, "needs root (KSM knobs in /sys/kernel/mm/ksm are root-only)")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(live, "_compiler", lambda: None)
    if (live.KSM_DIR / "run").exists():
        ok, why = live.available()
        assert not ok and "no C compiler" in why
    with pytest.raises(live.LiveUnavailable, match="no C compiler"):
        live.worker_binary()


class Watched(live.LiveRun):
    """Records full_scans around every scans step, and re-reads the counters
    after a pause: they must not move once the runner says a scan ended."""

    def __init__(self, scenario):
        super().__init__(scenario)
        self.observed = []

    def do_scans(self, s):
        before = live.full_scans()
        super().do_scans(s)
        first = {k: live.read_knob(k) for k in ("full_scans", "pages_scanned", "pages_volatile",
                                                "pages_unshared", "pages_sharing")}
        time.sleep(0.2)
        second = {k: live.read_knob(k) for k in first}
        self.observed.append((s.n, before, int(first["full_scans"]), first == second))


@pytest.mark.kernel_oracle
@needs_live
def test_each_scans_step_is_exactly_n_full_scans_and_then_still():
    steps = [spawn("p"), mmap("p", "a", 48), unique("p", "a", 0, 24, 5),
             fill("p", "a", 24, 24, 0x11), madvise("p", "a", 0, 48, "MADV_MERGEABLE")]
    steps += [scans(1)] * 4 + [scans(5), scans(2)]
    before = knob_state()
    run = Watched(Scenario("protocol", "", steps))
    snaps = run.run()
    for n, start, end, still in run.observed:
        assert end - start == n
        assert still, "counters moved after the scan step ended"
    assert [s["counters"]["full_scans"] for s in snaps[5:]] == [1, 2, 3, 4, 9, 11]
    assert knob_state() == before, "a KSM knob was not restored"


@pytest.mark.kernel_oracle
@needs_live
def test_prctl_worker_offers_no_memory_of_its_own():
    # q keeps ksmd's mm list non-empty, so both scans really happen.
    steps = [spawn("q"), mmap("q", "r", 3), fill("q", "r", 0, 3, 1),
             madvise("q", "r", 0, 3, "MADV_MERGEABLE"), spawn("p"), prctl_merge("p", 1),
             scans(1), scans(1)]
    snaps = live.run_live(Scenario("prctl_idle", "", steps))
    assert [s["counters"]["full_scans"] for s in snaps[-2:]] == [1, 2]
    for s in snaps[-2:]:
        assert s["ksm_stat"]["p"]["ksm_rmap_items"] == 0
        assert s["ksm_stat"]["p"]["ksm_merge_any"] == "yes"
        assert s["ksm_stat"]["q"]["ksm_rmap_items"] == 3


@pytest.mark.kernel_oracle
@needs_live
def test_ksmd_cannot_scan_an_empty_mm_list():
    snaps = live.run_live(Scenario("prctl_alone", "", [spawn("p"), prctl_merge("p", 1),
                                                      scans(1), scans(1)]))
    # p's only mm had no mergeable VMA: ksmd dropped its slot during the first
    # scan, so with an empty mm list the second scans(1) cannot scan at all.
    assert [s["counters"]["full_scans"] for s in snaps[2:]] == [1, 1]
    assert snaps[-1]["ksm_stat"]["p"]["ksm_rmap_items"] == 0


@pytest.mark.kernel_oracle
@needs_live
def test_refuses_while_another_process_uses_ksm():
    w = live.Worker.spawn("intruder", live.worker_binary())
    try:
        addr = w.command(f"mmap {4096} 0")
        w.command(f"madvise {addr} 4096 12")
        with pytest.raises(live.KsmBusy, match="other processes use KSM"):
            live.run_live(SCENARIOS["two_identical_pages"])
    finally:
        w.kill()


@pytest.mark.kernel_oracle
@needs_live
@pytest.mark.skipif(not os.uname().release.startswith("6.18"),
                    reason="the recorded traces are Linux 6.18's")
@pytest.mark.parametrize("path", sorted(TRACES.glob("*.json")), ids=lambda p: p.stem)
def test_kernel_still_does_what_was_recorded(path):
    doc = json.loads(path.read_text())
    scenario = Scenario.from_dict(doc["scenario"])
    diffs = diff_traces(doc["snapshots"], live.run_live(scenario))
    assert not diffs, "\n".join(map(str, diffs))


@pytest.mark.kernel_oracle
@needs_live
def test_chapter_09_live_compare_agrees():
    """What chapter 09's live app shows when a reader presses its button (moved here from
    the notebook, so Run All never touches the host's KSM): the kernel agrees with the
    simulator on ten_identical_pages and on both chain-prune clock settings."""
    from ksmbook.oracle import sidebyside as sb
    from ksmbook.viz import compare as vc
    from ksmbook.widgets.live import LiveCompare

    mine = LiveCompare("ten_identical_pages")
    for _ in range(20):                 # KSM is global: wait while another process uses it
        if mine.run() or not mine.busy:
            break
        time.sleep(15)
    if mine.busy:
        pytest.skip(f"KSM stayed busy: {mine.state()}")
    assert mine.kernel_trace is not None, mine.state()
    assert not mine.comparison().diffs, vc.compare_table(mine.comparison())
    for ms in (0, 2000):
        check = LiveCompare(f"chain_prune_{ms}ms", extra=[sb.chain_prune_scenario(ms)])
        assert check.run(), check.state()
        assert not check.comparison().diffs, vc.compare_table(check.comparison())
