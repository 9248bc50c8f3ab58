"""Page faults as Linux 6.x handles them: handle_mm_fault() and its helpers.

A read of an untouched anonymous page maps the shared zero page read-only; a write
allocates a zeroed frame; a write to a read-only present page goes to do_wp_page(),
which reuses an exclusively owned anonymous page and otherwise copies (wp_page_copy).
KSM pages are never reused (wp_can_reuse_anon_folio() refuses them), except in
5.1-5.8 where reuse_ksm_page() let a single mapper keep its KSM page.
"""
from __future__ import annotations

from . import huge_memory
from .memory import PG_anon, PG_anon_exclusive, PG_ksm, PG_lru_batch
from .mmu_notifier import (pte_notify_bracket, ptep_clear_flush, set_pte_at,
                           set_pte_at_notify)
from .swap import folio_ref_count
from .pagetable import (_PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_RW,
                        mk_pte, pte_dirty, pte_pfn, pte_present, pte_special, pte_write)

FAULT_FLAG_WRITE = 1 << 0
FAULT_FLAG_REMOTE = 1 << 7
FAULT_FLAG_UNSHARE = 1 << 10


def is_ksm_zero_pte(pte: int) -> bool:
    """is_ksm_zero_pte(): a zero-page PTE that KSM placed (it marks them dirty)."""
    return pte_present(pte) and pte_special(pte) and pte_pfn(pte) == 0 and pte_dirty(pte)


def _emit_fault(mm, address, access, handler, outcome=None):
    m = mm.machine
    if m.events.enabled:
        # (a Fault, built when read)
        m.events.put(("Fault", m.clock_ns, mm.owner_pid, address, access, handler, outcome))


def handle_mm_fault(mm, vma, address: int, flags: int):
    """handle_mm_fault() for one page; returns the Page mapped at ``address`` after it.

    __handle_mm_fault() first: a none PMD in a VMA that allows THPs takes the huge
    path (do_huge_pmd_anonymous_page), a huge PMD is handled at PMD level
    (do_huge_pmd_wp_page, huge_pmd_set_accessed); VM_FAULT_FALLBACK (no THP, or the
    PMD was split) continues with handle_pte_fault() below (kernel/huge_memory.py).
    """
    address &= ~(mm.page_size - 1)
    write = bool(flags & FAULT_FLAG_WRITE)
    unshare = bool(flags & FAULT_FLAG_UNSHARE)
    pt = mm.pagetables
    if pt.huge:
        pmd = pt.huge_pmd(address)
        if pmd:
            if (write or unshare) and not pte_write(pmd):
                page = huge_memory.do_huge_pmd_wp_page(mm, vma, address, pmd,
                                                       unshare=unshare and not write)
                if page is not None:
                    return page
            else:
                huge_memory.huge_pmd_set_accessed(mm, address, pmd, write)
                return mm.machine.memory.pfn_to_page(pte_pfn(pt.get_pte(address)))
    if vma.shmem is None and mm.machine.thp != "never" and pt.pmd_none(address) and \
            huge_memory.thp_vma_allowable(vma):
        page = huge_memory.do_huge_pmd_anonymous_page(mm, vma, address, write)
        if page is not None:
            return page
    pte = pt.get_pte(address)
    mem = mm.machine.memory
    if not pte_present(pte):
        if vma.shmem is not None:
            return shmem_fault(mm, vma, address, write)
        return do_anonymous_page(mm, vma, address, write)
    # a PROT_NONE pte only reaches here through a remote unshare (break_ksm)
    if (write or unshare) and not pte_write(pte):
        return do_wp_page(mm, vma, address, pte, unshare=unshare and not write)
    # present and permitted: the hardware walk sets the accessed/dirty bits
    bits = _PAGE_ACCESSED | (_PAGE_DIRTY if write else 0)
    if pte & bits != bits:
        mm.pagetables.set_pte(address, pte | bits)
    return mem.pfn_to_page(pte_pfn(pte))


