"""Transparent huge pages for anonymous memory, as Linux 6.18 has them (mm/huge_memory.c).

A THP is a PMD-order folio (:class:`~ksmbook.kernel.memory.LargeFolio`, 512 subpages of
4 KiB) mapped by one huge PMD.  What is modelled, by kernel function:

* **Eligibility** -- :func:`thp_vma_allowable` is __thp_vma_allowable_orders() for a page
  fault at PMD order: the sysfs mode (``/sys/kernel/mm/transparent_hugepage/enabled``,
  ``Machine(thp=)``), VM_HUGEPAGE (MADV_HUGEPAGE) in ``madvise`` mode, VM_NOHUGEPAGE,
  and :func:`thp_vma_suitable` (the aligned 2 MiB block lies inside the VMA).  The
  fault takes the huge path only where the PMD is none (no PTE table there yet).
* **Faults** -- :func:`do_huge_pmd_anonymous_page`: a read maps the huge zero folio
  (mm_get_huge_zero_folio(), allocated once: thp_zero_page_alloc), a write allocates
  and maps a THP (thp_fault_alloc, or thp_fault_fallback and 4 KiB pages when 512
  frames are not free).  A large folio added to the LRU moves the CPU's lru_add
  batch at once (folio_add_lru()), so it drains the transient references of
  kernel/swap.py.  :func:`do_huge_zero_wp_pmd`: a write to the huge zero PMD
  allocates a THP (6.14+).  :func:`do_huge_pmd_wp_page`: a write to a read-only huge
  PMD reuses the folio when it is exclusive (PageAnonExclusive, or one reference),
  else splits the PMD and lets the 4 KiB path copy the one subpage (5.8+).
* **PMD splits** -- :func:`split_huge_pmd` (__split_huge_pmd(), thp_split_pmd): the deposited page table
  gets 512 PTEs, one per subpage (or 512 zero-page PTEs for the huge zero PMD).  It
  runs when a VMA boundary cuts a huge PMD (munmap, mprotect, madvise:
  vma_adjust_trans_huge()), when MADV_DONTNEED zaps part of one, and on COW.
* **Folio splits** -- :func:`split_huge_page` (__folio_split(), thp_split_page or
  thp_split_page_failed): only when the folio's references are exactly its mappings
  plus the caller's (can_split_folio()); it unmaps every mapping (splitting the PMDs),
  makes the 512 subpages order-0 folios and maps them back, except that subpages
  that are all zero are mapped to the shared zero page and freed (6.12+,
  RMP_USE_SHARED_ZEROPAGE).  KSM calls it (ksm/merge.py) on every large folio it is
  about to merge.
* **Deferred split** -- :func:`deferred_split_folio` (thp_deferred_split_page) once a
  folio is partially mapped; the shrinker that would split it runs only under memory
  pressure, which ksmbook does not model.
* **Accounting** -- ``/proc/<pid>/smaps_rollup`` AnonHugePages (:func:`anon_huge_kb`)
  and the ``thp_*`` lines of ``/proc/vmstat`` listed in :data:`THP_VMSTAT`.

Not modelled: khugepaged (collapse: ``thp_collapse_alloc``), mTHP sizes below 2 MiB
(every ``hugepages-*kB/enabled`` but 2048 kB is "never" here, as on this host),
THP swap-out, migration, NUMA hinting, shmem/file THPs, PUD-sized pages, the
defrag/compaction knobs, the underused-THP shrinker.
"""
from __future__ import annotations

from .memory import HPAGE_PMD_NR, PG_anon, PG_anon_exclusive
from .mmu_notifier import RULE_THP
from .pagetable import (_PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PSE, _PAGE_RW, _PAGE_SPECIAL,
                        mk_pte, pmd_subpage_pte, pte_pfn, pte_present, pte_write)

