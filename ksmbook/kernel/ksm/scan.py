"""The scanner: scan_get_next_rmap_item(), cmp_and_merge_page(), ksm_do_scan().

One cursor walks every registered mm, every VM_MERGEABLE VMA with an anon_vma,
every present anonymous page, in address order -- a THP's 512 subpages one by one,
as folio_walk_start() returns the subpage under a huge PMD (each gets its own
rmap_item and checksum; the first merge attempt splits the THP, ksm/merge.py).  The unstable tree is emptied at
the start of each full scan and ``full_scans`` (seqnr) counts up at its end; a batch
never crosses that boundary.
"""
from __future__ import annotations

from ..memory import PG_anon, PG_ksm
from ..pagetable import (_PAGE_PRESENT, _PAGE_PROTNONE, _PAGE_SPECIAL, PTE_PFN_MASK, PTE_PFN_SHIFT,
                         pmd_subpage_pte)
from .checksum import jhash2, xxh64, xxhash_u32
from .structs import STABLE_FLAG, UNSTABLE_FLAG, KsmRmapItem


_PRESENT_OR_PROTNONE = _PAGE_PRESENT | _PAGE_PROTNONE      # pte_present() on x86


def pte_tables(pagetables, address: int, end: int, page_shift: int):
    """The scanner's page walk over [address, end) of one VMA, one last-level table
    (512 PTEs) at a time: (base, entries, first, stop), the PTEs of the pages in
    the range being entries[first:stop] and page i's address base + (i << PAGE_SHIFT).
    Under a huge PMD, the subpages' PTEs (folio_walk_start() gives the subpage);
    no table, or the huge zero page: nothing, up to its end."""
    table_shift = page_shift + 9
    table_span = 1 << table_shift
    leaves, huge = pagetables.leaves, pagetables.huge
    while address < end:
        table_key = address >> table_shift
        base = table_key << table_shift
        stop = min(end, base + table_span)
        table = leaves.get(table_key)
        if table is not None:
            yield base, table.entries, (address - base) >> page_shift, (stop - base) >> page_shift
        else:
            pmd = huge.get(table_key, 0) if huge else 0
            if pmd and not pmd & _PAGE_SPECIAL:
                yield (base, [pmd_subpage_pte(pmd, i) for i in range(512)],
                       (address - base) >> page_shift, (stop - base) >> page_shift)
        address = stop


def skip_age(age: int) -> int:
    """skip_age(): how many scans smart scan may skip after an unsuccessful visit."""
    if age <= 3:
        return 1
    if age <= 5:
        return 2
    if age <= 8:
        return 4
    return 8


