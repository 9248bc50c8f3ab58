"""Address spaces: mm_struct, VMAs, and the system calls that change them.

mmap/munmap/mprotect/madvise/prctl, read/write through the fault path, fork with
copy-on-write, and exit.  Every call checks its arguments (alignment, flags,
lengths) before it changes anything, and a refused call leaves the machine as it
was.  Where Linux itself half-applies, so does ksmbook: madvise() over a hole
advises every mapped piece and then fails with ENOMEM (madvise_walk_vmas()), and
mprotect() over a hole changes the mapped part before the hole and then fails
(do_mprotect_pkey(), both 6.18; see :meth:`MM.mapped_runs`).
"""
from __future__ import annotations

import bisect
import errno
from collections import Counter

from . import huge_memory
from .errors import SegmentationFault, check_int, einval, kernel_error  # noqa: F401 (check_int: kvm)
from .fault import (FAULT_FLAG_WRITE, fault_allocates, handle_mm_fault, pte_mkprotnone,
                    pte_mkprotread, zap_pte)
from .memory import PG_anon_exclusive, PG_shmem
from .mmu_notifier import MmuNotifierSubscriptions, set_pte_at
from .pagetable import (PageTables, _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_RW, pte_pfn, pte_present,
                        pte_special, pte_write, pte_wrprotect)

# The ABI numbers live in ksmbook/uapi.py (one home for the simulator and the oracle).
from ..uapi import (MADV_DONTNEED, MADV_HUGEPAGE, MADV_MERGEABLE,  # noqa: E402,F401
                    MADV_NOHUGEPAGE, MADV_UNMERGEABLE, MAP_PRIVATE,
                    MAP_SHARED, PR_GET_MEMORY_MERGE, PR_SET_MEMORY_MERGE, PROT_EXEC, PROT_NONE,
                    PROT_READ, PROT_SEM, PROT_WRITE)

# mm->flags
MMF_VM_MERGEABLE = 1 << 16
MMF_VM_MERGE_ANY = 1 << 30


class AnonVma:
    """struct anon_vma: shared by a VMA and its forked copies."""
    __slots__ = ("id",)

    def __init__(self, ident: int):
        self.id = ident

    def __repr__(self):
        return f"anon_vma#{self.id}"


class ShmemObject:
    """The shmem file behind a MAP_SHARED|MAP_ANONYMOUS mapping: one page per offset."""

    def __init__(self):
        self.pages: dict = {}
        self.users = 0          # VMAs referring to it

    def get_page(self, pgoff: int, memory, nid: int):
        page = self.pages.get(pgoff)
        if page is None:
            page = memory.alloc_page(nid, purpose="shmem")   # the page cache's reference
            page.flags |= PG_shmem
            self.pages[pgoff] = page
            memory.machine.cpu_fbatches.folio_add_lru(page)   # shmem_alloc_and_add_folio()
        return page

    def put(self, memory) -> None:
        self.users -= 1
        if self.users == 0:
            for page in self.pages.values():
                memory.put_page(page)
            self.pages.clear()


class VMA:
    """vm_area_struct: [start, end) with flags, an anon_vma once faulted, or shmem."""
    __slots__ = ("mm", "start", "end", "flags", "anon_vma", "shmem", "pgoff", "nid")
    VM_READ, VM_WRITE, VM_EXEC, VM_SHARED = 0x1, 0x2, 0x4, 0x8
    VM_MAYREAD, VM_MAYWRITE, VM_MAYEXEC, VM_MAYSHARE = 0x10, 0x20, 0x40, 0x80
    VM_PFNMAP, VM_IO, VM_DONTEXPAND, VM_HUGETLB = 0x400, 0x4000, 0x40000, 0x400000
    VM_MIXEDMAP, VM_MERGEABLE = 0x10000000, 0x80000000
    VM_HUGEPAGE, VM_NOHUGEPAGE = 0x20000000, 0x40000000

    def __init__(self, mm, start, end, flags, *, shmem=None, pgoff=0, nid=None):
        self.mm, self.start, self.end, self.flags = mm, start, end, flags
        self.anon_vma = None
        self.shmem = shmem
        self.pgoff = pgoff
        self.nid = nid

    def copy(self, mm=None) -> "VMA":
        v = VMA(mm or self.mm, self.start, self.end, self.flags, shmem=self.shmem,
                pgoff=self.pgoff, nid=self.nid)
        v.anon_vma = self.anon_vma
        if v.shmem is not None:
            v.shmem.users += 1
        return v

    def prot_text(self) -> str:
        f = self.flags
        return ("r" if f & self.VM_READ else "-") + ("w" if f & self.VM_WRITE else "-") + \
               ("x" if f & self.VM_EXEC else "-") + ("s" if f & self.VM_SHARED else "p")

    def __repr__(self):
        return f"VMA({self.start:#x}-{self.end:#x} {self.prot_text()})"


