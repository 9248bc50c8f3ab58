"""handle_mm_fault and friends: which handler runs, what it maps, what it reports, and
the set_pte_at_notify call sites of the seed commit in each notifier era."""
import pytest

from ksmbook import MADV_MERGEABLE, PROT_NONE, PROT_READ, Machine
from ksmbook.kernel.events import Fault, NotifierCall, PageAlloc, PageFree, PteChange
from ksmbook.kernel.fault import is_ksm_zero_pte
from ksmbook.kernel.memory import PG_anon_exclusive, PG_ksm
from ksmbook.kernel.mmu_notifier import MmuNotifier
from ksmbook.kernel.pagetable import (_PAGE_DIRTY, _PAGE_PROTNONE, mk_pte, pte_pfn, pte_write)

from machine_checks import check_page_counts

PS = 256


def faults(events):
    return [(e.access, e.handler) for e in events if isinstance(e, Fault)]


def test_read_then_write_fault_sequence():
    m = Machine(page_size=PS)
    p = m.spawn("p")
    a = p.mmap(PS)
    with m.events.capture() as ev:
        p.read(a, 1)
    assert faults(ev) == [("read", "do_anonymous_page")]
    assert [e.outcome for e in ev if isinstance(e, Fault)] == ["zero_page"]
    assert not [e for e in ev if isinstance(e, PageAlloc) and e.purpose == "anon"]
    with m.events.capture() as ev:
        p.write(a, b"x")
    # the zero page is read-only: the write goes to do_wp_page and copies (from nothing)
    assert faults(ev) == [("write", "wp_page_copy")]
    assert [e.purpose for e in ev if isinstance(e, PageAlloc)] == ["anon"]
    assert not [e for e in ev if isinstance(e, PageFree)], "the zero page is never freed"
    with m.events.capture() as ev:
        p.write(a, b"y")
        p.read(a, 1)
    assert faults(ev) == [], "a writable, dirty, accessed PTE is a TLB hit"


def test_first_write_is_do_anonymous_page_with_a_dirty_writable_pte():
    m = Machine(page_size=PS)
    p = m.spawn("p")
    a = p.mmap(PS)
    with m.events.capture() as ev:
        p.write(a, b"x")
    assert faults(ev) == [("write", "do_anonymous_page")]
    sites = [e.site for e in ev if isinstance(e, PteChange)]
    assert sites == ["do_anonymous_page"]
    pte = p.mm.pagetables.get_pte(a)
    assert pte_write(pte) and pte & _PAGE_DIRTY


def test_reuse_and_copy_are_decided_by_exclusivity():
    m = Machine(page_size=PS)
    p = m.spawn("p")
    a = p.mmap(PS)
    p.write(a, b"x")
    page = m.memory.pages[pte_pfn(p.mm.pagetables.get_pte(a))]
    assert page.flags & PG_anon_exclusive
    p.mprotect(a, PS, PROT_READ)
    p.mprotect(a, PS, PROT_READ | 2)
    with m.events.capture() as ev:
        p.write(a, b"y")
    assert faults(ev) == [("write", "wp_page_reuse")], "exclusive: reused in place"
    c = p.fork()
    with m.events.capture() as ev:
        c.write(a, b"c")
    assert faults(ev) == [("write", "wp_page_copy")]
    with m.events.capture() as ev:
        p.write(a, b"p")
    # not flagged exclusive any more, but refcount == mapcount == 1: still reused
    assert faults(ev) == [("write", "wp_page_reuse")]
    check_page_counts(m)


def merged_pair(kernel):
    """Two identical pages of one process, merged into one KSM page (two full scans)."""
    m = Machine(kernel=kernel, page_size=PS)
    p = m.spawn("p")
    a = p.mmap(2 * PS)
    p.write(a, b"k" * (2 * PS))
    p.madvise(a, 2 * PS, MADV_MERGEABLE)
    m.sysfs.write("/sys/kernel/mm/ksm/run", "1")
    m.ksmd.run_full_scans(2)
    kpfn = pte_pfn(p.mm.pagetables.get_pte(a))
    assert m.memory.pages[kpfn].flags & PG_ksm
    return m, p, a, kpfn


def test_ksm_pages_are_copied_even_with_a_single_mapper():
    # wp_can_reuse_anon_folio() refuses KSM folios outright in 6.x
    m, p, a, kpfn = merged_pair("6.18")
    p.write(a, b"1")
    assert m.memory.pages[kpfn].mapcount == 1, "one mapper left"
    with m.events.capture() as ev:
        p.write(a + PS, b"2")
    assert faults(ev) == [("write", "wp_page_copy")]
    assert kpfn not in m.memory.pages, "the last mapper copied: the KSM page is freed"
    assert m.procfs.read("/proc/vmstat").splitlines()[-1] == "cow_ksm 2"
    check_page_counts(m)


