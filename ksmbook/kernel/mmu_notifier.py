"""MMU notifiers: how the primary MMU tells secondary MMUs (KVM) that a PTE changed.

This is where the seed commit lives: ``set_pte_at_notify`` (Izik Eidus, 828502d30073,
2.6.32).  Every call site that the seed covers (the COW in do_wp_page, KSM's
write_protect_page and replace_page) sets its PTE through the functions below, and
each era's rules come from the kernel profile (versions.py):

* 2.6.32-3.6, the seed: ``ptep_clear_flush()`` (no notifier), then ``set_pte_at()``,
  then ``change_pte`` -- or ``invalidate_page`` for a notifier without change_pte.
  Nothing brackets the change.  do_wp_page calls no other notifier for the old page:
  the seed turned its ``ptep_clear_flush_notify()`` (which called invalidate_page)
  into a plain ``ptep_clear_flush()``, and the "cow happened, notify before releasing
  old_page" invalidate_page call only existed inside the 2012 series that replaced it
  with the bracket (its first patch, Sagi Grimberg's "mm: Move all mmu notifier
  invocations to be done outside the PT lock", adds it; Haggai Eran's "wrap" patch,
  6bdb913f0a70, removes it again; both were merged together for 3.7).
* 3.7 (6bdb913f0a70, dated 2012-10-09, after v3.6 shipped): every set_pte_at_notify
  site is bracketed by invalidate_range_start/end, so KVM has zapped the spte before
  change_pte arrives; the invalidate_page fallback is gone, and set_pte_at_notify
  notifies before it sets the PTE (Xiao Guangrong's fix of the same cycle).
* 4.13: invalidate_page is removed (try_to_unmap/page_mkclean use the bracket).
* 6.10 (997308f9ae72, b06d4c260e93): change_pte and set_pte_at_notify are gone; the
  sites call plain set_pte_at inside the range bracket.

Every call is a NotifierCall event naming the op, the range, the call site and the
era rule (a code of ``RULES``) that made the call happen.
"""
from __future__ import annotations


OPS = ("release", "clear_flush_young", "clear_young", "test_young", "change_pte",
       "invalidate_page", "invalidate_range_start", "invalidate_range_end",
       "invalidate_range", "arch_invalidate_secondary_tlbs")

# which profile field says an op exists in the modelled kernel
_OP_FEATURE = {"change_pte": "change_pte", "invalidate_page": "invalidate_page",
               "invalidate_range": "invalidate_range", "clear_young": "clear_young",
               "test_young": "test_young",
               "arch_invalidate_secondary_tlbs": "arch_invalidate_secondary_tlbs"}