def prot_to_vm_flags(prot: int) -> int:
    f = VMA.VM_MAYREAD | VMA.VM_MAYWRITE | VMA.VM_MAYEXEC
    if prot & PROT_READ:
        f |= VMA.VM_READ
    if prot & PROT_WRITE:
        f |= VMA.VM_WRITE | VMA.VM_READ
    if prot & PROT_EXEC:
        f |= VMA.VM_EXEC
    return f


class VmaList(list):
    """mm->mm_mt: the VMAs sorted by start, with their starts kept alongside.

    find_vma() bisects ``starts`` instead of building a list of starts per lookup
    (ksmd looks a VMA up for every merge).  The list methods that add or remove VMAs
    keep ``starts`` in step.  A VMA's start does not change while it is on the list
    (__split_vma() sets the new half's start before inserting it); find_vma() checks
    the entry it lands on and rebuilds ``starts`` if one ever did.
    """
    __slots__ = ("starts",)

    def __init__(self, vmas=()):
        super().__init__(vmas)
        self.starts = [v.start for v in self]

    def _rebuild(self) -> None:
        self.starts = [v.start for v in self]

    def insert(self, i, vma) -> None:
        super().insert(i, vma)
        self.starts.insert(i, vma.start)

    def append(self, vma) -> None:
        super().append(vma)
        self.starts.append(vma.start)

    def remove(self, vma) -> None:
        del self[self.index(vma)]

    def __delitem__(self, i) -> None:
        super().__delitem__(i)
        del self.starts[i]

    def pop(self, i=-1):
        vma = super().pop(i)
        del self.starts[i]
        return vma

    def clear(self) -> None:
        super().clear()
        self.starts.clear()

    def __setitem__(self, i, value) -> None:
        super().__setitem__(i, value)
        self._rebuild()

    def __iadd__(self, other):
        super().__iadd__(other)
        self._rebuild()
        return self

    def extend(self, other) -> None:
        super().extend(other)
        self._rebuild()

    def sort(self, *args, **kwargs) -> None:
        super().sort(*args, **kwargs)
        self._rebuild()

    def reverse(self) -> None:
        super().reverse()
        self._rebuild()


