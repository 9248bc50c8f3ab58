"""Physical memory: page frames (struct page / folio) and a buddy-like allocator.

Each frame carries its bytes, its reference and map counts, its flags and its NUMA
node, as ``struct folio`` does for an order-0 folio.  Freed frame numbers are reused
most-recently-freed first, like the per-CPU page lists in front of the buddy allocator,
so a reader sees pfns come back.
"""
from __future__ import annotations

from .errors import enomem

# page flags (include/linux/page-flags.h names where one exists)
PG_anon = 1 << 0          # folio_test_anon(): mapping points at an anon_vma
PG_ksm = 1 << 1           # folio_test_ksm(): mapping points at a KSM stable node
PG_zero = 1 << 2          # the shared zero page (is_zero_pfn)
PG_table = 1 << 3         # a page-table page (PageTable)
PG_shmem = 1 << 4         # backs a MAP_SHARED anonymous mapping (shmem)
PG_anon_exclusive = 1 << 5  # PageAnonExclusive(): known to be mapped by one process only
PG_lru_batch = 1 << 6      # in a per-CPU lru_add folio_batch: one more reference (swap.py)

FLAG_NAMES = {PG_anon: "anon", PG_ksm: "ksm", PG_zero: "zero", PG_table: "table",
              PG_shmem: "shmem", PG_anon_exclusive: "exclusive", PG_lru_batch: "lru_batch"}

#: pfns of node n start at n * NODE_PFN_SPAN (pfn_to_nid() is a division)
NODE_PFN_SPAN = 1 << 20
ZERO_PFN = 0


class Page:
    """One page frame: ``struct page`` of an order-0 folio."""
    __slots__ = ("pfn", "data", "refcount", "mapcount", "flags", "nid", "mapping")

    def __init__(self, pfn: int, nid: int, data):
        self.pfn = pfn
        # bytearray(page_size); None for page-table pages.  Written only through
        # PhysicalMemory.write_page(), which tells KSM's shortcuts first.
        self.data = data
        self.refcount = 0           # folio_ref_count()
        self.mapcount = 0           # folio_mapcount(): PTEs that map it
        self.flags = 0
        self.nid = nid
        self.mapping = None         # anon_vma marker, or the KSM stable node (keyhole ref)

    # folio_test_*() spellings, so the KSM code reads like mm/ksm.c
    def test(self, flag: int) -> bool:
        return bool(self.flags & flag)

    @property
    def is_ksm(self) -> bool:
        return bool(self.flags & PG_ksm)

    @property
    def is_anon(self) -> bool:
        return bool(self.flags & PG_anon)

    @property
    def is_zero(self) -> bool:
        return bool(self.flags & PG_zero)

    def flag_names(self) -> list[str]:
        return [n for f, n in FLAG_NAMES.items() if self.flags & f]

    def __repr__(self):
        return (f"Page(pfn={self.pfn:#x}, nid={self.nid}, ref={self.refcount}, "
                f"map={self.mapcount}, flags={'|'.join(self.flag_names()) or '0'})")