#: The /proc/vmstat THP events ksmbook counts, in the kernel's order (vm_event_item).
#: thp_zero_page_alloc counts once per boot (the huge zero folio stays allocated until
#: memory pressure frees it), so recorded traces leave it out.
THP_VMSTAT = ("thp_fault_alloc", "thp_fault_fallback", "thp_collapse_alloc",
              "thp_split_page", "thp_split_page_failed", "thp_deferred_split_page",
              "thp_split_pmd", "thp_zero_page_alloc")
#: The sysfs modes of /sys/kernel/mm/transparent_hugepage/enabled.
THP_MODES = ("always", "madvise", "never")


def hpage_pmd_size(mm) -> int:
    return mm.page_size * HPAGE_PMD_NR


def _count(mm, event: str) -> None:
    mm.machine.vmstat[event] += 1


# --- eligibility -------------------------------------------------------------------

def thp_vma_allowable(vma) -> bool:
    """__thp_vma_allowable_orders(vma, vm_flags, TVA_PAGEFAULT, PMD order) for anon memory."""
    machine = vma.mm.machine
    if not machine.profile.thp or vma.shmem is not None:
        return False            # shmem THP is shmem_enabled ("never" here): not modelled
    if vma.flags & vma.VM_NOHUGEPAGE:
        return False
    if machine.thp == "always":
        return True
    return machine.thp == "madvise" and bool(vma.flags & vma.VM_HUGEPAGE)


def thp_vma_suitable(vma, address: int) -> bool:
    """thp_vma_suitable_order(): the aligned 2 MiB block around ``address`` fits the VMA."""
    size = hpage_pmd_size(vma.mm)
    haddr = address & ~(size - 1)
    return haddr >= vma.start and haddr + size <= vma.end


def mk_huge_pmd(pfn: int, writable: bool, *, dirty: bool = False, special: bool = False,
                accessed: bool = True) -> int:
    """mk_huge_pmd(): a present huge PMD for the folio at ``pfn``."""
    return mk_pte(pfn, writable, dirty=dirty, special=special, accessed=accessed) | _PAGE_PSE


def is_huge_zero_pmd(machine, pmd: int) -> bool:
    zero = machine.huge_zero_folio
    return zero is not None and pte_pfn(pmd) == zero.pfn


def pmd_folio(machine, pmd: int):
    """The LargeFolio a huge PMD maps (the huge zero folio included)."""
    return machine.memory.pages[pte_pfn(pmd)].folio


def mm_get_huge_zero_folio(machine):
    """mm_get_huge_zero_folio(): the huge zero folio, allocated on first use.

    Without CONFIG_PERSISTENT_HUGE_ZERO_FOLIO (this host's 6.18) it is refcounted and a
    shrinker frees it under memory pressure; ksmbook never has memory pressure, so it
    stays once allocated, as on a host with free memory.  None when 512 frames are
    not free (thp_zero_page_alloc_failed; the fault then falls back)."""
    if machine.huge_zero_folio is None:
        folio = machine.memory.alloc_large_folio(0, 0)
        if folio is None:
            return None
        folio.huge_zero = True
        for page in folio.pages:
            page.flags |= machine.memory.zero_page.flags      # PG_zero: never written
            page.data = bytes(len(page.data))
            page.checksum_memo = -1             # other bytes (fastpath.py, shortcut 7)
        machine.huge_zero_folio = folio
        machine.vmstat["thp_zero_page_alloc"] += 1
    return machine.huge_zero_folio


# --- faults ------------------------------------------------------------------------

def _emit_fault(mm, address, access, handler, outcome=None):
    from .fault import _emit_fault as emit
    emit(mm, address, access, handler, outcome)


def _set_pmd(mm, haddr: int, pmd: int, site: str, deposit=None) -> int:
    """set_pmd_at(), reported like a PTE change."""
    old = mm.pagetables.set_pmd(haddr, pmd, deposit)
    m = mm.machine
    if m.events.enabled:
        m.events.put(("PteChange", m.clock_ns, mm.owner_pid, haddr, old, pmd, site))
    return old


