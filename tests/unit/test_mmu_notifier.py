"""MMU-notifier dispatch, per era: which op fires, from which call site, under which rule.

Kernel facts these tests pin down (see ksmbook/kernel/mmu_notifier.py for the sources):
2.6.32-3.6 set_pte_at_notify sets the PTE then calls change_pte, unbracketed, with an
invalidate_page fallback and no invalidate_page for the old page after a COW; 3.7
(6bdb913f0a70) brackets every site and notifies first; 4.13 removes invalidate_page;
6.10 removes change_pte.  munmap, MADV_DONTNEED, fork and exit notify in every era.
"""
import pytest

from ksmbook import MADV_DONTNEED, MADV_MERGEABLE, Machine
from ksmbook.kernel.events import NotifierCall
from ksmbook.kernel.mmu_notifier import MmuNotifier
from ksmbook.kernel.pagetable import pte_pfn, pte_write
from ksmbook.viz.events import rule_text

PS = 256


class Recorder(MmuNotifier):
    """Implements every op and logs (op, start, end, extra) tuples."""

    def __init__(self, log):
        self.log = log

    def release(self, mm):
        self.log.append(("release",))

    def clear_flush_young(self, mm, start, end):
        self.log.append(("clear_flush_young", start, end))
        return True

    def clear_young(self, mm, start, end):
        self.log.append(("clear_young", start, end))
        return False

    def test_young(self, mm, address):
        self.log.append(("test_young", address))
        return True

    def change_pte(self, mm, address, pte):
        self.log.append(("change_pte", address, pte_write(pte)))

    def invalidate_page(self, mm, address):
        self.log.append(("invalidate_page", address))

    def invalidate_range_start(self, mm, start, end, event):
        self.log.append(("start", start, end))

    def invalidate_range_end(self, mm, start, end, event):
        self.log.append(("end", start, end))

    def invalidate_range(self, mm, start, end):
        self.log.append(("invalidate_range", start, end))

    def arch_invalidate_secondary_tlbs(self, mm, start, end):
        self.log.append(("arch_invalidate_secondary_tlbs", start, end))


class RangeOnly(MmuNotifier):
    """Like most drivers: only the range callbacks."""

    def __init__(self, log):
        self.log = log

    def invalidate_range_start(self, mm, start, end, event):
        self.log.append("start")

    def invalidate_range_end(self, mm, start, end, event):
        self.log.append("end")


def ops(log):
    return [entry[0] for entry in log]


def cow_after_fork(kernel, cls=Recorder):
    m = Machine(kernel=kernel, page_size=PS)
    p = m.spawn("p")
    a = p.mmap(PS)
    p.write(a, b"x")
    p.fork()
    log = []
    p.mm.notifiers.register(cls(log))
    with m.events.capture() as ev:
        p.write(a, b"y")
    return log, ev, a


def test_seed_era_cow_calls_change_pte_only_no_invalidate_page_for_the_old_page():
    # 2.6.32 do_wp_page: ptep_clear_flush (no notifier), set_pte_at_notify; the
    # "cow happened, notify before releasing old_page" invalidate_page only existed
    # inside the 2012 series that replaced it with the bracket
    log, ev, a = cow_after_fork("2.6.32")
    assert log == [("change_pte", a, True)]
    assert [e.op for e in ev if isinstance(e, NotifierCall)] == ["change_pte"]


@pytest.mark.parametrize("kernel", ["2.6.32", "3.6"])
def test_seed_era_falls_back_to_invalidate_page_for_notifiers_without_change_pte(kernel):
    class NoChangePte(Recorder):
        change_pte = MmuNotifier.change_pte
    log, ev, a = cow_after_fork(kernel, NoChangePte)
    assert log == [("invalidate_page", a)]
    (call,) = [e for e in ev if isinstance(e, NotifierCall)]
    assert call.site == "wp_page_copy" and "invalidate_page" in rule_text(call.rule)


