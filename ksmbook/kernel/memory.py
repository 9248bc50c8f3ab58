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
#: subpages of a PMD-order folio (HPAGE_PMD_NR: 2 MiB of 4 KiB pages)
HPAGE_PMD_NR = 512
#: where each node's PMD-order (2 MiB) folios are carved from (a multiple of 512)
HUGE_PFN_OFFSET = NODE_PFN_SPAN // 2


class Page:
    """One page frame: ``struct page`` of an order-0 folio, or one subpage of a
    large folio (``folio`` set: a transparent huge page, see :class:`LargeFolio`)."""
    __slots__ = ("pfn", "data", "refcount", "mapcount", "flags", "nid", "mapping", "folio",
                 "checksum_memo")

    def __init__(self, pfn: int, nid: int, data):
        self.pfn = pfn
        # page_size bytes; None for page-table pages.  An immutable ``bytes`` that
        # other frames may share (all zeroes, or a whole-page fill) until
        # PhysicalMemory.write_page() gives the frame a bytearray of its own: 25,600
        # pages filled alike cost one page of bytes, not 100 MiB.  Written only through
        # write_page(), which tells KSM's shortcuts first.
        self.data = data
        self.refcount = 0           # folio_ref_count()
        self.mapcount = 0           # folio_mapcount(): PTEs that map it
        self.flags = 0
        self.nid = nid
        self.mapping = None         # anon_vma marker, or the KSM stable node (keyhole ref)
        self.folio = None           # the LargeFolio this frame is a subpage of, or None
        # ksmbook only (kernel/ksm/fastpath.py, shortcut 7): calc_checksum() of ``data``
        # as it is now, or -1; write_page() forgets it before the bytes change
        self.checksum_memo = -1

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