def do_huge_pmd_anonymous_page(mm, vma, address: int, write: bool):
    """do_huge_pmd_anonymous_page(): the page at ``address`` after a huge fault, or
    None for VM_FAULT_FALLBACK (the caller takes the 4 KiB path)."""
    from .fault import anon_vma_prepare
    machine = mm.machine
    size = hpage_pmd_size(mm)
    haddr = address & ~(size - 1)
    index = (address - haddr) >> mm.page_shift
    if not thp_vma_suitable(vma, haddr):
        return None
    anon_vma_prepare(vma)
    if not write and machine.profile.huge_zero_page and machine.thp_use_zero_page:
        zero = mm_get_huge_zero_folio(machine)
        if zero is None:
            machine.vmstat["thp_zero_page_alloc_failed"] += 1
            _count(mm, "thp_fault_fallback")
            return None
        deposit = mm.pagetables.alloc_deposit_table()
        _emit_fault(mm, address, "read", "do_huge_pmd_anonymous_page", "huge_zero_page")
        _set_pmd(mm, haddr, mk_huge_pmd(zero.pfn, False, special=True), "set_huge_zero_folio",
                 deposit)
        zero.pmd_maps += 1
        return zero.pages[index]
    folio = machine.memory.alloc_large_folio(mm.node_for(vma), haddr)
    if folio is None:
        _count(mm, "thp_fault_fallback")
        return None
    deposit = mm.pagetables.alloc_deposit_table()
    _count(mm, "thp_fault_alloc")
    _map_new_folio(mm, vma, folio, haddr, write)
    _emit_fault(mm, address, "write" if write else "read", "do_huge_pmd_anonymous_page")
    _set_pmd(mm, haddr, mk_huge_pmd(folio.pfn, bool(vma.flags & vma.VM_WRITE), dirty=True),
             "map_anon_folio_pmd", deposit)
    return folio.pages[index]


def _map_new_folio(mm, vma, folio, haddr, write) -> None:
    """folio_add_new_anon_rmap() + folio_add_lru_vma() of a fresh THP."""
    folio.mapping = vma.anon_vma
    for page in folio.pages:
        page.flags |= PG_anon | PG_anon_exclusive
        page.mapping = vma.anon_vma
    folio.pmd_maps = 1
    mm.machine.cpu_fbatches.folio_add_lru_large(folio)


def do_huge_zero_wp_pmd(mm, vma, address: int, pmd: int):
    """do_huge_zero_wp_pmd() (6.14+): a write to the huge zero PMD gets a new THP;
    None for VM_FAULT_FALLBACK (no 512 free frames: the PMD is split instead)."""
    size = hpage_pmd_size(mm)
    haddr = address & ~(size - 1)
    folio = mm.machine.memory.alloc_large_folio(mm.node_for(vma), haddr)
    if folio is None:
        _count(mm, "thp_fault_fallback")
        return None
    _count(mm, "thp_fault_alloc")
    site = "do_huge_zero_wp_pmd"
    mm.notifiers.invalidate_range_start(haddr, haddr + size, site, "clear",
                                        RULE_THP)
    _set_pmd(mm, haddr, 0, site)                   # pmdp_huge_clear_flush()
    mm.machine.tlb_flushes += 1
    mm.machine.huge_zero_folio.pmd_maps -= 1
    _map_new_folio(mm, vma, folio, haddr, True)
    _set_pmd(mm, haddr, mk_huge_pmd(folio.pfn, True, dirty=True), site)
    mm.notifiers.invalidate_range_end(haddr, haddr + size, site, "clear",
                                      RULE_THP)
    _emit_fault(mm, address, "write", site)
    return folio.pages[(address - haddr) >> mm.page_shift]


