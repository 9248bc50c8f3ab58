"""MMU notifiers: how the primary MMU tells secondary MMUs (KVM) that a PTE changed.

This is where the seed commit lives: ``set_pte_at_notify`` (Izik Eidus, 2.6.32,
828502d30073).  Every call site that the seed commit covers (do_wp_page's COW,
KSM's write_protect_page and replace_page) sets its PTE through the one function
below, and each era's rules come from the kernel profile:

* 2.6.32-3.5: set the PTE, then ``change_pte`` (or ``invalidate_page`` for a
  notifier without change_pte).  Nothing brackets the change.
* later: notify first, then set the PTE (the reversed order the header documents).
* 3.6 (6bdb913f0a70): every set_pte_at_notify site is bracketed by
  invalidate_range_start/end, so KVM has already zapped the spte when change_pte
  arrives; the fallback to invalidate_page is gone.
* 4.13: invalidate_page is removed.
* 6.10 (997308f9ae72, b06d4c260e93): change_pte and set_pte_at_notify are gone;
  the sites call plain set_pte_at inside the range bracket.
"""
from __future__ import annotations

from contextlib import contextmanager

from .events import NotifierCall, PteChange

OPS = ("release", "clear_flush_young", "clear_young", "test_young", "change_pte",
       "invalidate_page", "invalidate_range_start", "invalidate_range_end",
       "invalidate_range", "arch_invalidate_secondary_tlbs")

# which profile field says an op exists in the modelled kernel
_OP_FEATURE = {"change_pte": "change_pte", "invalidate_page": "invalidate_page",
               "invalidate_range": "invalidate_range", "clear_young": "clear_young",
               "test_young": "test_young",
               "arch_invalidate_secondary_tlbs": "arch_invalidate_secondary_tlbs"}


class MmuNotifier:
    """struct mmu_notifier with its ops: subclasses define the methods they implement.

    A method left undefined (still the base-class stub) counts as a NULL op pointer.
    """

    def implements(self, op: str) -> bool:
        return getattr(type(self), op, None) is not getattr(MmuNotifier, op, None)

    # the ops, all NULL by default (signatures follow struct mmu_notifier_ops)
    def release(self, mm): ...
    def clear_flush_young(self, mm, start, end): ...
    def clear_young(self, mm, start, end): ...
    def test_young(self, mm, address): ...
    def change_pte(self, mm, address, pte): ...
    def invalidate_page(self, mm, address): ...
    def invalidate_range_start(self, mm, start, end, event): ...
    def invalidate_range_end(self, mm, start, end, event): ...
    def invalidate_range(self, mm, start, end): ...
    def arch_invalidate_secondary_tlbs(self, mm, start, end): ...