class MM:
    """mm_struct: page tables, the VMA list, KSM flags and per-mm KSM counters."""

    def __init__(self, machine, owner_pid: int, nid: int = 0):
        self.machine = machine
        self.owner_pid = owner_pid
        self.page_size = machine.page_size
        self.page_shift = machine.page_shift
        self.pagetables = PageTables(machine.memory, self.page_shift)
        self.vmas: VmaList = VmaList()      # sorted by start
        self.flags = 0                      # MMF_*
        self.mm_users = 1
        self.ksm_merging_pages = 0
        self.ksm_rmap_items = 0
        self.ksm_zero_pages = 0
        self.nid = nid                      # the node this process allocates from
        self.notifiers = MmuNotifierSubscriptions(self)

    # --- VMA lookup ---
    def find_vma(self, address: int) -> VMA | None:
        """The VMA that contains ``address``, or None."""
        vmas = self.vmas
        i = bisect.bisect_right(vmas.starts, address) - 1
        if i < 0:
            return None
        vma = vmas[i]
        if vma.start != vmas.starts[i]:         # a start changed in place: re-index
            vmas._rebuild()
            return self.find_vma(address)
        return vma if vma.end > address else None

    def vmas_in(self, start: int, end: int) -> list[VMA]:
        return [v for v in self.vmas if v.start < end and v.end > start]

    def covered(self, start: int, end: int) -> bool:
        """Is every byte of [start, end) inside some VMA?"""
        pos = start
        for v in self.vmas_in(start, end):
            if v.start > pos:
                return False
            pos = max(pos, v.end)
        return pos >= end

    def mapped_runs(self, start: int, end: int) -> list[tuple[int, int]]:
        """The mapped stretches of [start, end), in address order (holes left out).

        madvise_walk_vmas() advises every one and returns -ENOMEM afterwards if
        there was a hole; do_mprotect_pkey() changes the first one, if it begins
        at ``start``, then stops with -ENOMEM at the hole (both checked on 6.18).
        """
        runs: list[tuple[int, int]] = []
        for v in self.vmas_in(start, end):
            s, e = max(start, v.start), min(end, v.end)
            if runs and runs[-1][1] == s:
                runs[-1] = (runs[-1][0], e)
            else:
                runs.append((s, e))
        return runs

    def insert_vma(self, vma: VMA) -> None:
        bisect.insort(self.vmas, vma, key=lambda v: v.start)

    def split_vma(self, vma: VMA, address: int) -> VMA:
        """__split_vma(): cut ``vma`` at ``address``; returns the upper half.  A huge
        PMD across the cut is split first (vma_adjust_trans_huge())."""
        huge_memory.split_huge_pmd_if_needed(self, vma, address)
        upper = vma.copy()
        upper.start = address
        if vma.shmem is not None:
            upper.pgoff = vma.pgoff + ((address - vma.start) >> self.page_shift)
        vma.end = address
        self.insert_vma(upper)
        return upper

    def isolate(self, start: int, end: int, changes=None) -> list[VMA]:
        """Split VMAs so that [start, end) is covered by whole VMAs; return those.

        ``changes(vma)``, if given, says whether the caller will change that VMA: one it
        leaves alone is not split (madvise_update_vma() and mprotect_fixup() return
        early when the flags stay the same), which matters for the THPs it maps."""
        for v in self.vmas_in(start, end):
            if v.start < start and (changes is None or changes(v)):
                self.split_vma(v, start)
        for v in self.vmas_in(start, end):
            if v.end > end and (changes is None or changes(v)):
                self.split_vma(v, end)
        return self.vmas_in(start, end)

    def vma_merge(self, start: int, end: int) -> None:
        """vma_merge_existing_range(): after madvise or mprotect changed [start, end),
        neighbours that now have the same flags, the same anon_vma (or none yet) and
        no shmem become one VMA again -- so a 2 MiB block can fit a THP again."""
        vmas = self.vmas
        i = max(0, bisect.bisect_right(vmas.starts, start) - 2)
        while i + 1 < len(vmas):
            a, b = vmas[i], vmas[i + 1]
            if a.start > end:
                break
            if a.end == b.start and a.flags == b.flags and a.shmem is None and \
                    b.shmem is None and a.nid == b.nid and \
                    (a.anon_vma is None or b.anon_vma is None or a.anon_vma is b.anon_vma):
                a.end = b.end
                a.anon_vma = a.anon_vma or b.anon_vma
                del vmas[i + 1]
                continue
            i += 1

    def node_for(self, vma: VMA) -> int:
        return self.nid if vma.nid is None else vma.nid

    # --- zapping and unmapping ---
    def zap_range(self, start: int, end: int, site: str, reclaim_pt: bool = False) -> None:
        """zap_page_range_single() / unmap_vmas(): drop every PTE in the range.

        The notifier bracket is unconditional, as in the kernel: a secondary MMU hears
        about the range whether or not the primary had anything mapped there.
        zap_pmd_range(): a huge PMD wholly inside goes at once (zap_huge_pmd), one
        the range covers in part is split first (__split_huge_pmd).  PTEs of one large
        folio are dropped in batches (folio_pte_batch()), and a batch that leaves the
        folio partially mapped queues it for a deferred split.  ``reclaim_pt``
        (MADV_DONTNEED, CONFIG_PT_RECLAIM, 6.14+) frees a PTE table the range covers
        whole once it is empty.
        """
        pt = self.pagetables
        huge = list(pt.present_huge(start, end))
        mapped = list(pt.present(start, end))
        self.notifiers.invalidate_range_start(start, end, site, "unmap",
                                              "zap: invalidate_range_start/end (all eras)")
        size = self.page_size * 512
        split = False
        for haddr, pmd in huge:
            if start <= haddr and haddr + size <= end:
                huge_memory.zap_huge_pmd(self, haddr, pmd)
            else:
                huge_memory.split_huge_pmd(self, None, haddr, "zap_pmd_range")
                split = True
        if split:
            mapped = list(pt.present(start, end))
        machine = self.machine
        batch, batch_folio, last = [], None, None
        for addr, pte in mapped:
            page = None if pte_special(pte) else machine.memory.pages.get(pte_pfn(pte))
            folio = page.folio if page is not None else None
            if batch and (folio is not batch_folio or last is None or
                          addr != last[0] + self.page_size or
                          pte_pfn(pte) != pte_pfn(last[1]) + 1 or
                          (pte ^ last[1]) & _PAGE_RW):
                huge_memory.folio_remove_rmap_ptes(machine, batch_folio, batch)
                batch = []
            zap_pte(self, addr, pte)
            if folio is not None:
                batch.append(page)
                batch_folio = folio
            last = (addr, pte)
        if batch:
            huge_memory.folio_remove_rmap_ptes(machine, batch_folio, batch)
        if mapped or huge:
            machine.tlb_flushes += 1
        if reclaim_pt and machine.profile.pt_reclaim and end - start >= size:
            for base in range((start + size - 1) & ~(size - 1), end - size + 1, size):
                pt.free_empty_leaf(base)
        self.notifiers.invalidate_range_end(start, end, site, "unmap",
                                            "zap: invalidate_range_start/end (all eras)")

    def remove_vmas(self, start: int, end: int, site: str) -> None:
        self.machine.cpu_fbatches.lru_add_drain()     # unmap_region(): lru_add_drain()
        self.zap_range(start, end, site)
        for v in self.isolate(start, end):
            self.vmas.remove(v)
            if v.shmem is not None:
                v.shmem.put(self.machine.memory)
        self.pagetables.free_empty_tables(lambda s, e: bool(self.vmas_in(s, e)))