def do_huge_pmd_wp_page(mm, vma, address: int, pmd: int, unshare: bool = False):
    """do_huge_pmd_wp_page(): a write (or unshare) hit a read-only huge PMD.

    Returns the subpage when the PMD was reused, None for VM_FAULT_FALLBACK after
    the PMD was split (the 4 KiB path then copies only the written subpage: 5.8+,
    3917c80280c9 "thp: change CoW semantics for anon-THP").
    """
    machine = mm.machine
    size = hpage_pmd_size(mm)
    haddr = address & ~(size - 1)
    index = (address - haddr) >> mm.page_shift
    if is_huge_zero_pmd(machine, pmd):
        if machine.profile.thp_wp_huge_zero_allocates:
            page = do_huge_zero_wp_pmd(mm, vma, address, pmd)
            if page is not None:
                return page
        split_huge_pmd(mm, vma, haddr, "do_huge_pmd_wp_page")
        return None
    folio = pmd_folio(machine, pmd)
    head = folio.pages[0]
    if not machine.profile.thp_cow_splits_pmd and not (head.flags & PG_anon_exclusive) \
            and folio.ref_count() > 1:
        page = _huge_pmd_copy(mm, vma, haddr, pmd, folio)    # before 5.8: copy 2 MiB
        if page is not None:
            return page.pages[index]
        split_huge_pmd(mm, vma, haddr, "do_huge_pmd_wp_page_fallback")
        return None
    if head.flags & PG_anon_exclusive or folio.ref_count() == 1:
        for page in folio.pages:                   # folio_move_anon_rmap + SetPageAnonExclusive
            page.flags |= PG_anon_exclusive
        if unshare:
            return folio.pages[index]
        _emit_fault(mm, address, "write", "do_huge_pmd_wp_page", "reuse")
        _set_pmd(mm, haddr, pmd | _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED, "do_huge_pmd_wp_page")
        return folio.pages[index]
    split_huge_pmd(mm, vma, haddr, "do_huge_pmd_wp_page")
    return None


def _huge_pmd_copy(mm, vma, haddr, pmd, old):
    """Before 5.8, do_huge_pmd_wp_page() copied a shared THP into a new one."""
    new = mm.machine.memory.alloc_large_folio(mm.node_for(vma), haddr)
    if new is None:
        _count(mm, "thp_fault_fallback")
        return None
    _count(mm, "thp_fault_alloc")
    for src, dst in zip(old.pages, new.pages):
        mm.machine.memory.write_page(dst, 0, src.data)
    size = hpage_pmd_size(mm)
    site = "do_huge_pmd_wp_page"
    mm.notifiers.invalidate_range_start(haddr, haddr + size, site, "clear",
                                        RULE_THP)
    _set_pmd(mm, haddr, 0, site)
    mm.machine.tlb_flushes += 1
    _map_new_folio(mm, vma, new, haddr, True)
    _set_pmd(mm, haddr, mk_huge_pmd(new.pfn, True, dirty=True), site)
    old.pmd_maps -= 1
    if old.ref_count() == 0:
        mm.machine.memory.free_large_folio(old)
    mm.notifiers.invalidate_range_end(haddr, haddr + size, site, "clear",
                                      RULE_THP)
    return new


def huge_pmd_set_accessed(mm, address: int, pmd: int, write: bool) -> None:
    """huge_pmd_set_accessed(): the walk sets the accessed (and dirty) bit of the PMD."""
    bits = _PAGE_ACCESSED | (_PAGE_DIRTY if write else 0)
    if pmd & bits != bits:
        size = hpage_pmd_size(mm)
        mm.pagetables.set_pmd(address & ~(size - 1), pmd | bits)


# --- splitting the PMD ---------------------------------------------------------------

