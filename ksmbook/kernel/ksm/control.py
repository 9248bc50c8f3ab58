"""Opting in and out: madvise, prctl, fork, exit, and run=2.

__ksm_enter() puts a new mm just behind the cursor (so it is first scanned in the
next full scan) unless run=2; ksm_exit() moves an exiting mm right after the cursor
so ksmd cleans it next.  MADV_UNMERGEABLE and prctl(0) unshare at once but leave the
rmap_items and counters for ksmd to fix on its next pass.
"""
from __future__ import annotations

import errno

from ..errors import kernel_error
from .structs import KsmMmSlot

KSM_RUN_STOP, KSM_RUN_MERGE, KSM_RUN_UNMERGE = 0, 1, 2


class ControlMixin:

    # --- the circular mm list ---
    def _insert_before(self, slot, ref) -> None:
        slot.prev, slot.next = ref.prev, ref
        ref.prev.next = slot
        ref.prev = slot

    def _insert_after(self, slot, ref) -> None:
        self._insert_before(slot, ref.next)

    def _unlink_slot(self, slot) -> None:
        slot.prev.next = slot.next
        slot.next.prev = slot.prev
        slot.prev = slot.next = slot
        self.mm_slots.pop(slot.mm, None)

    def slots(self) -> list:
        """The mm_slots in ksmd's order (for the book and tests)."""
        out, s = [], self.ksm_mm_head.next
        while s is not self.ksm_mm_head:
            out.append(s)
            s = s.next
        return out

    def __ksm_enter(self, mm) -> None:
        slot = KsmMmSlot(mm)
        self.mm_slots[mm] = slot
        if self.run & KSM_RUN_UNMERGE:
            self._insert_before(slot, self.ksm_mm_head)        # list_add_tail(head)
        else:
            self._insert_before(slot, self.ksm_scan.mm_slot)   # just behind the cursor
        mm.flags |= self.MMF_VM_MERGEABLE

    def ksm_exit(self, mm) -> None:
        """__ksm_exit(): free the slot now if it has no items, else let ksmd do it."""
        if not mm.flags & self.MMF_VM_MERGEABLE:
            return
        slot = self.mm_slots.get(mm)
        if slot is not None and self.ksm_scan.mm_slot is not slot:
            if slot.rmap_list is None:
                self._unlink_slot(slot)
                mm.flags &= ~(self.MMF_VM_MERGEABLE | self.MMF_VM_MERGE_ANY)
            else:
                slot.prev.next = slot.next
                slot.next.prev = slot.prev
                self._insert_after(slot, self.ksm_scan.mm_slot)

    def ksm_fork(self, child, parent) -> None:
        """ksm_fork(): the child joins KSM if the parent had; rmap_items are not copied."""
        prof = self.profile
        if prof.prctl_memory_merge and parent.flags & self.MMF_VM_MERGE_ANY:
            child.flags |= self.MMF_VM_MERGE_ANY
        if prof.ksm_fork_resets_counters:
            child.ksm_merging_pages = 0
            child.ksm_rmap_items = 0
            child.ksm_zero_pages = parent.ksm_zero_pages
            self.ksm_zero_pages += child.ksm_zero_pages
        else:   # dup_mm() copied the parent's counters with the rest of the struct
            child.ksm_merging_pages = parent.ksm_merging_pages
            child.ksm_rmap_items = parent.ksm_rmap_items
            child.ksm_zero_pages = parent.ksm_zero_pages
        if parent.flags & self.MMF_VM_MERGEABLE:
            self.__ksm_enter(child)

    # --- VMA flags ---
    def vma_ksm_compatible(self, vma) -> bool:
        bad = (vma.VM_SHARED | vma.VM_MAYSHARE | vma.VM_PFNMAP | vma.VM_IO | vma.VM_DONTEXPAND
               | vma.VM_HUGETLB | vma.VM_MIXEDMAP)
        return not vma.flags & bad

    def ksm_add_vma(self, vma) -> None:
        """ksm_add_vma()/ksm_vma_flags(): prctl mode makes new VMAs mergeable."""
        mm = vma.mm
        if mm.flags & self.MMF_VM_MERGE_ANY and self.vma_ksm_compatible(vma):
            if not mm.flags & self.MMF_VM_MERGEABLE:
                self.__ksm_enter(mm)        # the scanner dropped the slot, MERGE_ANY stayed
            vma.flags |= vma.VM_MERGEABLE

    def ksm_madvise(self, mm, start, end, advice) -> None:
        """madvise(MADV_MERGEABLE / MADV_UNMERGEABLE) over [start, end)."""
        from ..mm import MADV_MERGEABLE
        vmas = mm.vmas_in(start, end)
        if advice == MADV_MERGEABLE:
            todo = [v for v in vmas if not v.flags & v.VM_MERGEABLE and self.vma_ksm_compatible(v)]
            if not todo:
                return
            if not mm.flags & self.MMF_VM_MERGEABLE:
                self.__ksm_enter(mm)
            for v in mm.isolate(start, end, lambda v: not v.flags & v.VM_MERGEABLE and
                                self.vma_ksm_compatible(v)):
                if not v.flags & v.VM_MERGEABLE and self.vma_ksm_compatible(v):
                    v.flags |= v.VM_MERGEABLE
            return
        if not any(v.flags & v.VM_MERGEABLE for v in vmas):
            return
        try:
            for v in mm.isolate(start, end, lambda v: bool(v.flags & v.VM_MERGEABLE)):
                if v.flags & v.VM_MERGEABLE:
                    # ksm_madvise(): on an unmerge error (ENOMEM) this VMA keeps
                    # VM_MERGEABLE, the VMAs before it stay done, pages broken so far
                    # stay broken: unmerge_ksm_pages() stops where break_ksm() failed
                    if v.anon_vma is not None:
                        self.unmerge_ksm_pages(v, v.start, v.end)
                    v.flags &= ~v.VM_MERGEABLE
        finally:
            self.fp.vma_unmergeable()       # get_mergeable_page() refuses these pages now

    def ksm_enable_merge_any(self, mm) -> None:
        if mm.flags & self.MMF_VM_MERGE_ANY:
            return
        if not mm.flags & self.MMF_VM_MERGEABLE:
            self.__ksm_enter(mm)
        mm.flags |= self.MMF_VM_MERGE_ANY
        for v in mm.vmas:
            if self.vma_ksm_compatible(v):
                v.flags |= v.VM_MERGEABLE

    def ksm_disable_merge_any(self, mm) -> None:
        """prctl(PR_SET_MEMORY_MERGE, 0): unmerge and clear VM_MERGEABLE everywhere."""
        if not mm.flags & self.MMF_VM_MERGE_ANY:
            return
        for v in mm.vmas:
            if v.flags & v.VM_MERGEABLE:
                if v.anon_vma is not None:
                    self.unmerge_ksm_pages(v, v.start, v.end)
                v.flags &= ~v.VM_MERGEABLE
        mm.flags &= ~self.MMF_VM_MERGE_ANY
        self.fp.vma_unmergeable()           # get_mergeable_page() refuses these pages now

    # --- run ---
    def set_run(self, value: int) -> None:
        """run_store(): 0 stop, 1 merge, 2 stop and unmerge everything (synchronously)."""
        if value == self.run:
            return
        self.run = value
        if value & KSM_RUN_UNMERGE:
            try:
                self.unmerge_and_remove_all_rmap_items()
            except OSError:
                # run_store(): "if (err) { ksm_run = KSM_RUN_STOP; count = err; }", and
                # unmerge_and_remove_all_rmap_items()'s error path puts ksm_scan.mm_slot
                # back on &ksm_mm_head.  What was unmerged before the failure stays so.
                self.run = 0
                self.ksm_scan.mm_slot = self.ksm_mm_head
                raise

    def unmerge_and_remove_all_rmap_items(self) -> None:
        """unmerge_and_remove_all_rmap_items(): break every merge, free every item,
        reset full_scans to 0.  Slots of live mms stay (their VMAs stay mergeable)."""
        head = self.ksm_mm_head
        scan = self.ksm_scan
        scan.mm_slot = head.next
        while scan.mm_slot is not head:
            slot = scan.mm_slot
            mm = slot.mm
            if mm.mm_users:
                for v in list(mm.vmas):
                    if v.flags & v.VM_MERGEABLE and v.anon_vma is not None:
                        self.unmerge_ksm_pages(v, v.start, v.end)
            self.remove_trailing_rmap_items(slot)
            scan.mm_slot = slot.next
            if mm.mm_users == 0:
                self._unlink_slot(slot)
                mm.flags &= ~(self.MMF_VM_MERGEABLE | self.MMF_VM_MERGE_ANY)
        self.remove_all_stable_nodes()
        scan.seqnr = 0
        scan.rmap_list = head
        scan.address = 0

    def check_empty_stable_tree(self, what: str) -> None:
        """The EBUSY rule of merge_across_nodes and max_page_sharing stores."""
        if self.ksm_pages_shared or self.remove_all_stable_nodes():
            raise kernel_error(errno.EBUSY, f"{what}: KSM pages are still shared (write 2 to run)")
