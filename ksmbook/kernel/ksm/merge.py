"""Merging and unmerging: try_to_merge_*, write_protect_page, replace_page, break_ksm.

These are the KSM call sites of the seed commit: write_protect_page() and
replace_page() set their PTEs through set_pte_at_notify() until 6.10 and, from 3.7
on (6bdb913f0a70), inside invalidate_range_start/end.
"""
from __future__ import annotations

from ..fault import (FAULT_FLAG_REMOTE, FAULT_FLAG_UNSHARE, handle_mm_fault,
                     is_ksm_zero_pte)
from ..memory import PG_anon, PG_anon_exclusive, PG_ksm, PG_lru_batch, PG_zero
from ..mmu_notifier import pte_notify_bracket, ptep_clear_flush, set_pte_at, set_pte_at_notify
from ..swap import folio_ref_count
from ..pagetable import (_PAGE_DIRTY, _PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_RW, PTE_PFN_MASK,
                         PTE_PFN_SHIFT, mk_pte, pte_pfn, pte_present, pte_special)

_PRESENT_OR_PROTNONE = _PAGE_PRESENT | _PAGE_PROTNONE      # pte_present() on x86


class MergeMixin:

    def find_mergeable_vma(self, mm, address):
        """find_mergeable_vma(): a live VM_MERGEABLE VMA with an anon_vma, or None."""
        if mm.mm_users == 0:
            return None
        vma = mm.find_vma(address)
        if vma is None or not vma.flags & vma.VM_MERGEABLE or vma.anon_vma is None:
            return None
        return vma

    def get_mergeable_page(self, item):
        """get_mergeable_page(): the anonymous page still mapped at the item's address."""
        mm = item.mm
        if self.find_mergeable_vma(mm, item.address) is None:
            return None
        pte = mm.pagetables.get_pte(item.address)
        if not pte_present(pte) or pte_special(pte):
            return None
        page = self.memory.pages.get(pte_pfn(pte))
        if page is None or not page.flags & PG_anon:
            return None
        return page

    def write_protect_page(self, vma, page, address):
        """write_protect_page(): make the PTE read-only and clean; returns it, or None.

        The refcount check (mapcount + our reference == refcount) refuses pages that
        someone else holds, e.g. for O_DIRECT or a GUP pin.  Notifiers: the PTE is
        cleared with no notifier (the seed's comment: clear and flush so GUP-fast cannot
        race the check), then set read-only with set_pte_at_notify -- change_pte with the
        same pfn, which KVM answers by write-protecting its spte in place (2.6.32-3.6) or
        finds already zapped by the bracket's range_start (3.7-6.9).
        """
        mm = vma.mm
        site = "write_protect_page"
        with pte_notify_bracket(mm, address, address + mm.page_size, site):
            entry = mm.pagetables.get_pte(address)
            # pte_present(), pte_pfn(), pte_write(), pte_dirty(), inlined: once per merge
            if not entry & _PRESENT_OR_PROTNONE or \
                    (entry & PTE_PFN_MASK) >> PTE_PFN_SHIFT != page.pfn:
                return None
            anon_exclusive = page.flags & PG_anon_exclusive
            if entry & (_PAGE_RW | _PAGE_DIRTY) or anon_exclusive:
                entry = ptep_clear_flush(mm, address, site)
                # folio_mapcount + 1 + swapcache != folio_ref_count: a per-CPU
                # lru_add batch's reference (kernel/swap.py) counts here too
                if page.mapcount != folio_ref_count(page):
                    # 2.6.32-2.6.34 restored the PTE with set_pte_at_notify (Robin
                    # Holt's 2010 patch made it set_pte_at): KVM zapped its spte
                    restore = set_pte_at_notify if self.profile.ksm_wp_restore_notifies \
                        else set_pte_at
                    restore(mm, address, entry, site)
                    if self.machine.events.enabled:
                        self._emit("write_protect_page", "merge_failed", mm.owner_pid, address,
                                   page.pfn,
                                   "lru_batch" if page.flags & PG_lru_batch else "pinned",
                                   info={"refcount": folio_ref_count(page),
                                         "mapcount": page.mapcount})
                    return None
                page.flags &= ~PG_anon_exclusive      # folio_try_share_anon_rmap_pte()
                entry &= ~(_PAGE_RW | _PAGE_DIRTY)    # pte_wrprotect(pte_mkclean(entry))
                set_pte_at_notify(mm, address, entry, site)
            return entry

    def replace_page(self, vma, page, kpage, address, orig_pte) -> bool:
        """replace_page(): point the PTE at ``kpage`` (or the zero page) and drop ``page``.

        set_pte_at_notify with a new pfn, read-only: the seed's KVM remaps its spte to
        the KSM page in place, so the guest keeps reading without an exit.
        """
        mm = vma.mm
        site = "replace_page"
        with pte_notify_bracket(mm, address, address + mm.page_size, site):
            if mm.pagetables.get_pte(address) != orig_pte:
                return False
            if not kpage.is_zero:
                kpage.refcount += 1
                kpage.mapcount += 1
                newpte = mk_pte(kpage.pfn, False)
            else:
                # the dirty bit marks "placed by KSM" (is_ksm_zero_pte)
                newpte = mk_pte(kpage.pfn, False, dirty=True, special=True)
                self.ksm_map_zero_page(mm)
            if orig_pte & _PAGE_PROTNONE:
                newpte = (newpte & ~1) | _PAGE_PROTNONE
            ptep_clear_flush(mm, address, site)
            set_pte_at_notify(mm, address, newpte, site)
            page.mapcount -= 1
            self.memory.put_page(page)
        return True

    def split_thp(self, page, pins: int) -> bool:
        """split_huge_page() on the large folio of ``page``, with the ``pins``
        references KSM holds on it (kernel/huge_memory.py); True when it split."""
        from ..huge_memory import split_huge_page
        folio = page.folio
        self.thp_splits += 1                 # ksm_do_scan(): the fast path's premise ends
        ret = split_huge_page(self.machine, page, pins)
        if self.machine.events.enabled:
            pid, address = self._visit()
            self._emit("split_huge_page", "thp_split", pid, address, folio.pfn,
                       "split" if ret == 0 else "busy",
                       info={"refs": folio.ref_count() + pins, "maps": folio.large_mapcount(),
                             "thp_address": folio.address})
        return ret == 0

    def try_to_merge_one_page(self, vma, page, kpage, address, pins: int = 1) -> bool:
        """try_to_merge_one_page(): ``kpage`` None means 'make ``page`` itself KSM'.

        A subpage of a THP is split out first (6.18: ``if (folio_test_large(folio))
        split_huge_page(page)``); when the split fails (more references than its
        mappings and KSM's ``pins``) the merge fails, and after a split that mapped
        ``page`` to the zero page (it was all zeros) write_protect_page() finds it
        gone."""
        if page is kpage:                          # ksm page forked
            return True
        if not page.flags & PG_anon:
            return False
        if page.folio is not None and not self.split_thp(page, pins):
            return False
        fp = self.fp
        if kpage is not None and fp.enabled and not fp.check and not kpage.flags & PG_zero \
                and not vma.mm.notifiers.list:
            return fp.merge_one_page(vma.mm, page, kpage, address)     # shortcut 6
        orig_pte = self.write_protect_page(vma, page, address)
        if orig_pte is None:
            return False
        if kpage is None:
            page.flags |= PG_ksm                   # folio_set_stable_node(folio, NULL)
            page.mapping = None
            return True
        if page.data == kpage.data:                # pages_identical()
            return self.replace_page(vma, page, kpage, address, orig_pte)
        return False

    def try_to_merge_with_ksm_page(self, item, page, kpage, pins: int = 1) -> bool:
        """try_to_merge_with_ksm_page(): merge the item's page into ``kpage``."""
        vma = self.find_mergeable_vma(item.mm, item.address)
        if vma is None:
            return False
        if not self.try_to_merge_one_page(vma, page, kpage, item.address, pins):
            return False
        self.remove_rmap_item_from_tree(item)
        item.anon_vma = vma.anon_vma
        return True

    def try_to_merge_two_pages(self, item, page, tree_item, tree_page):
        """try_to_merge_two_pages(): the scanned page becomes the KSM page.

        KSM holds a reference on both pages; when they are subpages of one THP, its
        split sees both (two pins) and fails."""
        same = page.folio is not None and tree_page.folio is page.folio
        if not self.try_to_merge_with_ksm_page(item, page, None, 2 if same else 1):
            return None
        if not self.try_to_merge_with_ksm_page(tree_item, tree_page, page):
            self.break_cow(item)
            return None
        return page

    def try_to_merge_with_zero_page(self, item, page) -> int:
        """try_to_merge_with_zero_page() (6.11; inline since 4.11): 0 when done."""
        if not (self.use_zero_pages and item.oldchecksum == self.zero_checksum):
            return -14                             # -EFAULT: carry on
        vma = self.find_mergeable_vma(item.mm, item.address)
        if vma is None:
            return 0
        if self.try_to_merge_one_page(vma, page, self.memory.zero_page, item.address):
            self._emit("try_to_merge_with_zero_page", "zero_merge", item.mm.owner_pid,
                       item.address, page.pfn, "merged", item.oldchecksum,
                       other_pfn=self.memory.zero_page.pfn)
            return 0
        return -14

    def ksm_map_zero_page(self, mm) -> None:
        self.ksm_zero_pages += 1
        mm.ksm_zero_pages += 1

    def ksm_might_unmap_zero_page(self, mm, pte) -> None:
        """ksm_might_unmap_zero_page(): a KSM-placed zero PTE went away."""
        if is_ksm_zero_pte(pte) and self.profile.ksm_zero_pages_counter:
            self.ksm_zero_pages -= 1
            mm.ksm_zero_pages -= 1

    def break_cow(self, item) -> None:
        """break_cow(): undo a merge of the item's page (used on failure paths)."""
        item.anon_vma = None
        vma = self.find_mergeable_vma(item.mm, item.address)
        if vma is not None:
            self.break_ksm(vma, item.address)

    def break_ksm(self, vma, address) -> None:
        """break_ksm(): unshare a KSM page or KSM zero page at ``address``.

        6.2+ uses FAULT_FLAG_UNSHARE (a private copy, not yet writable); earlier
        kernels took a write fault.  Before 6.6 KSM zero pages were left alone.
        """
        mm = vma.mm
        pte = mm.pagetables.get_pte(address)
        if not pte_present(pte):
            return
        if pte_special(pte):
            if not (is_ksm_zero_pte(pte) and self.profile.ksm_zero_pages_counter):
                return
        else:
            page = self.memory.pages.get(pte_pfn(pte))
            if page is None or not page.flags & PG_ksm:
                return
        flags = (FAULT_FLAG_UNSHARE if self.profile.ksm_break_with_unshare else 1) | \
            FAULT_FLAG_REMOTE
        self._emit("break_ksm", "break_ksm", mm.owner_pid, address, pte_pfn(pte),
                   "unshare" if flags & FAULT_FLAG_UNSHARE else "write_fault")
        handle_mm_fault(mm, vma, address, flags)

    def unmerge_ksm_pages(self, vma, start, end) -> None:
        """unmerge_ksm_pages(): break_ksm() on every page; counters wait for ksmd."""
        for addr, _pte in list(vma.mm.pagetables.present(start, end)):
            if vma.mm.mm_users == 0:
                break
            self.break_ksm(vma, addr)