def split_huge_pmd(mm, vma, haddr: int, site: str, notify: bool = True) -> None:
    """__split_huge_pmd() / __split_huge_pmd_locked(): one huge PMD becomes a PTE table.

    The folio stays large: each subpage is now mapped by its own PTE, with the PMD's
    permission, dirty and accessed bits (a PMD's reference becomes one per PTE).  The
    huge zero PMD becomes 512 PTEs of the 4 KiB zero page.  Secondary MMUs hear of the
    whole 2 MiB range (MMU_NOTIFY_CLEAR); ``notify=False`` is the freeze case, inside
    a notifier range the caller already opened (try_to_migrate_one()).
    """
    machine = mm.machine
    pt = mm.pagetables
    pmd = pt.huge_pmd(haddr)
    if not pmd:
        return
    size = hpage_pmd_size(mm)
    rule = RULE_THP
    if notify:
        mm.notifiers.invalidate_range_start(haddr, haddr + size, site, "clear", rule)
    _count(mm, "thp_split_pmd")
    _set_pmd(mm, haddr, 0, site)                   # pmdp_invalidate()
    machine.tlb_flushes += 1
    table = pt.withdraw_as_leaf(haddr)
    folio = pmd_folio(machine, pmd)
    folio.pmd_maps -= 1
    if folio.huge_zero:
        zero = mk_pte(0, False, special=True)
        table.entries[:] = [zero] * HPAGE_PMD_NR
    else:
        table.entries[:] = [pmd_subpage_pte(pmd, i) for i in range(HPAGE_PMD_NR)]
        for page in folio.pages:
            page.mapcount += 1
            page.refcount += 1
    table.used = HPAGE_PMD_NR
    machine.fp.pte_changed()
    if notify:
        mm.notifiers.invalidate_range_end(haddr, haddr + size, site, "clear", rule)


def split_huge_pmd_if_needed(mm, vma, address: int) -> None:
    """vma_adjust_trans_huge(): a VMA boundary at ``address`` inside a huge PMD splits it."""
    size = hpage_pmd_size(mm)
    if address % size and mm.pagetables.huge_pmd(address):
        split_huge_pmd(mm, vma, address & ~(size - 1), "vma_adjust_trans_huge")


def zap_huge_pmd(mm, haddr: int, pmd: int) -> None:
    """zap_huge_pmd(): unmap a whole huge PMD; the folio goes with its last reference."""
    machine = mm.machine
    _set_pmd(mm, haddr, 0, "zap_huge_pmd")
    mm.pagetables.free_deposit(haddr)              # zap_deposited_table()
    folio = pmd_folio(machine, pmd)
    folio.pmd_maps -= 1
    if folio.huge_zero:
        return
    if folio.ref_count() == 0:
        machine.memory.free_large_folio(folio)
    elif folio.pmd_maps == 0 and any(p.mapcount == 0 for p in folio.pages):
        deferred_split_folio(machine, folio)       # PTE mappings elsewhere cover part of it


def copy_huge_pmd(parent, child, haddr: int, pmd: int) -> None:
    """copy_huge_pmd(): fork shares the THP; both PMDs become read-only and old in the child."""
    machine = parent.machine
    folio = pmd_folio(machine, pmd)
    folio.pmd_maps += 1
    if not folio.huge_zero:
        for page in folio.pages:
            page.flags &= ~PG_anon_exclusive        # folio_try_dup_anon_rmap_pmd()
        if pte_write(pmd):
            pmd &= ~_PAGE_RW
            _set_pmd(parent, haddr, pmd, "copy_huge_pmd")    # pmdp_set_wrprotect()
    child.pagetables.set_pmd(haddr, pmd & ~_PAGE_ACCESSED, child.pagetables.alloc_deposit_table())


def change_huge_pmd(mm, haddr: int, pmd: int, newpmd: int) -> None:
    """change_huge_pmd(): mprotect over a whole huge PMD keeps it huge."""
    if newpmd != pmd:
        _set_pmd(mm, haddr, newpmd, "change_huge_pmd")


# --- rmap bookkeeping of PTE-mapped THPs ---------------------------------------------

def deferred_split_folio(machine, folio) -> None:
    """deferred_split_folio(): queue a partially mapped THP (counted once)."""
    if not folio.deferred:
        folio.deferred = True
        machine.vmstat["thp_deferred_split_page"] += 1


