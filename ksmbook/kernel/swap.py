"""mm/swap.c's per-CPU LRU-add batches: the transient reference of a fresh page.

Linux 6.18 does not put a newly allocated anonymous or shmem folio on its LRU list
at once: folio_add_lru() (via folio_add_lru_vma() from do_anonymous_page() and
wp_page_copy(), or shmem_alloc_and_add_folio()) takes a reference (folio_get) and
parks the folio in this CPU's ``cpu_fbatches.lru_add`` folio_batch.  The batch is
moved to the LRU, and the references dropped, when

* it is full: folio_batch_add() returned no space left, i.e. at the
  FOLIO_BATCH_SIZE-th (31st) folio, or when a large folio (a THP) is added: it
  moves at once, with everything in the batch (lru_cache_disabled() is not modelled);
* lru_add_drain() runs on that CPU: unmap_region()/exit_mmap() before zapping,
  zap_page_range_single() (MADV_DONTNEED), wp_can_reuse_anon_folio() when the
  folio is not on the LRU yet, mlock, migration, swap;
* lru_add_drain_all() runs on every CPU: ksm's scan_get_next_rmap_item() calls it
  when a new full scan starts ("A number of pages can hang around indefinitely in
  per-cpu LRU cache, raised page count preventing write_protect_page from merging
  them ... drain them here").

Until then folio_ref_count() is one higher than the mappings explain, so
write_protect_page()'s check ``folio_mapcount + 1 + swapcache != folio_ref_count``
refuses the page: a page faulted or COWed after the current full scan began cannot
be merged before the next full scan (unless 31 more folios were added on its CPU).

The reference is kept apart from ``Page.refcount`` (which counts mappings, page
tables and the page cache, and is checked against the page tables by
``Machine.recount_page_counts``): a page in a batch has ``PG_lru_batch`` set and
:func:`folio_ref_count` adds it.

Simplification: the machine has one CPU's batch for everything (user processes,
the sysfs writer and ksmd's break_cow); on a multi-CPU host a process that
migrates between CPUs fills several batches, and other processes on the same CPU
fill its batch too (then a page drains, and merges, earlier than modelled).
"""
from __future__ import annotations

from .memory import PG_lru_batch

#: include/linux/folio_batch.h (6.18): 31 pointers + header make a power of two.
FOLIO_BATCH_SIZE = 31


def folio_ref_count(page) -> int:
    """folio_ref_count(): mappings and other holders, plus the LRU batch's reference."""
    return page.refcount + (1 if page.flags & PG_lru_batch else 0)


class CpuFbatches:
    """``cpu_fbatches.lru_add`` of each CPU (one CPU modelled, see the module doc)."""

    def __init__(self, machine, ncpus: int = 1):
        self.machine = machine
        self.lru_add: list[list] = [[] for _ in range(ncpus)]
        self.drains = 0                 # folio_batch_move_lru() calls, for the book

    def folio_add_lru(self, page, cpu: int = 0) -> None:
        """folio_add_lru(): folio_get() and park in this CPU's batch; a full batch moves."""
        page.flags |= PG_lru_batch
        batch = self.lru_add[cpu]
        batch.append(page)
        if len(batch) >= FOLIO_BATCH_SIZE:      # folio_batch_add() returned 0
            self.folio_batch_move_lru(cpu)

    def folio_add_lru_large(self, folio, cpu: int = 0) -> None:
        """folio_add_lru() of a large folio (a THP): folio_batch_add() then, because
        folio_test_large(), folio_batch_move_lru() at once -- the whole batch goes to
        the LRU with it, dropping every transient reference parked there."""
        self.folio_batch_move_lru(cpu)

    def folio_batch_move_lru(self, cpu: int) -> None:
        """Put every folio of the batch on its LRU and drop the batch's references."""
        batch = self.lru_add[cpu]
        for page in batch:
            page.flags &= ~PG_lru_batch         # folios_put(); a page freed meanwhile
        batch.clear()                           # was kept alive only by this reference
        self.drains += 1

    def lru_add_drain(self, cpu: int = 0) -> None:
        """lru_add_drain(): this CPU's batches."""
        if self.lru_add[cpu]:
            self.folio_batch_move_lru(cpu)

    def lru_add_drain_all(self) -> None:
        """lru_add_drain_all(): every CPU's batches (queued work, waited for)."""
        for cpu in range(len(self.lru_add)):
            self.lru_add_drain(cpu)

    def pending(self, cpu: int = 0) -> int:
        return len(self.lru_add[cpu])
