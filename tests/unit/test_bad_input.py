"""Bad input and long runs (issue 14): arguments checked at the boundary, out-of-memory
paths that change nothing or fail as Linux does, and long simulated time that is fast
and exact (m.advance(1e9) with run=1 used to simulate 5·10^7 wake-ups one by one)."""
import os
import sys
import time

import pytest

from ksmbook import MADV_MERGEABLE, MADV_UNMERGEABLE, Machine
from ksmbook.kernel.ksm import ksmd as ksmd_mod

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from machine_checks import check_page_counts  # noqa: E402


def merged_then_full(pages: int, pages_per_node: int, *, room: int = 0):
    """``pages`` equal pages merged by two full scans, then every free frame taken by a
    hog, and ``room`` frames given back: the state an unmerge runs out of memory in."""
    m = Machine(pages_per_node=pages_per_node)
    p = m.spawn("a")
    a = p.mmap(pages * 4096)
    p.write(a, b"u" * pages * 4096)
    p.madvise(a, pages * 4096, MADV_MERGEABLE)
    m.sysfs.write("/sys/kernel/mm/ksm/run", "1")
    m.ksmd.run_full_scans(2)
    assert m.ksm.stats()["pages_sharing"] == pages - 1
    hog = m.spawn("hog")
    b = hog.mmap(pages_per_node * 4096)
    with pytest.raises(OSError):
        for i in range(pages_per_node):
            hog.write(b + i * 4096, b"h")
    if room:
        hog.munmap(b, room * 4096)
    return m, p, a


def idle_machine(**kw):
    m = Machine(**kw)
    p = m.spawn("idle")
    a = p.mmap(16 * 4096)
    p.madvise(a, 16 * 4096, MADV_MERGEABLE)        # registered, but no page faulted in
    m.sysfs.write("/sys/kernel/mm/ksm/run", "1")
    return m, p, a


def state(m):
    k = m.ksm
    return (m.clock_ns, k.ksm_scan.seqnr, k.ksmd_cpu_ns, m.ksmd.next_wake_ns, k.stats())


@pytest.mark.parametrize("ms", [0.001, 19, 20, 20.0055, 41, 333.3])
@pytest.mark.parametrize("sleep", ["20", "0", "7"])
def test_skipping_empty_wakeups_gives_what_one_by_one_gives(monkeypatch, ms, sleep):
    fast, _p, _a = idle_machine()
    slow, _q, _b = idle_machine()
    for m in (fast, slow):
        m.sysfs.write("/sys/kernel/mm/ksm/sleep_millisecs", sleep)
    monkeypatch.setattr(ksmd_mod.Ksmd, "_idle_is_periodic", lambda self, *a: self is fast.ksmd)
    fast.advance(ms)
    slow.advance(ms)
    assert state(fast) == state(slow)


def advisor_state(m):
    k = m.ksm
    return state(m) + (k.pages_to_scan, dict(k.advisor_ctx))


@pytest.mark.parametrize("ms", [30, 250, 1000, 3000])
def test_with_the_scan_time_advisor_skipping_is_exact_too(monkeypatch, ms):
    """scan_time_advisor() runs at every scan end; once its carried state stops changing
    (pages_to_scan at advisor_max_pages_to_scan, the EWMA at its fixed point), empty
    wake-ups repeat exactly and are skipped, clock readings included."""
    fast, _p, _a = idle_machine()
    slow, _q, _b = idle_machine()
    for m in (fast, slow):
        m.sysfs.write("/sys/kernel/mm/ksm/advisor_mode", "scan-time")
    real = ksmd_mod.Ksmd._idle_is_periodic
    monkeypatch.setattr(ksmd_mod.Ksmd, "_idle_is_periodic",
                        lambda self, *a: self is fast.ksmd and real(self, *a))
    skipped = []
    orig = ksmd_mod.Ksmd._skip_empty_wakeups
    monkeypatch.setattr(ksmd_mod.Ksmd, "_skip_empty_wakeups",
                        lambda self, *a: (skipped.append(1), orig(self, *a)))
    fast.advance(ms)
    slow.advance(ms)
    assert advisor_state(fast) == advisor_state(slow)
    if ms >= 1000:
        assert skipped, "the advisor reached its fixed point, so wake-ups were skipped"
    # and afterwards both machines go on alike when pages arrive
    for m, p, a in ((fast, _p, _a), (slow, _q, _b)):
        p.write(a, b"z" * 3 * 4096)
        m.advance(500)
    assert advisor_state(fast) == advisor_state(slow)


def test_a_billion_milliseconds_return_at_once_and_count_every_scan():
    m, p, a = idle_machine(events=True)
    started = time.process_time()
    m.advance(1e9)
    assert time.process_time() - started < 1.0
    period = ksmd_mod.SCAN_COST_NS + 20 * 1_000_000
    assert m.ksm.stats()["full_scans"] == pytest.approx(1e15 / period, abs=2)
    assert m.clock_ns == 10**15
    assert len(m.events.history) < 20          # one summary event, not 10^8
    # and the machine still works afterwards: pages written now merge
    p.write(a, b"x" * 4096)
    p.write(a + 4096, b"x" * 4096)
    m.ksmd.run_full_scans(2)
    assert m.ksm.stats()["pages_sharing"] == 1