def folio_remove_rmap_ptes(machine, folio, pages) -> None:
    """The partially-mapped test of __folio_remove_rmap() at PTE level, after the
    PTEs of ``pages`` (one batch of one folio) were dropped: some page lost its last
    mapping, no PMD maps the folio, and other pages are still mapped."""
    if folio.huge_zero or folio.pmd_maps:
        return
    if any(p.mapcount == 0 for p in pages) and folio.large_mapcount() > 0:
        deferred_split_folio(machine, folio)


def folio_mapped_only_by(mm, folio) -> bool:
    """Every mapping of ``folio`` is in ``mm`` (MM_ID's exact 'not maybe-mapped-shared')."""
    pt = mm.pagetables
    mine = 1 if pt.huge_pmd(folio.address) and pte_pfn(pt.huge_pmd(folio.address)) == folio.pfn \
        else 0
    if not mine:
        first, last = folio.pfn, folio.pfn + folio.nr_pages
        for _addr, pte in pt.present(folio.address, folio.address + hpage_pmd_size(mm)):
            if first <= pte_pfn(pte) < last:
                mine += 1
    return mine == folio.large_mapcount()


def wp_can_reuse_large_anon_folio(mm, page) -> bool:
    """__wp_can_reuse_large_anon_folio() (6.15+): a PTE-mapped THP's subpage is reused on
    a write fault when only this mm maps the folio and nothing else holds it."""
    folio = page.folio
    if not mm.machine.profile.cow_reuse_pte_mapped_thp:
        return False
    if folio.large_mapcount() <= 1:       # "just free up a large folio if only one page"
        return False
    if folio.ref_count() != folio.large_mapcount():
        return False
    return folio_mapped_only_by(mm, folio)


# --- splitting the folio -------------------------------------------------------------

def can_split_folio(folio, caller_pins: int) -> bool:
    """can_split_folio(): the mappings are all the references but the caller's.

    ksmbook's refcounts leave out the references a caller holds for the duration of a
    call (KSM's folio_get() on the page it scans), so the caller says how many."""
    return folio.large_mapcount() == folio.ref_count() + caller_pins - 1


def _folio_mappings(machine, folio):
    """The (mm, vma) of every process whose anon VMA maps the folio's address range
    (an anon folio sits at one address in the processes that forked from each other)."""
    size = folio.nr_pages * machine.page_size
    for proc in machine.processes.values():
        if not proc.alive:
            continue
        mm = proc.mm
        for vma in mm.vmas_in(folio.address, folio.address + size):
            if vma.anon_vma is folio.mapping:
                yield mm, vma


