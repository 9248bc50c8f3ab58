"""Events as the book prints them: every sentence is built here, from the fields.

The kernel's events (``ksmbook.kernel.events``) are data: the kernel function, the
pid and address of the page, frames, the other page of a merge, an outcome code and
numbers.  This module words them, on demand:

* ``describe_events(events, label)``: short deterministic lines
  ("vm1[1]     try_to_merge_two_pages()        two-page merge: ..."), one per
  event the book prints.  The ``label`` callable names pages (a Scene's ``label``),
  so lines read "vm1[1]" instead of an address.
* ``explain(events)``: chapter 07's lines for every event (which notifier fired
  from which call site under which era rule, what KVM did to which spte and why);
  ``gfn_of`` names host addresses by guest frame.
* ``ksm_detail``, ``kvm_detail``, ``rule_text``, ``fault_handler_text``: the words
  for one record.

Nothing here parses text: a page is named from the event's own pid and address.
"""
from __future__ import annotations

from ..kernel.events import (Event, Fault, KsmEvent, KvmEvent, NotifierCall, PageAlloc,
                             PageFree, PteChange)
from ..kernel.mmu_notifier import (RULE_ARCH_INVALIDATE_SECONDARY_TLBS, RULE_BRACKET,
                                   RULE_BRACKET_NO_CHANGE_PTE, RULE_BRACKETED_CHANGE_PTE,
                                   RULE_CLEAR_FLUSH_YOUNG, RULE_CLEAR_YOUNG,
                                   RULE_INVALIDATE_RANGE, RULE_RELEASE, RULE_SEED_CHANGE_PTE,
                                   RULE_SEED_FALLBACK, RULE_TEST_YOUNG, RULE_THP,
                                   RULE_UNREGISTER, RULE_ZAP)
from ..kernel.pagetable import pte_flags_text, pte_pfn


def _page_name(pid: int, address: int) -> str:
    return f"pid {pid} {address:#x}"


def _namer(label):
    """(pid, address) -> the page's name: ``label``'s, else 'pid P 0xADDR'."""
    if label is None:
        return _page_name
    return lambda pid, address: label(pid, address) or _page_name(pid, address)


def _where(label, pid, address):
    if not pid:
        return ""
    name = label(pid, address) if label else None
    return name or _page_name(pid, address)


# --- KSM ---------------------------------------------------------------------------

def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _checksum_text(e, name) -> str:
    if e.outcome == "unchanged":
        return f"checksum {e.checksum:#010x} unchanged since the last visit: a candidate"
    first = "first visit" if e.outcome == "first_visit" else "changed"
    return f"{first}: checksum {e.checksum:#010x} recorded, page is volatile"


def _merge_failed_text(e, name) -> str:
    why = "in a per-CPU LRU batch" if e.outcome == "lru_batch" else "pinned"
    return f"refcount {e.refcount} != mapcount {e.mapcount}: {why}"


def _idle_text(e, name) -> str:
    return (f"full scans #{e.first_seqnr}..#{e.seqnr - 1} found nothing to scan "
            f"({e.wakeups} wake-ups, taken in one step): full_scans={e.seqnr}")


#: KsmEvent.action -> its words, from the event's fields (``name`` names a page)
KSM_TEXT = {
    "scan_start": lambda e, name: f"full scan #{e.seqnr}: unstable tree reset",
    "scan_end": lambda e, name: f"full scan done: full_scans={e.seqnr}",
    "idle_scans": _idle_text,
    "checksum": _checksum_text,
    "unstable_insert": lambda e, name: ("checksum unchanged since last scan; no twin yet "
                                        "(unstable tree now holds this page)"),
    "unstable_abort": lambda e, name: "a tree page vanished: give up, item stays volatile",
    "merge": lambda e, name: (f"two-page merge: this page becomes KSM page {e.pfn:#x}; "
                              f"{name(e.other_pid, e.other_address)} now maps it, its old "
                              f"page {e.other_pfn:#x} is freed"),
    "stable_hit": lambda e, name: (f"merged into KSM page {e.other_pfn:#x} "
                                   f"(stable_node#{e.node}, {e.sharers} sharers)"),
    "stable_full": lambda e, name: (f"content matches stable_node#{e.node} but every copy "
                                    f"has max_page_sharing={e.max_page_sharing} sharers"),
    "chain_created": lambda e, name: (f"chain#{e.chain} replaces stable_node#{e.node} "
                                      f"(max_page_sharing={e.max_page_sharing})"),
    "dup_created": lambda e, name: (f"stable_node#{e.node} joins chain#{e.chain} "
                                    f"({_plural(e.dups, 'dup')})"),
    "chain_collapsed": lambda e, name: (f"chain#{e.chain} had one dup left: "
                                        f"stable_node#{e.node} takes its place"),
    "stale_pruned": lambda e, name: (f"stable_node#{e.node}: its page is gone (keyhole "
                                     f"check failed), {e.items} rmap_items turn volatile"),
    "zero_merge": lambda e, name: ("use_zero_pages: PTE now maps the zero page (counted "
                                   "in ksm_zero_pages)"),
    "thp_split": lambda e, name: (
        "the THP is 512 small pages now; its all-zero subpages map the zero page"
        if e.outcome == "split" else
        f"split failed (-EAGAIN): {e.refs} references, {e.maps} mappings (KSM holds two)"),
    "skip": lambda e, name: (f"smart scan: age {e.age}, {e.remaining_skips} more skips"),
    "merge_failed": _merge_failed_text,
    "break_ksm": lambda e, name: ("unshare" if e.outcome == "unshare"
                                  else "write fault (before 6.2: no FAULT_FLAG_UNSHARE)"),
    "sharing_bypass": lambda e, name: (f"forked KSM mapping: allowed past max_page_sharing "
                                       f"({e.sharers} > {e.max_page_sharing})"),
}