@pytest.mark.parametrize("kernel,expected", [
    ("3.7", ["start", "change_pte", "end"]),
    ("4.12", ["start", "change_pte", "end"]),
    ("6.9", ["start", "change_pte", "end"]),
    ("6.10", ["start", "end"]),
    ("6.18", ["start", "end"]),
])
def test_cow_is_bracketed_from_3_7(kernel, expected):
    log, ev, a = cow_after_fork(kernel)
    # invalidate_range / arch_invalidate_secondary_tlbs fire from the TLB flush
    assert [o for o in ops(log) if "invalidate_range" != o and "secondary" not in o] == expected
    assert ("start", a, a + PS) in log and ("end", a, a + PS) in log


def test_no_fallback_and_no_invalidate_page_after_the_bracket():
    class NoChangePte(Recorder):
        change_pte = MmuNotifier.change_pte
    for kernel in ("3.7", "4.12", "4.13", "6.18"):
        log, _, _ = cow_after_fork(kernel, NoChangePte)
        assert "invalidate_page" not in ops(log), kernel


@pytest.mark.parametrize("kernel,rule_words", [
    ("2.6.32", "2.6.32-3.6"), ("3.7", "3.7-6.9"), ("6.18", "6.10+")])
def test_every_notifier_event_names_op_range_site_and_era_rule(kernel, rule_words):
    m = Machine(kernel=kernel, page_size=PS)
    p = m.spawn("p")
    a = p.mmap(2 * PS)
    p.write(a, b"k" * (2 * PS))
    p.madvise(a, 2 * PS, MADV_MERGEABLE)
    p.mm.notifiers.register(Recorder([]))
    m.sysfs.write("/sys/kernel/mm/ksm/run", "1")
    with m.events.capture() as ev:
        m.ksmd.run_full_scans(2)
    calls = [e for e in ev if isinstance(e, NotifierCall)]
    assert calls, "KSM merging notifies"
    for c in calls:
        assert c.site in ("write_protect_page", "replace_page")
        assert a <= c.start < c.end <= a + 2 * PS and c.end - c.start == PS
        assert c.pid == p.pid
        if c.op in ("invalidate_range", "arch_invalidate_secondary_tlbs"):
            assert rule_text(c.rule).startswith(("3.19-6.5", "6.6+")), c.rule
        else:
            assert rule_text(c.rule).startswith(rule_words), c.rule


def test_ksm_restore_path_notified_until_robin_holts_fix():
    """2.6.32 write_protect_page() restored a pinned page's PTE with set_pte_at_notify
    (change_pte with a writable PTE: KVM zapped its spte); from 2.6.35 set_pte_at."""
    def restore_log(kernel):
        m = Machine(kernel=kernel, page_size=PS)
        p = m.spawn("p")
        a = p.mmap(2 * PS)
        p.write(a, b"k" * (2 * PS))
        for addr in (a, a + PS):               # a GUP pin: refcount above mapcount
            m.memory.pfn_to_page(pte_pfn(p.mm.pagetables.get_pte(addr))).refcount += 1
        p.madvise(a, 2 * PS, MADV_MERGEABLE)
        log = []
        p.mm.notifiers.register(Recorder(log))
        m.sysfs.write("/sys/kernel/mm/ksm/run", "1")
        m.ksmd.run_full_scans(3)
        assert m.ksm.ksm_pages_sharing == 0, "pinned pages never merge"
        return log
    assert restore_log("2.6.32") and set(ops(restore_log("2.6.32"))) == {"change_pte"}
    assert all(w for _, _, w in restore_log("2.6.32")), "the restored PTE is writable"
    assert restore_log("2.6.35") == []