# The era rule that made a call happen, as a code carried by the NotifierCall event
# (ksmbook.viz.events.NOTIFIER_RULES words each one, with its era and commit).
RULE_SEED_CHANGE_PTE = "seed_change_pte"            # 2.6.32-3.6, 828502d30073
RULE_SEED_FALLBACK = "seed_invalidate_page_fallback"  # 2.6.32-3.6, no ->change_pte
RULE_BRACKETED_CHANGE_PTE = "bracketed_change_pte"  # 3.7-6.9
RULE_BRACKET = "bracket"                            # 3.7-6.9, 6bdb913f0a70
RULE_BRACKET_NO_CHANGE_PTE = "bracket_no_change_pte"  # 6.10+, 997308f9ae72
RULE_ZAP = "zap"                                    # unmap, all eras
RULE_RELEASE = "release"                            # exit_mmap, all eras
RULE_UNREGISTER = "unregister"                      # mmu_notifier_unregister, all eras
RULE_CLEAR_FLUSH_YOUNG = "clear_flush_young"        # reclaim's aging, all eras
RULE_CLEAR_YOUNG = "clear_young"                    # 4.3+, idle page tracking
RULE_TEST_YOUNG = "test_young"                      # 2.6.38+, khugepaged
RULE_INVALIDATE_RANGE = "invalidate_range"          # 3.19-6.5
RULE_ARCH_INVALIDATE_SECONDARY_TLBS = "arch_invalidate_secondary_tlbs"   # 6.6+
RULE_THP = "thp"                                    # 2.6.38+, a huge PMD changes (2 MiB)
#: every rule code
RULES = (RULE_SEED_CHANGE_PTE, RULE_SEED_FALLBACK, RULE_BRACKETED_CHANGE_PTE, RULE_BRACKET,
         RULE_BRACKET_NO_CHANGE_PTE, RULE_ZAP, RULE_RELEASE, RULE_UNREGISTER,
         RULE_CLEAR_FLUSH_YOUNG, RULE_CLEAR_YOUNG, RULE_TEST_YOUNG, RULE_INVALIDATE_RANGE,
         RULE_ARCH_INVALIDATE_SECONDARY_TLBS, RULE_THP)


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
    """mm->notifier_subscriptions (mm->mmu_notifier_mm before 5.5): registered notifiers
    of one mm, and the mmu_notifier_*() dispatchers of mm/mmu_notifier.c."""

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
        """mmu_notifier_unregister(): ->release() first unless exit_mmap already ran it."""
        if mn in self.list:
            self._call_one(mn, "release", 0, self._task_size(), "mmu_notifier_unregister",
                           RULE_UNREGISTER)
            self.list.remove(mn)

    def exists(self, op: str) -> bool:
        """Does struct mmu_notifier_ops of the modelled kernel have this op at all?"""
        feat = _OP_FEATURE.get(op)
        return feat is None or getattr(self._machine.profile, feat)

    def _task_size(self) -> int:
        return self._machine.task_size

    def _call_one(self, mn, op, start, end, site, rule, *args):
        m = self._machine
        if m.events.enabled:
            m.events.put(("NotifierCall", m.clock_ns, self.mm.owner_pid, op, start, end,
                          site, rule))          # (a NotifierCall, built when read)
        return getattr(mn, op)(self.mm, *args)

    def _call(self, op: str, start: int, end: int, site: str, rule: str, *args) -> list:
        """Call ``op`` on every notifier that has it, one event per call."""
        return [self._call_one(mn, op, start, end, site, rule, *args)
                for mn in list(self.list) if mn.implements(op)]

    # --- the dispatchers ---
    def invalidate_range_start(self, start, end, site, event="clear", rule=RULE_ZAP):
        """mmu_notifier_invalidate_range_start(): secondary MMUs drop [start, end)."""
        self._call("invalidate_range_start", start, end, site, rule, start, end, event)

    def invalidate_range_end(self, start, end, site, event="clear", rule=RULE_ZAP):
        """mmu_notifier_invalidate_range_end(): the primary change is complete."""
        self._call("invalidate_range_end", start, end, site, rule, start, end, event)

    def invalidate_page(self, address, site, rule):
        """mmu_notifier_invalidate_page() (2.6.27-4.12)."""
        if self.exists("invalidate_page"):
            self._call("invalidate_page", address, address + self.mm.page_size, site, rule,
                       address)

    def change_pte(self, address, pte, site):
        """__mmu_notifier_change_pte(): change_pte, or the seed's invalidate_page fallback."""
        prof = self._machine.profile
        if not prof.change_pte:
            return
        end = address + self.mm.page_size
        rule = RULE_BRACKETED_CHANGE_PTE if prof.bracket_set_pte_at_notify else \
            RULE_SEED_CHANGE_PTE
        for mn in list(self.list):
            if mn.implements("change_pte"):
                self._call_one(mn, "change_pte", address, end, site, rule, address, pte)
            elif prof.change_pte_falls_back_to_invalidate_page and \
                    mn.implements("invalidate_page"):
                self._call_one(mn, "invalidate_page", address, end, site, RULE_SEED_FALLBACK,
                               address)

    def release(self):
        """__mmu_notifier_release(): every ->release(), then the list is emptied, so
        exit_mmap's own unmapping reaches no secondary MMU."""
        self._call("release", 0, self._task_size(), "exit_mmap", RULE_RELEASE)
        self.list.clear()

    def clear_flush_young(self, start, end, site="folio_referenced_one"):
        """mmu_notifier_clear_flush_young(): reclaim's aging test-and-clear, with flush."""
        return any(self._call("clear_flush_young", start, end, site,
                              RULE_CLEAR_FLUSH_YOUNG, start, end))

    def clear_young(self, start, end, site="page_idle_clear_pte_refs_one"):
        """mmu_notifier_clear_young() (4.3+): test-and-clear without the TLB flush."""
        if self.exists("clear_young"):
            return any(self._call("clear_young", start, end, site,
                                  RULE_CLEAR_YOUNG, start, end))
        return False

    def test_young(self, address, site="khugepaged"):
        """mmu_notifier_test_young() (2.6.38+): look, do not clear."""
        if self.exists("test_young"):
            return any(self._call("test_young", address, address + self.mm.page_size, site,
                                  RULE_TEST_YOUNG, address))
        return False

    def secondary_tlb_flush(self, start, end, site):
        """The hardware-TLB hook that fires with the CPU flush: invalidate_range (3.19-6.5)
        from ptep_clear_flush_notify, arch_invalidate_secondary_tlbs (6.6+) from the flush.

        Approximation: every ptep_clear_flush() here is the _notify variant; the KSM
        sites used the plain one from 4.15 (0f10851ea475) and relied on range_end.
        KVM implements neither op, so the KVM story is unaffected.
        """
        if not self.list:
            return
        prof = self._machine.profile
        if prof.arch_invalidate_secondary_tlbs:
            self._call("arch_invalidate_secondary_tlbs", start, end, site,
                       RULE_ARCH_INVALIDATE_SECONDARY_TLBS, start, end)
        elif prof.invalidate_range:
            self._call("invalidate_range", start, end, site,
                       RULE_INVALIDATE_RANGE, start, end)