def ksm_detail(e: KsmEvent, label=None) -> str:
    """What a KsmEvent says, in words; ``label(pid, address)`` names pages."""
    text = KSM_TEXT.get(e.action)
    if text is None:
        return e.describe()
    return text(e, _namer(label))


# --- KVM ---------------------------------------------------------------------------

#: hva_to_pfn()'s reason codes (KvmEvent.reason of spte_install)
HVA_TO_PFN_TEXT = {
    "gup_fast": "gup-fast: the host PTE is writable",
    "write_fault": "write fault: the host page is writable",
    "read_fault_asks_write": "read fault, but 2.6.32-2.6.37 hva_to_pfn always asks for a "
                             "writable page",
    "read_fault_writable": "read fault mapped writable: the host PTE is already writable",
    "read_fault_readonly": "read fault: the host PTE is read-only (KSM, shared or zero "
                           "page), so host_writable=0",
}
#: why an spte was dropped (KvmEvent.reason of spte_zap)
ZAP_TEXT = {
    "change_pte_writable": "change_pte: the new host PTE is writable (COW), so drop the "
                           "spte; the guest refaults",
    "invalidate_page": "invalidate_page: the host unmapped this page",
    "release": "release: the VMM's mm is exiting, tear down every spte",
    "change_pte_huge": "change_pte: a 2 MiB spte is zapped, never remapped in place",
}
#: why KVM flushed its TLB (KvmEvent.reason of tlb_flush)
FLUSH_TEXT = {
    "invalidate_range_start": "range_start zapped sptes: flush before the pages can be freed",
    "change_pte": "change_pte changed sptes",
    "invalidate_page": "invalidate_page zapped an spte",
    "release": "release",
    "clear_flush_young": "clear_flush_young found young sptes",
}
#: what kind of EPT violation (KvmEvent.reason of exit)
EXIT_TEXT = {"read": "read with no spte", "write": "write with no spte",
             "write_protected": "write to a read-only spte"}