class ScanMixin:

    def calc_checksum(self, page) -> int:
        """calc_checksum(): xxhash64 of the page cut to 32 bits (5.0+), jhash2 before."""
        if self.profile.ksm_xxhash_checksum:
            return xxhash_u32(page.data)
        return jhash2(page.data)

    # --- rmap_item lists ---
    def get_next_rmap_item(self, slot, link, address):
        """get_next_rmap_item(): reuse the item at ``address`` or allocate a zeroed one.

        Items passed over (their pages vanished) are removed and freed on the way.
        """
        while link.rmap_list is not None:
            item = link.rmap_list
            if item.address == address:
                return item
            if item.address > address:
                break
            link.rmap_list = item.rmap_list
            self.remove_rmap_item_from_tree(item)
            self.free_rmap_item(item)
        item = self.new_rmap_item(slot.mm, address)
        item.rmap_list = link.rmap_list
        link.rmap_list = item
        return item

    def new_rmap_item(self, mm, address):
        self.ksm_rmap_items += 1
        mm.ksm_rmap_items += 1
        return KsmRmapItem(mm, address)

    def free_rmap_item(self, item) -> None:
        self.ksm_rmap_items -= 1
        item.mm.ksm_rmap_items -= 1

    def remove_trailing_rmap_items(self, link) -> None:
        """remove_trailing_rmap_items(): free every item after the cursor's link."""
        while link.rmap_list is not None:
            item = link.rmap_list
            link.rmap_list = item.rmap_list
            self.remove_rmap_item_from_tree(item)
            self.free_rmap_item(item)

    # --- smart scan (6.7+) ---
    def should_skip_rmap_item(self, page, item) -> bool:
        """should_skip_rmap_item(): skip pages that keep failing to merge, 1-2-4-8 scans."""
        if not self.smart_scan or page.flags & PG_ksm:
            return False
        age = item.age
        if age != 255:
            item.age = age + 1
        if age < 3:
            return False
        if not item.remaining_skips:
            item.remaining_skips = skip_age(age)
            return False
        self.ksm_pages_skipped += 1
        item.remaining_skips -= 1
        self.remove_rmap_item_from_tree(item)
        if self.machine.events.enabled:
            self._emit("should_skip_rmap_item", "skip", item.mm.owner_pid, item.address,
                       page.pfn, "skipped",
                       info={"age": item.age, "remaining_skips": item.remaining_skips})
        return True

    # --- the cursor ---
    def scan_get_next_rmap_item(self):
        """scan_get_next_rmap_item(): (item, page) of the next page to look at, or None.

        None ends the batch; when it ends a full scan, seqnr (full_scans) goes up.
        """
        return next(self.scan_rmap_items(), None)

    def scan_rmap_items(self):
        """scan_get_next_rmap_item() called until it returns NULL, as a generator.

        Each item it yields is what one more call would return; the cursor
        (ksm_scan.mm_slot, address, rmap_list) is stored back before every yield.  One
        generator lives for one ksm_do_scan() batch, during which only
        cmp_and_merge_page() runs between calls, and it neither moves the cursor nor
        changes VMAs or the mm list; so the walk keeps its place in locals instead of
        starting over from the mm's first VMA for every page.  (fastpath.py's fused
        batch walks the same way, with the same helpers, without the generator.)
        """
        slot = self.scan_cursor_slot()
        if slot is None:
            return
        scan = self.ksm_scan
        page_size = self.page_size
        page_shift = self.machine.page_shift
        pages = self.memory.pages
        smart_scan = self.smart_scan
        while slot is not None:
            mm = slot.mm
            if mm.mm_users:
                pagetables = mm.pagetables
                for vma in self.scan_vmas(mm):
                    # the page walk, with the cursor in locals (stored back to yield)
                    link = scan.rmap_list
                    for base, entries, first, stop in pte_tables(pagetables, scan.address,
                                                                 vma.end, page_shift):
                        for i in range(first, stop):
                            pte = entries[i]
                            if pte & _PRESENT_OR_PROTNONE and not pte & _PAGE_SPECIAL:
                                page = pages.get((pte & PTE_PFN_MASK) >> PTE_PFN_SHIFT)
                                if page is not None and page.flags & PG_anon:
                                    address = base + (i << page_shift)
                                    item = link.rmap_list   # get_next_rmap_item()'s usual hit
                                    if item is None or item.address != address:
                                        item = self.get_next_rmap_item(slot, link, address)
                                    link = item
                                    if smart_scan and self.should_skip_rmap_item(page, item):
                                        continue
                                    scan.address, scan.rmap_list = address + page_size, link
                                    yield item, page
                                    link = scan.rmap_list
                    scan.address, scan.rmap_list = vma.end, link
            else:
                scan.address = 0
                scan.rmap_list = slot
            slot = self.scan_next_mm(slot)

    def scan_cursor_slot(self):
        """scan_get_next_rmap_item()'s start: the mm_slot the cursor is in, starting a
        full scan first when the cursor is back at ksm_mm_head; None: nothing to scan
        (no mm registered, or none left after the start)."""
        head = self.ksm_mm_head
        if head.next is head:
            return None
        scan = self.ksm_scan
        slot = scan.mm_slot
        if slot is head:
            self.advisor_start_scan()
            # "A number of pages can hang around indefinitely in per-cpu LRU cache,
            # raised page count preventing write_protect_page from merging them":
            # drained once per full scan, not per batch (kernel/swap.py)
            self.machine.cpu_fbatches.lru_add_drain_all()
            self.unstable_tree_reset()
            if self.machine.events.enabled:
                self._emit("scan_get_next_rmap_item", "scan_start", 0, 0, 0, "tree_reset",
                           info={"seqnr": scan.seqnr})
            slot = head.next
            scan.mm_slot = slot
            if slot is head:
                return None
            scan.address = 0
            scan.rmap_list = slot
        return slot

    def scan_vmas(self, mm):
        """scan_get_next_rmap_item()'s VMA loop over ``mm`` from the cursor: each
        VM_MERGEABLE VMA not yet passed, with ksm_scan.address moved to where its
        page walk begins (its end, when it has no anon_vma: nothing to walk)."""
        scan = self.ksm_scan
        for vma in mm.vmas:
            if vma.end <= scan.address or not vma.flags & vma.VM_MERGEABLE:
                continue
            if scan.address < vma.start:
                scan.address = vma.start
            if vma.anon_vma is None:
                scan.address = vma.end
            yield vma

    def scan_next_mm(self, slot):
        """scan_get_next_rmap_item() at the end of ``slot``'s mm: free the items past
        the cursor, drop the mm if it has no VM_MERGEABLE VMA left (or exited), move
        on.  Returns the next mm_slot, or None when that ends the full scan (seqnr
        goes up)."""
        scan = self.ksm_scan
        mm = slot.mm
        self.remove_trailing_rmap_items(scan.rmap_list)
        nxt = slot.next
        scan.mm_slot = nxt
        if scan.address == 0:
            # no VM_MERGEABLE VMA left (or the mm exited): drop the mm
            self._unlink_slot(slot)
            mm.flags &= ~self.MMF_VM_MERGEABLE
            if not self.profile.ksm_scanner_keeps_merge_any:
                mm.flags &= ~self.MMF_VM_MERGE_ANY
        if nxt is self.ksm_mm_head:
            self.advisor_stop_scan()
            scan.seqnr += 1
            if self.machine.events.enabled:
                self._emit("scan_get_next_rmap_item", "scan_end", 0, 0, 0, "done",
                           info={"seqnr": scan.seqnr})
            return None
        scan.address = 0
        scan.rmap_list = nxt
        return nxt

    # --- the decision ---
    def cmp_and_merge_page(self, page, item, checked: bool = False) -> None:
        """cmp_and_merge_page(): stable tree, checksum, zero page, unstable tree, merge.

        6.11+ (d58a361b0350) tests the checksum before searching the stable tree;
        older kernels search the stable tree first, so a page identical to an
        existing KSM page merges on its very first visit.  ``checked`` (ksmbook):
        the caller (fastpath.py's fused batch) has just done the 6.11+ prologue for
        this page, which is not a KSM page: remove_rmap_item_from_tree() and a
        checksum that held still.
        """
        bypass = False
        stable_node = page.mapping if page.flags & PG_ksm else None
        if stable_node is not None:
            if item.head is stable_node:
                return
            if not self.is_page_sharing_candidate(stable_node):
                bypass = True          # a KSM fork may go past max_page_sharing
        elif self.profile.ksm_checksum_before_stable_search:
            if not checked:
                self.remove_rmap_item_from_tree(item)
                if not self._checksum_unchanged(page, item):
                    return
            # (the use_zero_pages test is the function's own first one, done here: hot)
            if self.use_zero_pages and self.try_to_merge_with_zero_page(item, page) == 0:
                return

        # the 6.11+ order has just checked the checksum: stable_tree_search() may use it
        checksum = item.oldchecksum if stable_node is None and \
            self.profile.ksm_checksum_before_stable_search else None
        kfolio = self.stable_tree_search(page, checksum)
        if kfolio is page and item.head is stable_node:
            return
        if item.flags & (STABLE_FLAG | UNSTABLE_FLAG):      # else it has nothing to do
            self.remove_rmap_item_from_tree(item)
        if kfolio is not None:
            if self.try_to_merge_with_ksm_page(item, page, kfolio):
                self.stable_tree_append(item, kfolio.mapping, bypass)
                ev = self.machine.events
                if ev.enabled:
                    node = kfolio.mapping
                    ev.put(("KsmEvent", self.machine.clock_ns, "try_to_merge_with_ksm_page",
                            "stable_hit", item.mm.owner_pid, item.address, page.pfn,
                            "merged", None, None, None, kfolio.pfn, node.id,
                            {"sharers": node.rmap_hlist_len}))
            return

        if not self.profile.ksm_checksum_before_stable_search:
            if not self._checksum_unchanged(page, item):
                return
            if self.try_to_merge_with_zero_page(item, page) == 0:
                return

        tree_item, tree_page = self.unstable_tree_search_insert(item, page)
        if tree_item is None:
            return
        kpage = self.try_to_merge_two_pages(item, page, tree_item, tree_page)
        if kpage is None:
            # "If both pages we tried to merge belong to the same compound page, then
            # we actually ended up increasing the reference count of the same compound
            # page twice, and split_huge_page failed": with the tree page put, split
            # it now, but merge nothing this time
            if page.folio is not None and page.folio is tree_page.folio:
                self.split_thp(page, 1)
            return
        node = self.stable_tree_insert(kpage)
        self.stable_tree_append(tree_item, node, False)
        self.stable_tree_append(item, node, False)
        ev = self.machine.events
        if ev.enabled:
            ev.put(("KsmEvent", self.machine.clock_ns, "try_to_merge_two_pages", "merge",
                    item.mm.owner_pid, item.address, kpage.pfn, "merged", None,
                    tree_item.mm.owner_pid, tree_item.address, tree_page.pfn, node.id))

    def _checksum_unchanged(self, page, item) -> bool:
        """calc_checksum() and the oldchecksum test of cmp_and_merge_page()."""
        fp = self.fp
        if self.profile.ksm_xxhash_checksum:
            checksum = page.checksum_memo if fp.enabled else -1     # fastpath.py, shortcut 7
            if checksum < 0:
                checksum = xxh64(page.data) & 0xFFFFFFFF      # calc_checksum(), inlined: hot
                if fp.enabled:
                    page.checksum_memo = checksum
            elif fp.check:
                fp.check_checksum_memo(page)
        else:
            checksum = self.calc_checksum(page)
        ev = self.machine.events
        if item.oldchecksum != checksum:
            outcome = "changed" if item.oldchecksum else "first_visit"
            item.oldchecksum = checksum
            if ev.enabled:                 # (a KsmEvent, built when read: hot)
                ev.put(("KsmEvent", self.machine.clock_ns, "cmp_and_merge_page", "checksum",
                        item.mm.owner_pid, item.address, page.pfn, outcome, checksum))
            return False
        if ev.enabled:
            ev.put(("KsmEvent", self.machine.clock_ns, "cmp_and_merge_page", "checksum",
                    item.mm.owner_pid, item.address, page.pfn, "unchanged", checksum))
        return True

    def ksm_do_scan(self, scan_npages: int) -> int:
        """ksm_do_scan(): up to ``scan_npages`` cmp_and_merge_page() calls; returns how many."""
        done = 0
        if scan_npages <= 0:
            return done
        fp = self.fp
        if fp.enabled and not fp.check and self.profile.ksm_checksum_before_stable_search and \
                self.profile.ksm_xxhash_checksum:
            return fp.do_scan(scan_npages)       # the same loop, common cases inline
        count_scanned = self.profile.ksm_pages_scanned
        cmp_and_merge_page = self.cmp_and_merge_page
        for item, page in self.scan_rmap_items():     # scan_get_next_rmap_item() until NULL
            # cmp_and_merge_page() remaps only ``item`` (never in the unstable tree
            # while it runs) and the tree item it merges with (which leaves the tree,
            # or keeps its page when the merge fails), so the unstable tree's
            # remembered pages stay right across it (see unstable_tree.py)
            valid = fp.unstable_valid_seq == fp.mapping_seq
            splits = self.thp_splits
            cmp_and_merge_page(page, item)
            # a THP split remaps all 512 subpages (some to the zero page): the tree's
            # remembered pages may be gone, so the validity is not carried over it
            if valid and self.thp_splits == splits:
                fp.unstable_valid_seq = fp.mapping_seq
            done += 1
            if count_scanned:
                self.ksm_pages_scanned += 1
            if done == scan_npages:
                break
        return done