class LargeFolio:
    """A PMD-order anonymous folio (a THP): 512 subpages of 4 KiB, pfn-aligned.

    Linux keeps one refcount and one large mapcount for the whole folio.  ksmbook
    splits them the way the page tables hold them: each subpage's ``refcount`` and
    ``mapcount`` count the PTEs that map that subpage (a PTE-mapped THP holds one
    folio reference per PTE, as after __split_huge_pmd()), and ``pmd_maps`` counts
    the huge PMDs that map the whole folio (one reference and one mapping each).
    So ``folio_ref_count()`` = ``pmd_maps`` + the subpages' refcounts, and
    ``folio_mapcount()`` (the large mapcount) = ``pmd_maps`` + the subpages' mapcounts.
    A subpage whose count drops to 0 is not freed: the frames go back only when the
    whole folio has no reference left, or one by one after split_huge_page().

    ``address`` is the user address of the first subpage (folio->index of an anon
    folio): fork keeps it, so every mapping of the folio is at that address.
    ``deferred`` is the deferred-split queue: set by deferred_split_folio() once the
    folio is partially mapped (thp_deferred_split_page); the queue's shrinker only
    runs under memory pressure, which ksmbook does not model.
    """
    __slots__ = ("pages", "pmd_maps", "mapping", "nid", "address", "deferred", "huge_zero")

    def __init__(self, pages, nid: int, address: int, *, huge_zero: bool = False):
        self.pages = pages
        self.pmd_maps = 0
        self.mapping = None
        self.nid = nid
        self.address = address
        self.deferred = False
        self.huge_zero = huge_zero

    @property
    def pfn(self) -> int:
        return self.pages[0].pfn

    @property
    def nr_pages(self) -> int:
        return len(self.pages)

    def ref_count(self) -> int:
        """folio_ref_count()."""
        return self.pmd_maps + sum(p.refcount for p in self.pages)

    def large_mapcount(self) -> int:
        """folio_mapcount() of a large folio: every page-table entry that maps it."""
        return self.pmd_maps + sum(p.mapcount for p in self.pages)

    def __repr__(self):
        return (f"LargeFolio(pfn={self.pfn:#x}, nr={self.nr_pages}, pmd_maps={self.pmd_maps}, "
                f"ref={self.ref_count()}, map={self.large_mapcount()})")


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
        # PMD-order folios come from the upper half of each node's pfn span, so that
        # order-0 pfns stay what they were before THP was modelled; freed huge
        # ranges are reused most-recently-freed first, like order-0 frames
        self._huge_next: list[int] = [n * NODE_PFN_SPAN + HUGE_PFN_OFFSET
                                      for n in range(numa_nodes)]
        self._huge_free: list[list[int]] = [[] for _ in range(numa_nodes)]
        self._huge_in_use = [0] * numa_nodes        # frames of live large folios
        self._split_frames = [0] * numa_nodes       # frames of split THPs still in use
        # the bytes every new frame starts with (shared, immutable: see Page.data)
        self.zero_bytes = bytes(page_size)
        self._last_fill = self.zero_bytes       # the last whole-page contents written
        self.zero_page = Page(ZERO_PFN, 0, self.zero_bytes)
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
            used = (self._next[nid] - nid * NODE_PFN_SPAN + self._huge_in_use[nid]
                    + self._split_frames[nid])
            if self.pages_per_node is not None and used >= self.pages_per_node:
                raise enomem(f"node {nid} out of memory")
            pfn = self._next[nid]
            self._next[nid] += 1
        data = None if purpose == "table" else self.zero_bytes
        page = Page(pfn, nid, data)
        page.refcount = 1
        self.pages[pfn] = page
        ev = self.machine.events
        if ev.enabled:
            ev.put(("PageAlloc", self.machine.clock_ns, pfn, nid, purpose))
        return page

    def put_page(self, page: Page) -> None:
        """folio_put(): drop one reference, freeing the frame when none remain.

        A subpage of a large folio frees nothing by itself: the whole folio goes
        when its last reference does (free_folio_and_swap_cache of a THP)."""
        if page.flags & PG_zero:
            return
        page.refcount -= 1
        if page.refcount < 0:
            raise AssertionError(f"refcount underflow on {page!r}")
        folio = page.folio
        if folio is not None:
            if page.refcount == 0 and folio.ref_count() == 0:
                self.free_large_folio(folio)
        elif page.refcount == 0:
            self._free_page(page)

    # --- PMD-order folios (transparent huge pages) ---
    def nr_free_huge(self, nid: int) -> bool:
        """Could a PMD-order folio be allocated on ``nid``?  (Limited memory only.)"""
        free = self.nr_free(nid)
        return free is None or free >= HPAGE_PMD_NR

    def alloc_large_folio(self, nid: int, address: int) -> LargeFolio | None:
        """vma_alloc_anon_folio_pmd(): 512 zeroed, pfn-aligned frames, or None when
        the node has not that many free (the fault then falls back to 4 KiB pages)."""
        if not self.nr_free_huge(nid):
            return None
        free = self._huge_free[nid]
        if free:
            base = free.pop()
        else:
            base = self._huge_next[nid]
            self._huge_next[nid] += HPAGE_PMD_NR
        pages = []
        for i in range(HPAGE_PMD_NR):
            page = Page(base + i, nid, self.zero_bytes)
            pages.append(page)
            self.pages[base + i] = page
        folio = LargeFolio(pages, nid, address)
        for page in pages:
            page.folio = folio
        self._huge_in_use[nid] += HPAGE_PMD_NR
        ev = self.machine.events
        if ev.enabled:
            ev.put(("PageAlloc", self.machine.clock_ns, base, nid, "thp"))
        return folio

    def free_large_folio(self, folio: LargeFolio) -> None:
        """free_folio(): every frame of a large folio no one references any more."""
        for page in folio.pages:
            if page.mapcount or page.refcount:
                raise AssertionError(f"freeing a large folio with a mapped subpage {page!r}")
            del self.pages[page.pfn]
            page.flags = 0
            page.mapping = None
            page.folio = None
        nid = folio.nid
        self._huge_free[nid].append(folio.pfn)
        self._huge_in_use[nid] -= HPAGE_PMD_NR
        self.fp.page_freed(folio.pages[0])  # the frames may come back as other pages
        ev = self.machine.events
        if ev.enabled:
            ev.put(("PageFree", self.machine.clock_ns, folio.pfn))

    def dissolve_large_folio(self, folio: LargeFolio) -> None:
        """__split_folio_to_order(): the subpages become order-0 folios; their frames
        are from now on freed one by one (into the order-0 free list)."""
        nid = folio.nid
        self._huge_in_use[nid] -= HPAGE_PMD_NR
        self._split_frames[nid] += HPAGE_PMD_NR
        for page in folio.pages:
            page.folio = None

    def _free_page(self, page: Page) -> None:
        if page.mapcount:
            raise AssertionError(f"freeing a mapped page {page!r}")
        del self.pages[page.pfn]
        if page.pfn - page.nid * NODE_PFN_SPAN >= HUGE_PFN_OFFSET:
            self._split_frames[page.nid] -= 1       # a frame of a split THP: not reused
        else:
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
        and KSM's shortcuts hear of it before the bytes change (fastpath.py).

        A whole page of bytes equal to the last whole page written (or to zeroes)
        becomes that one shared ``bytes`` object, as a fill loop writes the same page
        over and over; any other write gives the frame its own bytearray (copied from
        the shared bytes on a frame's first partial write)."""
        self.fp.before_page_write(page)
        if offset == 0 and len(data) == self.page_size:
            last = self._last_fill
            if data == last:
                page.data = last
            elif data == self.zero_bytes:
                page.data = self.zero_bytes
            else:
                page.data = self._last_fill = bytes(data)
            return
        buf = page.data
        if type(buf) is not bytearray:
            buf = page.data = bytearray(buf)
        buf[offset:offset + len(data)] = data

    def copy_page(self, dst: Page, src: Page) -> None:
        """copy_user_highpage(): ``dst`` gets ``src``'s bytes (shared while neither
        is written, when they are an immutable ``bytes``)."""
        self.fp.before_page_write(dst)
        src_data = src.data
        dst.data = src_data if type(src_data) is bytes else bytearray(src_data)

    def free_pfns(self) -> list[int]:
        """Frames handed out once and freed since (read-only, for the book's frame map)."""
        return sorted(pfn for free in self._free for pfn in free)

    def nr_free(self, nid: int) -> int | None:
        """Frames still allocatable on ``nid``; None when memory is unlimited."""
        if self.pages_per_node is None:
            return None
        used = self._next[nid] - nid * NODE_PFN_SPAN
        return (len(self._free[nid]) + self.pages_per_node - used
                - self._huge_in_use[nid] - self._split_frames[nid])

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