def test_wakeups_with_pages_are_never_skipped():
    m, p, a = idle_machine()
    p.write(a, b"y" * 4096)                      # one page: every scan processes it
    m.sysfs.write("/sys/kernel/mm/ksm/smart_scan", "0")
    m.advance(2000)
    assert m.ksm.stats()["pages_scanned"] == m.ksm.stats()["full_scans"]


def test_a_long_idle_run_with_the_advisor_is_fast():
    m, _p, _a = idle_machine()
    m.sysfs.write("/sys/kernel/mm/ksm/advisor_mode", "scan-time")
    assert not m.ksmd._idle_is_periodic()          # not before its state has settled
    started = time.process_time()
    m.advance(1e9)
    assert time.process_time() - started < 1.0
    assert m.ksm.pages_to_scan == 30000 and m.clock_ns == 10**15


def test_run_2_out_of_memory_stops_ksmd_as_run_store_does():
    """mm/ksm.c run_store(): an unmerge that fails sets ksm_run = KSM_RUN_STOP and returns
    the error; unmerge_and_remove_all_rmap_items() puts the cursor back on ksm_mm_head."""
    m, _p, _a = merged_then_full(4, 12)
    with pytest.raises(OSError) as exc:
        m.sysfs.write("/sys/kernel/mm/ksm/run", "2")
    assert exc.value.errno == 12
    assert m.sysfs.read("/sys/kernel/mm/ksm/run").strip() == "0"
    assert m.ksm.ksm_scan.mm_slot is m.ksm.ksm_mm_head
    check_page_counts(m)


# --- arguments checked at the boundary (issue 14) -------------------------------------

@pytest.mark.parametrize("kw,exc,words", [
    (dict(pages_per_node="x"), TypeError, "pages_per_node must be an int or None"),
    (dict(pages_per_node=1.5), TypeError, "pages_per_node"),
    (dict(pages_per_node=-1), ValueError, "pages_per_node must be >= 0"),
    (dict(numa_nodes=True), TypeError, "numa_nodes must be an int"),
    (dict(events=1), TypeError, "events must be True or False"),
    (dict(kernel=6.1), TypeError, "kernel must be a string"),
    (dict(kernel="4.99"), ValueError, "not a Linux release"),
    (dict(kernel="6.-1"), ValueError, "not a kernel version"),
    (dict(kernel="6.19"), ValueError, "2.6.32..6.18"),
    (dict(kernel="2.6.31"), ValueError, "2.6.32..6.18"),
    (dict(kernel="3.20"), ValueError, "not a Linux release"),
])
def test_bad_machine_arguments_are_refused_naming_the_argument(kw, exc, words):
    with pytest.raises(exc, match=words):
        Machine(**kw)


def test_the_version_error_lists_the_eras():
    with pytest.raises(ValueError) as info:
        Machine(kernel="4.99")
    assert "2.6.32, 2.6.37" in str(info.value) and "6.18" in str(info.value)


@pytest.mark.parametrize("version", ["2.6.32", "2.6.39", "3.0", "3.19", "4.20", "5.19", "6.0",
                                     "6.18", "6.18.44", "2.6.32.61", " 6.10 "])
def test_released_versions_are_accepted(version):
    assert Machine(kernel=version).kernel == version.strip()


@pytest.mark.parametrize("kw,exc", [(dict(node="0"), TypeError), (dict(node=None), TypeError),
                                    (dict(node=0.0), TypeError), (dict(node=True), TypeError),
                                    (dict(node=2), ValueError), (dict(name=3), TypeError)])
def test_bad_spawn_arguments_change_nothing(kw, exc):
    m = Machine(numa_nodes=2)
    before = (m._next_pid, dict(m.processes), len(m.memory.pages))
    with pytest.raises(exc):
        m.spawn(**kw)
    assert (m._next_pid, dict(m.processes), len(m.memory.pages)) == before


def test_spawn_out_of_memory_uses_up_no_pid():
    m = Machine(pages_per_node=2)           # the zero page and one page-global directory
    first = m.spawn("a")
    with pytest.raises(OSError) as info:
        m.spawn("b")
    assert info.value.errno == 12 and len(m.processes) == 1
    first.exit()
    assert m.spawn("c").pid == first.pid + 1


def test_madv_unmergeable_out_of_memory_stops_where_break_ksm_failed():
    """ksm_madvise() -> unmerge_ksm_pages(): break_ksm() copies page by page; the first
    copy that finds no frame returns ENOMEM, the VMA keeps VM_MERGEABLE, and the pages
    already broken stay private.  Counters still equal a recount."""
    m, p, a = merged_then_full(6, 14, room=2)      # room for exactly two copies
    with pytest.raises(OSError) as info:
        p.madvise(a, 6 * 4096, MADV_UNMERGEABLE)
    assert info.value.errno == 12
    vma = p.mm.find_vma(a)
    assert vma.flags & vma.VM_MERGEABLE
    from ksmbook.kernel.pagetable import pte_pfn
    private = sum(not m.memory.pfn_to_page(pte_pfn(p.mm.pagetables.get_pte(a + i * 4096))).is_ksm
                  for i in range(6))
    assert private == 2
    check_page_counts(m)