def test_ksm_page_reused_by_a_single_mapper_in_5_1_to_5_8():
    m, p, a, kpfn = merged_pair("5.4")
    p.write(a, b"1")
    p.write(a + PS, b"2")
    assert pte_pfn(p.mm.pagetables.get_pte(a + PS)) == kpfn, "reuse_ksm_page() kept it"
    assert not m.memory.pages[kpfn].flags & PG_ksm
    assert p.read(a, 1) + p.read(a + PS, 1) == b"12"


def test_prot_none_ptes_fault_as_segv_but_stay_mapped():
    m = Machine(page_size=PS)
    p = m.spawn("p")
    a = p.mmap(PS)
    p.write(a, b"x")
    p.mprotect(a, PS, PROT_NONE)
    pte = p.mm.pagetables.get_pte(a)
    assert pte & _PAGE_PROTNONE and not pte & 1
    assert m.memory.pages[pte_pfn(pte)].mapcount == 1


def test_is_ksm_zero_pte_needs_the_dirty_bit():
    assert is_ksm_zero_pte(mk_pte(0, False, dirty=True, special=True))
    assert not is_ksm_zero_pte(mk_pte(0, False, special=True)), "a read fault's zero PTE"
    assert not is_ksm_zero_pte(mk_pte(3, False, dirty=True, special=True))


# --- the seed commit's call sites, era by era -----------------------------------------

class Recorder(MmuNotifier):
    """A secondary MMU that records the ops it receives."""

    def __init__(self, log, with_change_pte=True):
        self.log = log
        self.with_change_pte = with_change_pte

    def invalidate_range_start(self, mm, start, end, event):
        self.log.append("start")

    def invalidate_range_end(self, mm, start, end, event):
        self.log.append("end")

    def invalidate_page(self, mm, address):
        self.log.append("invalidate_page")

    def change_pte(self, mm, address, pte):
        # the PTE the secondary MMU sees when told: set already (seed) or not yet
        self.log.append(("change_pte", mm.pagetables.get_pte(address) == pte))


class NoChangePte(Recorder):
    change_pte = MmuNotifier.change_pte         # a NULL op


def cow_ops(kernel, cls=Recorder):
    m = Machine(kernel=kernel, page_size=PS)
    p = m.spawn("p")
    a = p.mmap(PS)
    p.write(a, b"x")
    c = p.fork()
    log = []
    c.mm.notifiers.register(cls(log))
    c.write(a, b"y")
    return log


def test_cow_in_the_seed_era_sets_the_pte_then_calls_change_pte():
    assert cow_ops("2.6.32") == [("change_pte", True)]


def test_cow_in_the_seed_era_falls_back_to_invalidate_page():
    assert cow_ops("2.6.32", NoChangePte) == ["invalidate_page"]


def test_cow_from_3_7_is_bracketed_and_notifies_before_setting():
    # 6bdb913f0a70 is dated 2012-10-09, after v3.6 shipped: 3.6 is still the seed's way
    assert cow_ops("3.6") == [("change_pte", True)]
    assert cow_ops("3.7") == ["start", ("change_pte", False), "end"]
    assert cow_ops("6.9") == ["start", ("change_pte", False), "end"]
    assert cow_ops("3.7", NoChangePte) == ["start", "end"], "no fallback after 3.6"


def test_cow_from_6_10_has_no_change_pte():
    assert cow_ops("6.10") == ["start", "end"]
    assert cow_ops("6.18") == ["start", "end"]


@pytest.mark.parametrize("kernel,expected", [
    ("2.6.32", [("change_pte", True)] * 2),
    ("6.9", ["start", ("change_pte", False), "end"] * 2),
    ("6.18", ["start", "end"] * 2),
])
def test_ksm_write_protect_and_replace_are_call_sites_too(kernel, expected):
    m = Machine(kernel=kernel, page_size=PS)
    p = m.spawn("p")
    a = p.mmap(2 * PS)
    p.write(a, b"k" * (2 * PS))
    p.madvise(a, 2 * PS, MADV_MERGEABLE)
    log = []
    p.mm.notifiers.register(Recorder(log))
    m.sysfs.write("/sys/kernel/mm/ksm/run", "1")
    m.ksmd.run_full_scans(1)
    assert log == []
    with m.events.capture() as ev:
        m.ksmd.run_full_scans(1)
    # the scanned page p1 is write-protected in place (write_protect_page); the
    # tree page p0 is write-protected and then replaced by p1 (write_protect_page,
    # replace_page).  Only write_protect_page of p1... every call site notifies.
    sites = [e.site for e in ev if isinstance(e, NotifierCall)]
    assert set(sites) <= {"write_protect_page", "replace_page"}
    assert log[:len(expected)] == expected