def _span_text(start: int, end: int, ps: int, gfn_of=None) -> str:
    if gfn_of and end - start == ps and start in gfn_of:
        return f"gfn {gfn_of[start]}"
    if end - start >= 1 << 40:
        return "the whole address space"
    n = max((end - start) // ps, 1)
    return f"[{start:#x}, +{n} page{'s' if n > 1 else ''})"


def _range_text(start: int, end: int, ps: int, gfn_of=None) -> str:
    if gfn_of and end - start == ps and start in gfn_of:
        return f"gfn {gfn_of[start]}"
    return f"[{start:#x}, {end:#x})"


def _zap_text(e, ps, gfn_of) -> str:
    if e.reason == "invalidate_range_start":
        return (f"invalidate_range_start {_range_text(e.start, e.end, ps, gfn_of)} "
                f"({e.event}): the host is changing this page")
    return ZAP_TEXT[e.reason]


def _retry_text(e, ps, gfn_of) -> str:
    return (f"mmu_invalidate_retry: sequence {e.seq_before} -> {e.seq_after} while the pfn "
            f"was resolved (the host fault invalidated this page); drop the pfn, re-enter, "
            f"exit again")


def _begin_text(e, ps, gfn_of) -> str:
    n = e.in_progress
    return (f"in-progress {n - 1} -> {n}, range {_range_text(e.start, e.end, ps, gfn_of)}: "
            f"no spte may be created there until range_end")


def _miss_text(e, ps, gfn_of) -> str:
    if e.reason == "zapped_by_range_start":
        return ("change_pte: nothing to change: invalidate_range_start already zapped it "
                "(3.7+: the seed's optimisation is dead code)")
    return "change_pte: nothing to change: the guest has no spte for this page"


#: KvmEvent.action -> its words, from the event's fields
KVM_TEXT = {
    "spte_install": lambda e, ps, gfn_of: (f"{'writable' if e.writable else 'read-only'} "
                                           f"{'2 MiB ' if e.info.get('level') == 2 else ''}"
                                           f"spte: {HVA_TO_PFN_TEXT[e.reason]}"
                                           + ("; the host maps a THP here (huge PMD)"
                                              if e.info.get('level') == 2 else "")),
    "spte_zap": lambda e, ps, gfn_of: _zap_text(e, ps, gfn_of) + (
        " (a 2 MiB spte: all 512 pages go)" if (e.info or {}).get("level") == 2 else ""),
    "tlb_flush": lambda e, ps, gfn_of: FLUSH_TEXT[e.reason],
    "exit": lambda e, ps, gfn_of: f"EPT violation: {EXIT_TEXT[e.reason]}",
    "retry": _retry_text,
    "invalidate_begin": _begin_text,
    "invalidate_end": lambda e, ps, gfn_of: (f"sequence {e.seq - 1} -> {e.seq}, in-progress "
                                             f"{e.in_progress + 1} -> {e.in_progress}"),
    "change_pte_skip": lambda e, ps, gfn_of: ("5.13+: no invalidation in progress, "
                                              "change_pte returns at once"),
    "change_pte_miss": _miss_text,
    "spte_remap": lambda e, ps, gfn_of: (f"change_pte: the new host PTE is read-only, so "
                                         f"remap in place pfn {e.old_pfn:#x} -> {e.pfn:#x}, "
                                         f"write-protected: no exit"),
}


def kvm_detail(e: KvmEvent, page_size: int = 4096, gfn_of=None) -> str:
    """What a KvmEvent says, in words (``gfn_of``: hva -> gfn, to name ranges)."""
    text = KVM_TEXT.get(e.action)
    if text is None:
        return e.describe()
    return text(e, page_size, gfn_of)


# --- MMU notifiers and faults ------------------------------------------------------

#: NotifierCall.rule -> the era rule in words, with its commit
NOTIFIER_RULES = {
    RULE_SEED_CHANGE_PTE: "2.6.32-3.6: set_pte_at_notify = set_pte_at, then change_pte; "
                          "unbracketed (828502d30073)",
    RULE_SEED_FALLBACK: "2.6.32-3.6: notifier has no change_pte -> "
                        "__mmu_notifier_change_pte calls invalidate_page",
    RULE_BRACKETED_CHANGE_PTE: "3.7-6.9: set_pte_at_notify = change_pte, then set_pte_at; "
                               "inside invalidate_range_start/end",
    RULE_BRACKET: "3.7-6.9: set_pte_at_notify site bracketed by invalidate_range_start/end "
                  "(6bdb913f0a70)",
    RULE_BRACKET_NO_CHANGE_PTE: "6.10+: PTE replaced inside invalidate_range_start/end; "
                                "change_pte removed (997308f9ae72)",
    RULE_ZAP: "unmap: invalidate_range_start/end around the zap (all eras)",
    RULE_RELEASE: "exit_mmap -> mmu_notifier_release, before any page is freed (all eras)",
    RULE_UNREGISTER: "mmu_notifier_unregister -> release (all eras)",
    RULE_CLEAR_FLUSH_YOUNG: "aging: reclaim asks secondary MMUs too (all eras)",
    RULE_CLEAR_YOUNG: "4.3+: idle tracking clears young without flushing",
    RULE_TEST_YOUNG: "2.6.38+: khugepaged tests young without clearing",
    RULE_INVALIDATE_RANGE: "3.19-6.5: ptep_clear_flush_notify -> invalidate_range",
    RULE_ARCH_INVALIDATE_SECONDARY_TLBS: "6.6+: CPU TLB flush -> "
                                         "arch_invalidate_secondary_tlbs",
    RULE_THP: "2.6.38+: a huge PMD is split or replaced: invalidate_range_start/end over "
              "its 2 MiB",
}


def rule_text(rule: str) -> str:
    """A NotifierCall's era rule in words."""
    return NOTIFIER_RULES.get(rule, rule)


def fault_handler_text(e: Fault) -> str:
    """The handler a Fault names, with what it mapped when that is the point."""
    words = {"zero_page": "zero page", "huge_zero_page": "huge zero page", "reuse": "reuse"}
    return f"{e.handler} ({words[e.outcome]})" if e.outcome in words else e.handler


# --- the book's lines ----------------------------------------------------------------

def describe_event(e, label=None, cleared: int = 0) -> str | None:
    """One line for an event, or None for events the book does not print.

    ``cleared`` is the PTE value a preceding ptep_clear_flush() removed at the same
    address, so that "clear, then set" prints as one change from old to new.
    """
    if isinstance(e, KsmEvent):
        fn = f"{e.function}()"
        where = _where(label, e.pid, e.address) if e.address else ""
        return f"{where:<10} {fn:<31} {ksm_detail(e, label)}"
    if isinstance(e, Fault):
        return f"{_where(label, e.pid, e.address):<10} {e.access} fault -> " \
               f"{fault_handler_text(e)}"
    if isinstance(e, PageAlloc):
        return f"{'':<10} alloc_page(): pfn {e.pfn:#x} ({e.purpose})"
    if isinstance(e, PageFree):
        return f"{'':<10} free: pfn {e.pfn:#x} back to the allocator"
    if isinstance(e, PteChange):
        where = _where(label, e.pid, e.address)
        if not e.new:
            if e.site != "zap_pte_range":
                return None      # the clear half of ptep_clear_flush + set: print the set
            return f"{where:<10} PTE pfn {pte_pfn(e.old):#x} -> none  [{e.site}]"
        before = e.old or cleared
        old = f"pfn {pte_pfn(before):#x} {pte_flags_text(before)}" if before else "none"
        return (f"{where:<10} PTE {old} -> pfn {pte_pfn(e.new):#x} {pte_flags_text(e.new)}"
                f"  [{e.site}]")
    return None


def describe_events(events, label=None, *, kinds=None, limit: int | None = None) -> list[str]:
    """Lines for ``events``; ``kinds`` filters by event class (e.g. (KsmEvent, Fault))."""
    lines = []
    cleared = {}
    for e in events:
        if isinstance(e, PteChange) and not e.new:
            cleared[(e.pid, e.address)] = e.old
        if kinds is not None and not isinstance(e, kinds):
            continue
        extra = cleared.pop((e.pid, e.address), 0) if isinstance(e, PteChange) and e.new else 0
        line = describe_event(e, label, extra)
        if line is not None:
            lines.append(line.rstrip())
    if limit is not None and len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more"]
    return lines


def _pfn(pfn) -> str:
    return "-" if pfn is None or pfn < 0 else f"{pfn:#x}"


def explain_event(e: Event, page_size: int = 4096, gfn_of=None) -> str:
    """Chapter 07's line for one event.  ``gfn_of`` (hva -> gfn): name host addresses
    by guest frame and leave the pid out (the story has one guest)."""
    def at(address):
        return f"gfn {gfn_of[address]}" if gfn_of and address in gfn_of else f"{address:#x}"

    def who(pid, sep=": "):
        return "" if gfn_of else f"pid {pid}{sep}"

    if isinstance(e, NotifierCall):
        return (f"notifier  {who(e.pid)}{e.op} {_span_text(e.start, e.end, page_size, gfn_of)} "
                f"from {e.site} -- {rule_text(e.rule)}")
    if isinstance(e, KvmEvent):
        where = "" if e.gfn < 0 else f" gfn {e.gfn:#x}"
        pfn = "" if e.pfn < 0 else f" pfn {e.pfn:#x}"
        return f"kvm vm{e.vm}:   {e.action}{where}{pfn} -- {kvm_detail(e, page_size, gfn_of)}"
    if isinstance(e, Fault):
        return (f"host      {who(e.pid)}{e.access} fault at {at(e.address)} -> "
                f"{fault_handler_text(e)}")
    if isinstance(e, PteChange):
        return (f"host      {who(e.pid)}PTE {at(e.address)} "
                f"{pte_flags_text(e.old)} pfn {_pfn(pte_pfn(e.old) if e.old else -1)}"
                f" -> {pte_flags_text(e.new)} pfn "
                f"{_pfn(pte_pfn(e.new) if e.new else -1)} ({e.site})")
    if isinstance(e, KsmEvent):
        def name(pid, address):
            return at(address) if gfn_of else _page_name(pid, address)
        return (f"ksm       {e.action} {who(e.pid, ' ')}{at(e.address)} pfn {_pfn(e.pfn)}"
                f" -- {ksm_detail(e, name)}")
    if isinstance(e, PageAlloc):
        return f"frame     alloc pfn {e.pfn:#x} ({e.purpose})"
    if isinstance(e, PageFree):
        return f"frame     free pfn {e.pfn:#x}"
    return e.describe()


def explain(events, page_size: int = 4096, *, gfn_of=None) -> list[str]:
    """Readable, deterministic lines for a captured event list: which notifier fired
    from which call site and why, and what KVM did to which spte and why."""
    return [explain_event(e, page_size, gfn_of) for e in events]


def counters_line(counters: dict, names=("full_scans", "pages_shared", "pages_sharing",
                                         "pages_unshared", "pages_volatile")) -> str:
    return "  ".join(f"{n}={counters[n]}" for n in names)