class Process:
    """A user process: the public face of an mm (ksmbook's ``p``)."""

    def __init__(self, machine, pid: int, name: str, mm: MM):
        self.machine = machine
        self.pid = pid
        self.name = name
        self.mm = mm
        self.alive = True

    def __repr__(self):
        return f"Process(pid={self.pid}, name={self.name!r}{'' if self.alive else ', exited'})"

    # --- argument checks, shared by the syscalls ---
    def _check_alive(self):
        if not self.alive:
            raise kernel_error(errno.ESRCH, f"process {self.pid} has exited")

    def _page_range(self, addr: int, length: int, what: str,
                    allow_empty: bool = False) -> tuple[int, int]:
        """Validate addr/length as the kernel does: aligned start, length rounded up.

        Arguments are unsigned longs in the kernel, so a negative length is a huge one;
        the errno for each shape follows the syscall (checked on Linux 6.18 by
        tests/unit/test_bad_input_fuzz.py):
        - munmap (__vm_munmap/do_vmi_munmap): EINVAL for unaligned, empty, or past TASK_SIZE;
        - mprotect (do_mprotect_pkey): EINVAL unaligned, 0 for len 0, ENOMEM if
          start + PAGE_ALIGN(len) wraps or leaves the mapped address space;
        - madvise (do_madvise): EINVAL unaligned, EINVAL if PAGE_ALIGN(len) wraps to 0 or
          start + len wraps, 0 for len 0, ENOMEM for an unmapped range.
        """
        self._check_alive()
        check_int("addr", addr, what)
        check_int("length", length, what)
        ps = self.machine.page_size
        task = self.machine.task_size
        ulong = (1 << 64) - 1
        start, len_in = addr & ulong, length & ulong
        if start % ps:
            raise einval(f"{what}: address {addr:#x} is not page-aligned")
        len_al = (len_in + ps - 1) & ~(ps - 1) & ulong
        if what == "munmap":
            if start > task or len_in > task - start or len_al == 0:
                raise einval(f"{what}: length {length} is 0 or the range leaves TASK_SIZE")
            return start, start + len_al
        if len_in == 0 and allow_empty:
            return start, start
        if what == "madvise":
            if len_al == 0 or start + len_al > ulong:
                raise einval(f"{what}: start + length {length} overflows")
        elif len_al == 0 or start + len_al > ulong:
            raise kernel_error(errno.ENOMEM, f"{what}: start + length {length} overflows")
        end = start + len_al
        if end > task:
            raise kernel_error(errno.ENOMEM, f"{what}: range [{start:#x}, {end:#x}) is not mapped")
        return start, end

    # --- system calls ---
    def mmap(self, length: int, prot: int = PROT_READ | PROT_WRITE, *, shared: bool = False,
             node: int | None = None) -> int:
        """mmap(NULL, length, prot, MAP_ANONYMOUS|MAP_PRIVATE or MAP_SHARED, -1, 0)."""
        self._check_alive()
        check_int("length", length, "mmap")
        check_int("prot", prot, "mmap")
        if not isinstance(shared, bool):
            raise TypeError(f"mmap: shared must be True or False, not {type(shared).__name__}")
        if node is not None:
            check_int("node", node, "mmap")
        if length == 0:                                   # do_mmap(): "if (!len) return -EINVAL"
            raise einval("mmap: length is 0")
        ps = self.machine.page_size
        length &= (1 << 64) - 1                           # size_t: -1 is 2^64-1
        length = ((length + ps - 1) // ps) * ps
        if length >= 1 << 64 or length > self.machine.task_size:
            # PAGE_ALIGN() wrapped to 0 or more than TASK_SIZE: ENOMEM (get_unmapped_area)
            raise kernel_error(errno.ENOMEM, f"mmap: length {length:#x} exceeds TASK_SIZE")
        # do_mmap() validates no prot bit: calc_vm_prot_bits() keeps the ones it knows
        # and drops the rest (PROT_SEM 0x8, or 0x10, are accepted and change nothing here)
        prot &= PROT_READ | PROT_WRITE | PROT_EXEC
        if node is not None and not 0 <= node < self.machine.numa_nodes:
            raise einval(f"mmap: no NUMA node {node}")
        start = self.machine.get_unmapped_area(self.mm, length, anon_private=not shared)
        flags = prot_to_vm_flags(prot)
        shmem = None
        if shared:
            flags |= VMA.VM_SHARED | VMA.VM_MAYSHARE
            shmem = ShmemObject()
            shmem.users = 1
        vma = VMA(self.mm, start, start + length, flags, shmem=shmem, nid=node)
        self.mm.insert_vma(vma)
        self.machine.ksm.ksm_add_vma(vma)       # prctl mode: mergeable at creation
        return start

    def munmap(self, addr: int, length: int) -> None:
        start, end = self._page_range(addr, length, "munmap")
        self.mm.remove_vmas(start, end, "unmap_region")

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        """mprotect(): PROT_NONE, PROT_READ or PROT_READ|PROT_WRITE on whole pages."""
        check_int("prot", prot, "mprotect")
        start, end = self._page_range(addr, length, "mprotect", allow_empty=True)
        if start == end:
            return
        # do_mprotect_pkey() -> arch_validate_prot() (x86's default): only READ, WRITE,
        # EXEC and PROT_SEM may be set; PROT_SEM changes nothing for anonymous memory
        if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM):
            raise einval(f"mprotect: prot {prot:#x}")
        prot &= ~PROT_SEM
        runs = self.mm.mapped_runs(start, end)
        if not runs or runs[0][0] != start:
            raise kernel_error(errno.ENOMEM, "mprotect: range starts in a hole")
        requested_end, end = end, runs[0][1]   # the VMAs before a hole do change
        newbits = prot_to_vm_flags(prot) & (VMA.VM_READ | VMA.VM_WRITE | VMA.VM_EXEC)
        mm = self.mm
        # mprotect_fixup(): the VMAs are split first (a huge PMD across a cut is split:
        # vma_adjust_trans_huge), then change_protection() runs in its bracket
        # mprotect_fixup() leaves a VMA whose flags stay the same alone: not split, and
        # change_protection() does not run over it
        bits = VMA.VM_READ | VMA.VM_WRITE | VMA.VM_EXEC
        vmas = [v for v in mm.isolate(start, end, lambda v: v.flags & bits != newbits)
                if v.flags & bits != newbits]
        changed = [(a, pte) for v in vmas for a, pte in mm.pagetables.present(v.start, v.end)]
        huge = [(h, pmd) for v in vmas for h, pmd in mm.pagetables.present_huge(v.start, v.end)]
        if changed or huge:
            mm.notifiers.invalidate_range_start(start, end, "change_protection", "protection_vma",
                                                "mprotect: invalidate_range_start/end")
        for v in vmas:
            v.flags = (v.flags & ~bits) | newbits
        for h, pmd in huge:                 # change_huge_pmd(): a whole huge PMD stays huge
            huge_memory.change_huge_pmd(mm, h, pmd, pte_mkprotnone(pmd) if prot == PROT_NONE
                                        else pte_mkprotread(pmd))
        for a, pte in changed:
            if pte_special(pte) or not (self._vma_shared(a)):
                # private pages lose write permission; a later write faults and reuses
                # or copies, so COW stays intact
                new = pte_mkprotnone(pte) if prot == PROT_NONE else pte_mkprotread(pte)
            else:
                new = pte_mkprotnone(pte) if prot == PROT_NONE else (
                    pte_mkprotread(pte) | (_PAGE_RW if prot & PROT_WRITE else 0))
            if new != pte:
                set_pte_at(mm, a, new, "change_pte_range")
        if changed or huge:
            self.machine.tlb_flushes += 1
            mm.notifiers.invalidate_range_end(start, end, "change_protection", "protection_vma",
                                              "mprotect: invalidate_range_start/end")
        mm.vma_merge(start, end)
        if end < requested_end:
            raise kernel_error(errno.ENOMEM, "mprotect: range not fully mapped")

    def _vma_shared(self, addr: int) -> bool:
        v = self.mm.find_vma(addr)
        return bool(v and v.flags & VMA.VM_SHARED)

    def madvise(self, addr: int, length: int, advice: int) -> None:
        """madvise(): MADV_DONTNEED, MADV_MERGEABLE, MADV_UNMERGEABLE, MADV_[NO]HUGEPAGE.

        MADV_HUGEPAGE/MADV_NOHUGEPAGE are hugepage_madvise() (mm/khugepaged.c, 6.18):
        VM_HUGEPAGE / VM_NOHUGEPAGE on the VMA, split at the range.  In ``madvise``
        mode VM_HUGEPAGE lets the next fault in an aligned 2 MiB block inside the VMA
        map a THP (kernel/huge_memory.py).  khugepaged_enter_vma() is not modelled:
        nothing collapses 4 KiB pages into a THP afterwards.
        """
        self._check_alive()
        check_int("advice", advice, "madvise")
        if advice not in (MADV_DONTNEED, MADV_MERGEABLE, MADV_UNMERGEABLE, MADV_HUGEPAGE,
                          MADV_NOHUGEPAGE):
            # madvise_behavior_valid() comes first in do_madvise()
            raise einval(f"madvise: advice {advice} (ksmbook models MADV_DONTNEED, "
                         "MADV_MERGEABLE, MADV_UNMERGEABLE, MADV_HUGEPAGE, MADV_NOHUGEPAGE)")
        start, end = self._page_range(addr, length, "madvise", allow_empty=True)
        if start == end:
            return
        runs = self.mm.mapped_runs(start, end)
        for s, e in runs:          # holes are skipped, not fatal: -ENOMEM comes after
            if advice == MADV_DONTNEED:
                self.machine.cpu_fbatches.lru_add_drain()    # zap_page_range_single()
                self.mm.zap_range(s, e, "madvise_dontneed", reclaim_pt=True)
            elif advice in (MADV_HUGEPAGE, MADV_NOHUGEPAGE):
                on, off = ((VMA.VM_HUGEPAGE, VMA.VM_NOHUGEPAGE) if advice == MADV_HUGEPAGE
                           else (VMA.VM_NOHUGEPAGE, VMA.VM_HUGEPAGE))
                for v in self.mm.isolate(s, e, lambda v: (v.flags & ~off) | on != v.flags):
                    v.flags = (v.flags & ~off) | on
                self.mm.vma_merge(s, e)
            else:
                self.machine.ksm.ksm_madvise(self.mm, s, e, advice)
                self.mm.vma_merge(s, e)
        if sum(e - s for s, e in runs) != end - start:
            raise kernel_error(errno.ENOMEM, "madvise: range not fully mapped")

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0,
              arg5: int = 0) -> int:
        """prctl(PR_SET_MEMORY_MERGE / PR_GET_MEMORY_MERGE) — 6.4+."""
        self._check_alive()
        for name, value in (("option", option), ("arg2", arg2), ("arg3", arg3), ("arg4", arg4),
                            ("arg5", arg5)):
            check_int(name, value, "prctl", allow_bool=name != "option")
        if option not in (PR_SET_MEMORY_MERGE, PR_GET_MEMORY_MERGE) or \
                not self.machine.profile.prctl_memory_merge:
            raise einval(f"prctl: option {option}")
        if option == PR_SET_MEMORY_MERGE:
            if arg3 or arg4 or arg5:
                raise einval("prctl: PR_SET_MEMORY_MERGE takes no arg3..arg5")
            if arg2:
                self.machine.ksm.ksm_enable_merge_any(self.mm)
            else:
                self.machine.ksm.ksm_disable_merge_any(self.mm)
            return 0
        if arg2 or arg3 or arg4 or arg5:
            raise einval("prctl: PR_GET_MEMORY_MERGE takes no arguments")
        return 1 if self.mm.flags & MMF_VM_MERGE_ANY else 0

    # --- memory access ---
    def _check_access(self, addr: int, n: int, write: bool) -> None:
        self._check_alive()
        check_int("addr", addr, "write" if write else "read")
        if addr < 0:
            raise einval(f"bad address {addr!r}")
        access = "write" if write else "read"
        need = VMA.VM_WRITE if write else VMA.VM_READ
        pos, end = addr, addr + n
        while pos < end:
            vma = self.mm.find_vma(pos)
            if vma is None:
                raise SegmentationFault(pos, access, "no mapping")
            if not vma.flags & need:
                raise SegmentationFault(pos, access, f"mapping is {vma.prot_text()}")
            pos = vma.end

    def read(self, addr: int, n: int) -> bytes:
        """Read ``n`` bytes; untouched pages read as zeros through the zero page."""
        check_int("n", n, "read")
        if n < 0:
            raise einval(f"read length {n!r}")
        self._check_access(addr, n, write=False)
        self._reserve_frames(addr, n, write=False)
        out = bytearray()
        ps = self.machine.page_size
        pos, end = addr, addr + n
        while pos < end:
            base = pos - pos % ps
            chunk = min(end, base + ps) - pos
            page = self._touch(base, write=False)
            out += page.data[pos - base:pos - base + chunk]
            pos += chunk
        return bytes(out)

    def write(self, addr: int, data) -> None:
        """Write ``data`` at ``addr``; faults (COW, allocation) happen page by page."""
        if isinstance(data, (str, int)) or not hasattr(data, "__iter__") and \
                not hasattr(data, "__buffer__"):
            raise TypeError(f"write: data must be bytes-like, not {type(data).__name__}")
        data = bytes(data)
        self._check_access(addr, len(data), write=True)
        self._reserve_frames(addr, len(data), write=True)
        ps = self.machine.page_size
        write_page = self.machine.memory.write_page
        pos, end, off = addr, addr + len(data), 0
        while pos < end:
            base = pos - pos % ps
            chunk = min(end, base + ps) - pos
            page = self._touch(base, write=True)
            write_page(page, pos - base, data[off:off + chunk])
            pos += chunk
            off += chunk

    def _reserve_frames(self, addr: int, n: int, write: bool) -> None:
        """ENOMEM before the first fault if the access cannot finish: the kernel would
        OOM-kill half-way, ksmbook's errors leave no trace.  Free with unlimited memory."""
        if n > 0:
            ps = self.machine.page_size
            self.reserve_pages(range(addr - addr % ps, addr + n, ps), write)

    def reserve_pages(self, bases, write: bool) -> None:
        """ENOMEM unless faulting every page in ``bases`` (and its page tables) can finish;
        also used by KVM's guest accesses, which fault the host mm through hva_to_pfn()."""
        mem = self.machine.memory
        if mem.pages_per_node is None:
            return
        mm = self.mm
        need, unmapped = Counter(), []
        for base in bases:
            vma = mm.find_vma(base)
            if fault_allocates(mm, vma, base, write):
                need[mm.node_for(vma)] += 1
            if not pte_present(mm.pagetables.get_pte(base)):
                unmapped.append(base)
        need[0] += mm.pagetables.tables_needed(unmapped)     # tables live on node 0
        mem.reserve(need, "write" if write else "read")

    def _touch(self, base: int, write: bool):
        """The MMU: a TLB-hit access or a fault, returning the frame now mapped."""
        mm = self.mm
        pte = mm.pagetables.get_pte(base)
        if pte_present(pte) and (pte_write(pte) or not write) and pte & _PAGE_ACCESSED:
            if not write or pte & _PAGE_DIRTY:
                return self.machine.memory.pfn_to_page(pte_pfn(pte))
        return handle_mm_fault(mm, mm.find_vma(base), base, FAULT_FLAG_WRITE if write else 0)

    # --- fork and exit ---
    def fork(self, name: str | None = None) -> "Process":
        """fork(): dup_mmap() with copy-on-write, then ksm_fork()."""
        self._check_alive()
        if name is not None and not isinstance(name, str):
            raise TypeError(f"fork: name must be a string or None, not {type(name).__name__}")
        return self.machine._fork(self, name)

    def exit(self) -> None:
        """exit(): exit_mmap() frees everything; ksm_exit() lets ksmd clean up."""
        self._check_alive()
        self.machine._exit(self)

    def maps(self) -> str:
        """/proc/<pid>/maps."""
        return self.machine.procfs.read(f"/proc/{self.pid}/maps")