def fault_allocates(mm, vma, address: int, write: bool) -> bool:
    """Would handle_mm_fault() allocate a data frame here?  The same decisions as the
    handlers below, without acting: a multi-page access checks memory before it starts."""
    pte = mm.pagetables.get_pte(address)
    if mm.pagetables.huge_pmd(address):       # a huge PMD: reuse or split, then as 4 KiB
        if not write or pte_write(pte):
            return False
    if not pte_present(pte):
        if vma.shmem is not None:
            pgoff = vma.pgoff + ((address - vma.start) >> mm.page_shift)
            return pgoff not in vma.shmem.pages
        return write
    if not write or pte_write(pte) or vma.flags & vma.VM_SHARED:
        return False
    if pte_special(pte):
        return True
    page = mm.machine.memory.pfn_to_page(pte_pfn(pte))
    return not (page.flags & PG_anon and (page.flags & PG_anon_exclusive or
                                          wp_can_reuse_anon_folio(page, mm.machine.profile, mm=mm)))


def do_anonymous_page(mm, vma, address: int, write: bool):
    """do_anonymous_page(): zero page on read, a fresh zeroed anonymous page on write."""
    mem = mm.machine.memory
    if not write:
        _emit_fault(mm, address, "read", "do_anonymous_page", "zero_page")
        set_pte_at(mm, address, mk_pte(0, False, special=True), "do_anonymous_page")
        return mem.zero_page
    anon_vma_prepare(vma)
    page = new_anon_page(mm, vma)
    _emit_fault(mm, address, "write", "do_anonymous_page")
    page.mapcount = 1
    mm.machine.cpu_fbatches.folio_add_lru(page)       # folio_add_lru_vma()
    set_pte_at(mm, address, mk_pte(page.pfn, True, dirty=True), "do_anonymous_page")
    return page


def shmem_fault(mm, vma, address: int, write: bool):
    """shmem_fault() + finish_fault(): map the shared page of a MAP_SHARED mapping."""
    page = vma.shmem.get_page(vma.pgoff + ((address - vma.start) >> mm.page_shift),
                              mm.machine.memory, mm.node_for(vma))
    page.mapcount += 1
    page.refcount += 1
    writable = bool(vma.flags & vma.VM_WRITE)
    _emit_fault(mm, address, "write" if write else "read", "shmem_fault")
    set_pte_at(mm, address, mk_pte(page.pfn, writable, dirty=write), "finish_fault")
    return page


def anon_vma_prepare(vma) -> None:
    """anon_vma_prepare(): the first anonymous page of a VMA gives it an anon_vma."""
    if vma.anon_vma is None:
        vma.anon_vma = vma.mm.machine.new_anon_vma()


def new_anon_page(mm, vma):
    page = mm.machine.memory.alloc_page(mm.node_for(vma), purpose="anon")
    page.flags |= PG_anon | PG_anon_exclusive
    page.mapping = vma.anon_vma
    return page


def wp_can_reuse_anon_folio(page, prof, machine=None, mm=None) -> bool:
    """wp_can_reuse_anon_folio() (6.x): only an anonymous, non-KSM page nobody else holds.

    A subpage of a PTE-mapped THP goes to __wp_can_reuse_large_anon_folio() (6.15+;
    never reused before), which needs ``mm``.
    A folio not yet on the LRU (still in a per-CPU lru_add batch) with at most three
    references makes it call lru_add_drain() first: "We cannot easily detect+handle
    references from remote LRU caches" -- which empties this CPU's batch.
    """
    if page.flags & PG_ksm:
        return bool(prof.reuse_ksm_page and page.mapcount == 1 and page.refcount == 1)
    if page.folio is not None:                  # a subpage of a PTE-mapped THP
        return mm is not None and huge_memory.wp_can_reuse_large_anon_folio(mm, page)
    refs = folio_ref_count(page)
    if page.flags & PG_lru_batch and refs <= 3:
        if machine is None:         # only asking (no fault yet): as after the drain
            refs -= 1
        else:
            machine.cpu_fbatches.lru_add_drain()
            refs = folio_ref_count(page)
    return refs == 1 and page.mapcount == 1