# --- primary-MMU helpers used by fault.py and ksm/ ---

def set_pte_at(mm, address: int, pte: int, site: str) -> int:
    """set_pte_at(): write the PTE, no secondary MMU involved.  Returns the old PTE."""
    old = mm.pagetables.set_pte(address, pte)
    m = mm.machine
    if m.events.enabled:
        m.events.put(("PteChange", m.clock_ns, mm.owner_pid, address, old, pte, site))
    return old


def set_pte_at_notify(mm, address: int, pte: int, site: str) -> int:
    """set_pte_at_notify() of the modelled era (the seed commit; gone in 6.10).

    The seed sets the PTE and then notifies.  From 3.7 the macro notifies first:
    with the PTE already cleared and flushed, a secondary MMU must not keep the old
    page mapped while a CPU can already write the new one (COW changes pfn and
    protection at once).  In 6.10+ this is set_pte_at.
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


def pte_notify_bracket(mm, start: int, end: int, site: str):
    """invalidate_range_start/end around a set_pte_at_notify site, from 3.7 on.

    6bdb913f0a70 added the bracket so that notifiers could sleep (RDMA on-demand
    paging); before it the site was unbracketed and change_pte alone told KVM.  The
    bracket outlived change_pte: 6.10 keeps start/end and calls set_pte_at inside.
    Returns a context manager: the bracket, or one shared do-nothing one when the
    era has no bracket or no notifier is registered (ksmd enters two per merge).
    """
    prof = mm.machine.profile
    if not (prof.bracket_set_pte_at_notify and mm.notifiers.list):
        return _NO_BRACKET
    return _PteNotifyBracket(mm, start, end, site,
                             RULE_BRACKET if prof.change_pte else RULE_BRACKET_NO_CHANGE_PTE)


class _PteNotifyBracket:
    __slots__ = ("mm", "start", "end", "site", "rule")

    def __init__(self, mm, start: int, end: int, site: str, rule: str):
        self.mm, self.start, self.end, self.site, self.rule = mm, start, end, site, rule

    def __enter__(self):
        self.mm.notifiers.invalidate_range_start(self.start, self.end, self.site, "clear",
                                                 self.rule)

    def __exit__(self, *exc) -> bool:
        self.mm.notifiers.invalidate_range_end(self.start, self.end, self.site, "clear",
                                               self.rule)
        return False


class _NoBracket:
    __slots__ = ()

    def __enter__(self):
        return None

    def __exit__(self, *exc) -> bool:
        return False


_NO_BRACKET = _NoBracket()