@pytest.mark.parametrize("kernel", ["2.6.32", "3.7", "6.18"])
def test_munmap_dontneed_fork_and_exit_notify_in_every_era(kernel):
    m = Machine(kernel=kernel, page_size=PS)
    p = m.spawn("p")
    a = p.mmap(4 * PS)
    p.write(a, b"z" * (4 * PS))
    log = []
    p.mm.notifiers.register(RangeOnly(log))
    rec = []
    p.mm.notifiers.register(Recorder(rec))
    p.madvise(a, PS, MADV_DONTNEED)
    assert rec[-2:] == [("start", a, a + PS), ("end", a, a + PS)]
    p.munmap(a + 3 * PS, PS)
    assert rec[-2:] == [("start", a + 3 * PS, a + 4 * PS), ("end", a + 3 * PS, a + 4 * PS)]
    p.fork()
    assert rec[-2:] == [("start", a, a + 3 * PS), ("end", a, a + 3 * PS)]
    n = len(rec)
    p.exit()
    assert rec[n:] == [("release",)], "exit_mmap's unmap reaches nobody after release"
    assert p.mm.notifiers.list == []
    assert log == ["start", "end"] * 3


def test_unmapping_an_untouched_range_still_notifies_as_the_kernel_does():
    m = Machine(page_size=PS)
    p = m.spawn("p")
    a = p.mmap(2 * PS)
    rec = []
    p.mm.notifiers.register(Recorder(rec))
    p.munmap(a, 2 * PS)
    assert rec == [("start", a, a + 2 * PS), ("end", a, a + 2 * PS)]


def test_fork_brackets_a_cow_vma_whose_pages_were_all_dropped():
    m = Machine(page_size=PS)
    p = m.spawn("p")
    a = p.mmap(PS)
    p.write(a, b"x")
    p.madvise(a, PS, MADV_DONTNEED)          # anon_vma stays, no PTE left
    rec = []
    p.mm.notifiers.register(Recorder(rec))
    p.fork()
    assert rec == [("start", a, a + PS), ("end", a, a + PS)]


def test_unregister_runs_release_once():
    m = Machine(page_size=PS)
    p = m.spawn("p")
    rec = []
    n = Recorder(rec)
    p.mm.notifiers.register(n)
    p.mm.notifiers.unregister(n)
    p.mm.notifiers.unregister(n)
    assert rec == [("release",)]


@pytest.mark.parametrize("kernel,clear_young,test_young", [
    ("2.6.32", False, False), ("2.6.38", False, True), ("4.3", True, True)])
def test_aging_ops_exist_from_their_release(kernel, clear_young, test_young):
    m = Machine(kernel=kernel, page_size=PS)
    p = m.spawn("p")
    rec = []
    p.mm.notifiers.register(Recorder(rec))
    nf = p.mm.notifiers
    assert nf.clear_flush_young(0, PS) is True
    nf.clear_young(0, PS)
    assert nf.test_young(0) is test_young
    assert ("clear_young", 0, PS) in rec if clear_young else ("clear_young", 0, PS) not in rec
    assert [o for o in ops(rec) if o == "test_young"] == (["test_young"] if test_young else [])


@pytest.mark.parametrize("kernel,op", [
    ("3.18", None), ("3.19", "invalidate_range"), ("6.5", "invalidate_range"),
    ("6.6", "arch_invalidate_secondary_tlbs"), ("6.18", "arch_invalidate_secondary_tlbs")])
def test_hardware_tlb_hook_fires_with_the_cpu_flush(kernel, op):
    log, _, a = cow_after_fork(kernel)
    hooks = [e for e in log if e[0] in ("invalidate_range", "arch_invalidate_secondary_tlbs")]
    assert hooks == ([] if op is None else [(op, a, a + PS)])


def test_set_pte_at_notify_order_per_era():
    class Order(MmuNotifier):
        def __init__(self):
            self.seen = None

        def change_pte(self, mm, address, pte):
            self.seen = mm.pagetables.get_pte(address) == pte
    for kernel, pte_already_set in (("2.6.32", True), ("3.6", True), ("3.7", False)):
        m = Machine(kernel=kernel, page_size=PS)
        p = m.spawn("p")
        a = p.mmap(PS)
        p.write(a, b"x")
        p.fork()
        o = Order()
        p.mm.notifiers.register(o)
        p.write(a, b"y")
        assert o.seen is pte_already_set, kernel