def dup_mmap(parent: MM, child: MM) -> None:
    """dup_mmap() + copy_page_range(): share every page, write-protect private ones."""
    memory = parent.machine.memory
    for v in parent.vmas:
        cv = v.copy(child)
        child.vmas.append(cv)
        ptes = list(parent.pagetables.present(v.start, v.end))
        huge = list(parent.pagetables.present_huge(v.start, v.end))
        cow = not (v.flags & VMA.VM_SHARED)
        # copy_page_range(): a COW mapping with an anon_vma is bracketed even when no
        # PTE is present any more (the kernel does not look first)
        bracket = cow and (v.anon_vma is not None or bool(ptes))
        if not ptes and not bracket:
            continue
        if bracket:
            parent.notifiers.invalidate_range_start(
                v.start, v.end, "copy_page_range", "protection_page",
                "fork: copy_page_range write-protects the parent (all eras)")
        for haddr, pmd in huge:             # copy_huge_pmd()
            huge_memory.copy_huge_pmd(parent, child, haddr, pmd)
        for addr, pte in ptes:
            if not pte_special(pte):
                page = memory.pfn_to_page(pte_pfn(pte))
                page.mapcount += 1
                page.refcount += 1
                page.flags &= ~PG_anon_exclusive     # folio_try_dup_anon_rmap_pte()
            if cow and pte_write(pte):
                pte = pte_wrprotect(pte)
                set_pte_at(parent, addr, pte, "copy_present_pte")
            child.pagetables.set_pte(addr, pte & ~_PAGE_ACCESSED if cow else pte)
        if bracket:
            if ptes or huge:
                parent.machine.tlb_flushes += 1
            parent.notifiers.invalidate_range_end(
                v.start, v.end, "copy_page_range", "protection_page",
                "fork: copy_page_range write-protects the parent (all eras)")
