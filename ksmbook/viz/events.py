"""Events as the book prints them: one line each, naming the kernel function.

``describe_events(events, label)`` turns the machine's typed events into short,
deterministic lines ("vm1[1] pfn 0x6  merge  try_to_merge_two_pages(): ...").
The ``label`` callable names pages (a Scene's ``label``), so lines read
"vm1[1]" instead of an address.
"""
from __future__ import annotations

import re

from ..kernel.events import Fault, KsmEvent, PageAlloc, PageFree, PteChange
from ..kernel.pagetable import pte_flags_text, pte_pfn

#: KsmEvent.action -> the function of mm/ksm.c that does it
KSM_FUNCTIONS = {
    "scan_start": "scan_get_next_rmap_item()",
    "scan_end": "scan_get_next_rmap_item()",
    "idle_scans": "ksm_scan_thread()",
    "checksum": "cmp_and_merge_page()",
    "unstable_insert": "unstable_tree_search_insert()",
    "unstable_abort": "unstable_tree_search_insert()",
    "merge": "try_to_merge_two_pages()",
    "stable_hit": "try_to_merge_with_ksm_page()",
    "stable_full": "stable_tree_search()",
    "chain_created": "stable_tree_insert()",
    "dup_created": "stable_node_chain_add_dup()",
    "chain_collapsed": "stable_node_dup()",
    "stale_pruned": "remove_node_from_stable_tree()",
    "zero_merge": "try_to_merge_with_zero_page()",
    "skip": "should_skip_rmap_item()",
    "merge_failed": "write_protect_page()",
    "break_ksm": "break_ksm()",
    "sharing_bypass": "stable_tree_append()",
}


def _where(label, pid, address):
    if not pid:
        return ""
    name = label(pid, address) if label else None
    return name or f"pid {pid} {address:#x}"


_PID_ADDR = re.compile(r"pid (\d+) (0x[0-9a-f]+)")


def _name_pages(text: str, label) -> str:
    """'pid 1000 0x7f7fffffa00' in a kernel detail string -> 'vm1[0]'."""
    if label is None:
        return text
    return _PID_ADDR.sub(lambda m: label(int(m.group(1)), int(m.group(2), 16)) or m.group(0), text)


def describe_event(e, label=None, cleared: int = 0) -> str | None:
    """One line for an event, or None for events the book does not print.

    ``cleared`` is the PTE value a preceding ptep_clear_flush() removed at the same
    address, so that "clear, then set" prints as one change from old to new.
    """
    if isinstance(e, KsmEvent):
        fn = KSM_FUNCTIONS.get(e.action, e.action)
        where = _where(label, e.pid, e.address) if e.address else ""
        return f"{where:<10} {fn:<31} {_name_pages(e.detail, label)}"
    if isinstance(e, Fault):
        return f"{_where(label, e.pid, e.address):<10} {e.access} fault -> {e.handler}"
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


def counters_line(counters: dict, names=("full_scans", "pages_shared", "pages_sharing",
                                         "pages_unshared", "pages_volatile")) -> str:
    return "  ".join(f"{n}={counters[n]}" for n in names)