class PhysicalMemory:
    """All frames of the machine, per NUMA node, with alloc_page()/free_page()."""

    def __init__(self, machine, page_size: int, numa_nodes: int, pages_per_node: int | None):
        self.machine = machine
        self.page_size = page_size
        self.numa_nodes = numa_nodes
        self.pages_per_node = pages_per_node    # None: unlimited
        self.pages: dict[int, Page] = {}        # pfn -> Page, allocated frames only
        self._free: list[list[int]] = [[] for _ in range(numa_nodes)]
        self._next: list[int] = [n * NODE_PFN_SPAN + (1 if n == 0 else 0)
                                 for n in range(numa_nodes)]
        self.zero_page = Page(ZERO_PFN, 0, bytes(page_size))
        self.zero_page.flags = PG_zero
        self.zero_page.refcount = 1             # reserved forever, like the kernel's
        self.fp = machine.fp                    # KSM's shortcuts: told of writes and frees

    def pfn_to_page(self, pfn: int) -> Page:
        if pfn == ZERO_PFN:
            return self.zero_page
        return self.pages[pfn]

    @staticmethod
    def pfn_to_nid(pfn: int) -> int:
        return pfn // NODE_PFN_SPAN

    def alloc_page(self, nid: int = 0, *, purpose: str = "anon", zeroed: bool = True) -> Page:
        """alloc_pages(): one frame on ``nid``, zero-filled unless told otherwise."""
        if not 0 <= nid < self.numa_nodes:
            raise ValueError(f"no NUMA node {nid}")
        free = self._free[nid]
        if free:
            pfn = free.pop()
        else:
            used = self._next[nid] - nid * NODE_PFN_SPAN
            if self.pages_per_node is not None and used >= self.pages_per_node:
                raise enomem(f"node {nid} out of memory")
            pfn = self._next[nid]
            self._next[nid] += 1
        data = None if purpose == "table" else bytearray(self.page_size)
        page = Page(pfn, nid, data)
        page.refcount = 1
        self.pages[pfn] = page
        ev = self.machine.events
        if ev.enabled:
            ev.put(("PageAlloc", self.machine.clock_ns, pfn, nid, purpose))
        return page

    def put_page(self, page: Page) -> None:
        """folio_put(): drop one reference, freeing the frame when none remain."""
        if page.flags & PG_zero:
            return
        page.refcount -= 1
        if page.refcount == 0:
            self._free_page(page)
        elif page.refcount < 0:
            raise AssertionError(f"refcount underflow on {page!r}")

    def _free_page(self, page: Page) -> None:
        if page.mapcount:
            raise AssertionError(f"freeing a mapped page {page!r}")
        del self.pages[page.pfn]
        self._free[page.nid].append(page.pfn)
        # A freed KSM page keeps no link to its stable node: the node goes stale and
        # KSM finds out lazily (ksm_get_folio), exactly like the keyhole reference;
        # what the shortcuts remembered about this frame is void
        self.fp.page_freed(page)
        page.flags = 0
        page.mapping = None
        ev = self.machine.events
        if ev.enabled:
            ev.put(("PageFree", self.machine.clock_ns, page.pfn))

    # --- the one way page bytes change ---
    def write_page(self, page: Page, offset: int, data) -> None:
        """Store ``data`` into ``page`` at ``offset``: every writer of page contents
        (a CPU store through Process.write, a KVM guest write, a COW copy) comes here,
        and KSM's shortcuts hear of it before the bytes change (fastpath.py)."""
        self.fp.before_page_write(page)
        page.data[offset:offset + len(data)] = data

    def copy_page(self, dst: Page, src: Page) -> None:
        """copy_user_highpage(): ``dst`` gets ``src``'s bytes."""
        self.write_page(dst, 0, src.data)

    def free_pfns(self) -> list[int]:
        """Frames handed out once and freed since (read-only, for the book's frame map)."""
        return sorted(pfn for free in self._free for pfn in free)

    def nr_free(self, nid: int) -> int | None:
        """Frames still allocatable on ``nid``; None when memory is unlimited."""
        if self.pages_per_node is None:
            return None
        used = self._next[nid] - nid * NODE_PFN_SPAN
        return len(self._free[nid]) + self.pages_per_node - used

    def reserve(self, need: dict, what: str) -> None:
        """ENOMEM now, before anything changes, unless node n has ``need[n]`` free frames.

        Callers that allocate several frames (a multi-page access, fork) check first, so
        running out of memory never leaves them half done.
        """
        for nid, n in need.items():
            free = self.nr_free(nid)
            if free is not None and n > free:
                raise enomem(f"{what}: node {nid} has {free} free frames, {n} needed")

    def nr_allocated(self, purpose_flag: int | None = None) -> int:
        if purpose_flag is None:
            return len(self.pages)
        return sum(1 for p in self.pages.values() if p.flags & purpose_flag)