def do_wp_page(mm, vma, address: int, pte: int, unshare: bool = False):
    """do_wp_page(): a write (or FAULT_FLAG_UNSHARE) hit a read-only present PTE."""
    mem = mm.machine.memory
    page = None if pte_special(pte) else mem.pfn_to_page(pte_pfn(pte))
    if vma.flags & vma.VM_SHARED:
        # wp_page_shared(): the page cache page just becomes writable
        _emit_fault(mm, address, "write", "wp_page_shared")
        set_pte_at(mm, address, pte | _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED, "wp_page_shared")
        return page
    if page is not None and page.flags & PG_anon and (
            page.flags & PG_anon_exclusive or wp_can_reuse_anon_folio(page, mm.machine.profile, mm.machine, mm)):
        if page.flags & PG_ksm:       # 5.1-5.8 reuse_ksm_page(): it stops being KSM
            page.flags &= ~PG_ksm
            page.mapping = vma.anon_vma
            mm.machine.fp.ksm_page_gone()
        page.flags |= PG_anon_exclusive
        if unshare:
            return page
        return wp_page_reuse(mm, address, pte, page)
    return wp_page_copy(mm, vma, address, pte, page, unshare)


def wp_page_reuse(mm, address, pte, page):
    """wp_page_reuse(): make the PTE writable in place; no notifier (permission grows)."""
    _emit_fault(mm, address, "write", "wp_page_reuse")
    set_pte_at(mm, address, pte | _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED, "wp_page_reuse")
    return page


def wp_page_copy(mm, vma, address: int, orig_pte: int, old_page, unshare: bool):
    """wp_page_copy() (do_wp_page's copy branch before 4.0): copy-on-write, through
    the era's notifier sequence.

    The seed era: ptep_clear_flush() with no notifier, then set_pte_at_notify(new,
    writable), which KVM answers by zapping its spte and bumping its sequence count;
    no other notifier names the old page (2.6.32's do_wp_page has no invalidate_page
    after the copy).  From 3.7 the pair is bracketed by invalidate_range_start/end
    (6bdb913f0a70); from 6.10 set_pte_at_notify is plain set_pte_at.
    """
    mem = mm.machine.memory
    if old_page is not None and old_page.flags & PG_ksm:
        # do_wp_page() counts COW_KSM before wp_page_copy(), while the page is still
        # KSM (putting the last mapping frees it and clears its flags)
        mm.machine.vmstat["cow_ksm"] += 1
    anon_vma_prepare(vma)
    new = new_anon_page(mm, vma)
    if old_page is not None:
        mem.copy_page(new, old_page)
    site = "wp_page_copy"
    _emit_fault(mm, address, "unshare" if unshare else "write", site)
    end = address + mm.page_size
    with pte_notify_bracket(mm, address, end, site):
        if is_ksm_zero_pte(orig_pte):
            mm.machine.ksm.ksm_might_unmap_zero_page(mm, orig_pte)
        entry = mk_pte(new.pfn, not unshare, dirty=not unshare)
        if not vma.flags & (vma.VM_READ | vma.VM_WRITE):
            entry = pte_mkprotnone(entry)       # mk_pte(new, vma->vm_page_prot) of PROT_NONE
        new.mapcount = 1
        mm.machine.cpu_fbatches.folio_add_lru(new)    # folio_add_lru_vma()
        ptep_clear_flush(mm, address, site)
        set_pte_at_notify(mm, address, entry, site)
        if old_page is not None:
            old_page.mapcount -= 1
            folio = old_page.folio
            mem.put_page(old_page)
            if folio is not None:
                huge_memory.folio_remove_rmap_ptes(mm.machine, folio, (old_page,))
    return new


def zap_pte(mm, address: int, pte: int) -> None:
    """zap_present_ptes() for one PTE: drop the mapping and the page reference."""
    mem = mm.machine.memory
    set_pte_at(mm, address, 0, "zap_pte_range")
    if pte_special(pte):
        if is_ksm_zero_pte(pte):
            mm.machine.ksm.ksm_might_unmap_zero_page(mm, pte)
        return
    page = mem.pfn_to_page(pte_pfn(pte))
    page.mapcount -= 1
    mem.put_page(page)


def pte_mkprotnone(pte: int) -> int:
    return (pte & ~(_PAGE_PRESENT | _PAGE_RW)) | _PAGE_PROTNONE


def pte_mkprotread(pte: int) -> int:
    return (pte & ~_PAGE_PROTNONE & ~_PAGE_RW) | _PAGE_PRESENT