class MmuNotifierSubscriptions:
    """mm->notifier_subscriptions: the notifiers registered on one mm, and dispatch."""

    def __init__(self, mm):
        self.mm = mm
        self.list: list[MmuNotifier] = []

    @property
    def _machine(self):
        return self.mm.machine

    def register(self, mn: MmuNotifier) -> None:
        """mmu_notifier_register()."""
        self.list.append(mn)

    def unregister(self, mn: MmuNotifier) -> None:
        self.list.remove(mn)

    def _call(self, op: str, start: int, end: int, site: str, rule: str, *args) -> list:
        """Call ``op`` on every notifier that has it, with one event per call."""
        m = self._machine
        results = []
        for mn in list(self.list):
            if not mn.implements(op):
                continue
            if m.events.enabled:
                m.events.emit(NotifierCall(m.clock_ns, self.mm.owner_pid, op, start, end,
                                           site, rule))
            results.append(getattr(mn, op)(self.mm, *args))
        return results

    def exists(self, op: str) -> bool:
        feat = _OP_FEATURE.get(op)
        return feat is None or getattr(self._machine.profile, feat)

    # --- the dispatchers (mmu_notifier_*) ---
    def invalidate_range_start(self, start, end, site, event="clear", rule="range change"):
        self._call("invalidate_range_start", start, end, site, rule, start, end, event)

    def invalidate_range_end(self, start, end, site, event="clear", rule="range change"):
        self._call("invalidate_range_end", start, end, site, rule, start, end, event)

    def invalidate_page(self, address, site, rule):
        if self.exists("invalidate_page"):
            self._call("invalidate_page", address, address + self.mm.page_size, site, rule,
                       address)

    def change_pte(self, address, pte, site):
        """__mmu_notifier_change_pte(): change_pte, or the seed's invalidate_page fallback."""
        prof = self._machine.profile
        if not prof.change_pte:
            return
        end = address + self.mm.page_size
        for mn in list(self.list):
            if mn.implements("change_pte"):
                self._call_one(mn, "change_pte", address, end, site,
                               "set_pte_at_notify -> change_pte", address, pte)
            elif prof.change_pte_falls_back_to_invalidate_page and mn.implements("invalidate_page"):
                self._call_one(mn, "invalidate_page", address, end, site,
                               "2.6.32-3.5: no change_pte op -> invalidate_page fallback",
                               address)

    def _call_one(self, mn, op, start, end, site, rule, *args):
        m = self._machine
        if m.events.enabled:
            m.events.emit(NotifierCall(m.clock_ns, self.mm.owner_pid, op, start, end, site,
                                       rule))
        return getattr(mn, op)(self.mm, *args)

    def release(self):
        self._call("release", 0, 1 << self.mm.pagetables.address_bits(), "exit_mmap",
                   "exit_mmap -> mmu_notifier_release")

    def clear_flush_young(self, start, end, site="folio_referenced_one"):
        return any(self._call("clear_flush_young", start, end, site, "aging", start, end))

    def clear_young(self, start, end, site="page_idle_clear_pte_refs_one"):
        if self.exists("clear_young"):
            return any(self._call("clear_young", start, end, site, "aging", start, end))
        return False

    def test_young(self, address, site="khugepaged"):
        if self.exists("test_young"):
            return any(self._call("test_young", address, address + self.mm.page_size, site,
                                  "aging", address))
        return False

    def secondary_tlb_flush(self, start, end, site):
        """The hardware-TLB hook that fires with the CPU flush: invalidate_range (3.19-6.5)
        from ptep_clear_flush_notify, arch_invalidate_secondary_tlbs (6.6+) from the flush."""
        prof = self._machine.profile
        if prof.arch_invalidate_secondary_tlbs:
            self._call("arch_invalidate_secondary_tlbs", start, end, site,
                       "6.6+: CPU TLB flush -> arch_invalidate_secondary_tlbs", start, end)
        elif prof.invalidate_range:
            self._call("invalidate_range", start, end, site,
                       "3.19-6.5: ptep_clear_flush_notify -> invalidate_range", start, end)


# --- primary-MMU helpers used by fault.py and ksm/ ---

def set_pte_at(mm, address: int, pte: int, site: str) -> int:
    """set_pte_at(): write the PTE, no secondary MMU involved.  Returns the old PTE."""
    old = mm.pagetables.set_pte(address, pte)
    m = mm.machine
    if m.events.enabled:
        m.events.emit(PteChange(m.clock_ns, mm.owner_pid, address, old, pte, site))
    return old


def set_pte_at_notify(mm, address: int, pte: int, site: str) -> int:
    """set_pte_at_notify() of the modelled era (the seed commit; gone in 6.10).

    The seed sets the PTE and then notifies; later kernels notify first, because a
    secondary MMU must never keep the old page mapped while a CPU can already write
    the new one (COW changes pfn and protection at once).  In 6.10+ this is set_pte_at.
    """
    prof = mm.machine.profile
    if not prof.change_pte:
        return set_pte_at(mm, address, pte, site)
    if prof.set_pte_first_then_notify:
        old = set_pte_at(mm, address, pte, site)
        mm.notifiers.change_pte(address, pte, site)
        return old
    mm.notifiers.change_pte(address, pte, site)
    return set_pte_at(mm, address, pte, site)


def ptep_clear_flush(mm, address: int, site: str) -> int:
    """ptep_clear_flush(): clear the PTE and flush the CPU TLB.  Returns the old PTE."""
    old = set_pte_at(mm, address, 0, site)
    mm.machine.tlb_flushes += 1
    mm.notifiers.secondary_tlb_flush(address, address + mm.page_size, site)
    return old


@contextmanager
def pte_notify_bracket(mm, start: int, end: int, site: str):
    """invalidate_range_start/end around a set_pte_at_notify site, from 3.6 on.

    6bdb913f0a70 (3.6) added the bracket so that notifiers could sleep; before it the
    site was unbracketed and change_pte alone told KVM.
    """
    bracketed = mm.machine.profile.bracket_set_pte_at_notify and mm.notifiers.list
    rule = "3.6+: set_pte_at_notify sites bracketed by invalidate_range_start/end"
    if bracketed:
        mm.notifiers.invalidate_range_start(start, end, site, "clear", rule)
    try:
        yield
    finally:
        if bracketed:
            mm.notifiers.invalidate_range_end(start, end, site, "clear", rule)