def split_huge_page(machine, page, caller_pins: int = 1, site: str = "split_huge_page") -> int:
    """split_huge_page() -> __folio_split() to order 0; 0, or -EAGAIN (-11).

    unmap_folio() replaces every mapping by a migration entry (splitting the PMDs,
    thp_split_pmd each, in a notifier range per mapping; removing a PTE-mapped THP's
    PTEs one by one leaves it partially mapped, so it is queued for a deferred split
    on the way, thp_deferred_split_page, unless it was already); the subpages become order-0
    folios; remap_page() maps each one back where it was, with the same bits, except
    that a subpage whose bytes are all zero is mapped to the shared zero page and
    freed (6.12+: b1f202060afe "mm: remap unused subpages to shared zeropage when
    splitting isolated thp").  That includes the page the caller holds: KSM then finds
    it no longer mapped.  thp_split_page on success, thp_split_page_failed otherwise.
    """
    folio = page.folio
    if folio is None:
        return 0
    if not can_split_folio(folio, caller_pins):
        machine.vmstat["thp_split_page_failed"] += 1
        return -11
    size = folio.nr_pages * machine.page_size
    first, last = folio.pfn, folio.pfn + folio.nr_pages
    entries = []                                       # (mm, vma, address, old pte, subpage)
    rule = RULE_THP
    for mm, vma in list(_folio_mappings(machine, folio)):    # rmap_walk(): oldest first
        start, end = max(vma.start, folio.address), min(vma.end, folio.address + size)
        mm.notifiers.invalidate_range_start(start, end, site, "clear", rule)
        pt = mm.pagetables
        pmd = pt.huge_pmd(folio.address)
        if pmd and pte_pfn(pmd) == folio.pfn:
            # split_huge_pmd_locked(freeze): the PMD becomes migration entries at once,
            # then folio_remove_rmap_pmd() -- partially mapped only if some, not all,
            # subpages are mapped nowhere else
            _count(mm, "thp_split_pmd")
            _set_pmd(mm, folio.address, 0, site)
            pt.withdraw_as_leaf(folio.address)
            folio.pmd_maps -= 1
            for i, sub in enumerate(folio.pages):
                entries.append((mm, vma, folio.address + (i << mm.page_shift),
                                pmd_subpage_pte(pmd, i), sub))
            unmapped = sum(1 for p in folio.pages if p.mapcount == 0)
            if 0 < unmapped < folio.nr_pages:
                deferred_split_folio(machine, folio)
        for addr, pte in list(pt.present(start, end)):
            pfn = pte_pfn(pte)
            if first <= pfn < last and pte_present(pte) and not pte & _PAGE_SPECIAL:
                sub = folio.pages[pfn - first]
                pt.set_pte(addr, 0)                    # a migration entry, for now
                sub.mapcount -= 1
                sub.refcount -= 1
                entries.append((mm, vma, addr, pte, sub))
                # try_to_migrate_one() removes one PTE's rmap at a time: the first
                # leaves a PTE-mapped THP partially mapped (thp_deferred_split_page)
                folio_remove_rmap_ptes(machine, folio, (sub,))
        machine.tlb_flushes += 1
        mm.notifiers.invalidate_range_end(start, end, site, "clear", rule)
    machine.memory.dissolve_large_folio(folio)
    zero_remap = machine.profile.thp_split_remaps_zero_subpages
    zero_pte = mk_pte(0, False, special=True)
    for mm, vma, addr, pte, sub in entries:            # remap_page()
        if zero_remap and not any(sub.data):           # (mlock is not modelled)
            mm.pagetables.set_pte(addr, zero_pte)      # try_to_map_unused_to_zeropage()
            continue
        mm.pagetables.set_pte(addr, pte)
        sub.mapcount += 1
        sub.refcount += 1
    for sub in folio.pages:
        if sub.refcount == 0:
            machine.memory._free_page(sub)             # free_folio_and_swap_cache()
    folio.deferred = False
    machine.vmstat["thp_split_page"] += 1
    return 0


# --- what /proc shows ------------------------------------------------------------------

def anon_huge_kb(mm) -> int:
    """smaps AnonHugePages: the PMD-mapped anonymous THPs of ``mm`` (not the huge zero
    PMD, which smaps_pmd_entry() does not count), in kB."""
    machine = mm.machine
    n = sum(1 for _a, pmd in mm.pagetables.present_huge(0, 1 << 64)
            if not is_huge_zero_pmd(machine, pmd))
    return n * hpage_pmd_size(mm) // 1024


def thp_get_unmapped_area(machine, mm, length: int, search) -> int | None:
    """__thp_get_unmapped_area() for an anonymous private mapping (6.7+; from 6.12 only
    for lengths that are multiples of 2 MiB): search for ``length`` + 2 MiB, then place
    the mapping on a 2 MiB boundary, top-down.  None when the padded search fails
    (the caller retries without padding)."""
    size = machine.page_size * HPAGE_PMD_NR
    prof = machine.profile
    if not prof.thp_anon_mmap_align or length < size:
        return None
    if prof.thp_anon_mmap_align_pmd_multiple and length % size:
        return None
    try:
        ret = search(mm, length + size)
    except OSError:
        return None
    off_sub = (-ret) & (size - 1)
    return ret + size if off_sub == 0 else ret + off_sub
