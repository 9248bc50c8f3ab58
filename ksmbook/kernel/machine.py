"""The simulated computer: clock, physical memory, processes, ksmd, KVM, sysfs, procfs.

``Machine()`` boots with the defaults of Linux 6.18 and 4 KiB pages;
``Machine(kernel="2.6.32")`` boots the seed's kernel.  Everything is deterministic:
the same calls give the same pfns, events and counters.
"""
from __future__ import annotations

import math

from collections import Counter

from .errors import check_int
from .events import EventLog
from .ksm import Ksm
from .ksm.fastpath import FastPath
from .ksm.ksmd import Ksmd
from .swap import CpuFbatches
from .memory import PhysicalMemory
from .mm import MM, AnonVma, Process, dup_mmap
from .pagetable import pte_pfn, pte_present
from .sysfs import ProcFs, SysFs
from .versions import profile as kernel_profile


# Events kept in Machine.events.history by default: about 13 MiB (~135 B an
# event, benchmarks/event_log.py), about one full scan of 65,536 pages.
EVENT_LIMIT = 100_000


class Machine:
    """One Linux box: ``spawn`` processes, drive ``ksmd``, read ``sysfs``/``procfs``.

    ``thp`` is /sys/kernel/mm/transparent_hugepage/enabled: "always", "madvise" or
    "never".  None takes "madvise", the boot default of this project's 6.18 host
    (CONFIG_TRANSPARENT_HUGEPAGE_MADVISE=y; Debian, Ubuntu and Fedora kernels ship
    the same); mainline's Kconfig default is CONFIG_TRANSPARENT_HUGEPAGE_ALWAYS.
    Kernels before 2.6.38 have no THP: only "never" (or None) is accepted there.

    ``fastpath=False`` makes KSM use the kernel's own lookups everywhere (no
    shortcut); ``check_fastpath=True`` makes every shortcut assert, before it is
    used, that the kernel's way gives the same answer (slow: for tests).  None
    takes the default (True, False).  Both are fixed for the machine's life.
    """

    def __init__(self, kernel: str = "6.18", *, page_size: int = 4096, numa_nodes: int = 1,
                 pages_per_node: int | None = None, events: bool = True,
                 event_limit: int | None = EVENT_LIMIT, event_sink=None,
                 fastpath: bool | None = None, check_fastpath: bool | None = None,
                 thp: str | None = None):
        check_int("page_size", page_size)
        if page_size < 64 or page_size & (page_size - 1):
            raise ValueError(f"page_size must be a power of two >= 64, not {page_size!r}")
        check_int("numa_nodes", numa_nodes)
        if not 1 <= numa_nodes <= 64:
            raise ValueError(f"numa_nodes must be 1..64, not {numa_nodes!r}")
        if pages_per_node is not None:
            check_int("pages_per_node", pages_per_node, accepted="an int or None (no limit)")
            if pages_per_node < 0:      # 0 is a memoryless node, as NUMA machines have
                raise ValueError(f"pages_per_node must be >= 0 or None, not {pages_per_node!r}")
        if not isinstance(events, bool):
            raise TypeError(f"events must be True or False, not {events!r}")
        if event_limit is not None:
            check_int("event_limit", event_limit, accepted="an int or None (unbounded)")
            if event_limit < 0:
                raise ValueError(f"event_limit must be >= 0 or None, not {event_limit!r}")
        for name, flag in (("fastpath", fastpath), ("check_fastpath", check_fastpath)):
            if flag is not None and not isinstance(flag, bool):
                raise TypeError(f"{name} must be True, False or None, not {flag!r}")
        if event_sink is not None and not callable(event_sink):
            raise TypeError(f"event_sink must be callable or None, not {event_sink!r}")
        self.profile = kernel_profile(kernel)
        self.kernel = self.profile.version
        from .huge_memory import THP_MODES, THP_VMSTAT
        if thp is not None and not isinstance(thp, str):
            raise TypeError(f"thp must be one of {THP_MODES} or None, not {thp!r}")
        if thp is not None and thp not in THP_MODES:
            raise ValueError(f"thp must be one of {THP_MODES}, not {thp!r}")
        if thp not in (None, "never") and not self.profile.thp:
            raise ValueError(f"kernel {self.kernel} has no transparent huge pages (2.6.38+): "
                             f"thp must be 'never' or None, not {thp!r}")
        self.thp = thp or ("madvise" if self.profile.thp else "never")
        self.thp_use_zero_page = True       # transparent_hugepage/use_zero_page
        self.huge_zero_folio = None         # mm_get_huge_zero_folio(), on first use
        self.page_size = page_size
        self.page_shift = page_size.bit_length() - 1
        self.numa_nodes = numa_nodes
        self.task_size = 1 << (self.page_shift + 36 - 1)     # user half of the address space
        self.mmap_base = self.task_size - (self.task_size >> 8)
        self.clock_ns = 0
        self.tlb_flushes = 0
        # KSM's shortcuts (kernel/ksm/fastpath.py): memory, page tables and KSM tell it
        # what changed through its hooks
        self.fp = FastPath(enabled=True if fastpath is None else fastpath,
                           check=False if check_fastpath is None else check_fastpath)
        # /proc/vmstat events, in the kernel's order (the THP ones only with THP)
        self.vmstat = Counter({name: 0 for name in (THP_VMSTAT if self.profile.thp else ())})
        self.vmstat.update(ksm_swpin_copy=0, cow_ksm=0)
        # A ring of the newest event_limit events (collections.deque(maxlen)): a long
        # run with events on keeps constant memory.  event_sink, if given, sees every
        # event as it is emitted (to a file, a counter...); the ring is kept as well
        # (event_limit=0 keeps none).
        self.events = EventLog(enabled=events, maxlen=event_limit)
        if event_sink is not None:
            self.events.subscribe(event_sink)
        self.memory = PhysicalMemory(self, page_size, numa_nodes, pages_per_node)
        self.cpu_fbatches = CpuFbatches(self)     # mm/swap.c per-CPU lru_add batches
        self.processes: dict[int, Process] = {}
        self._next_pid = 1000
        self._anon_vma_ids = 0
        self.ksm = Ksm(self)
        self.ksmd = Ksmd(self, self.ksm)
        self.sysfs = SysFs(self)
        self.procfs = ProcFs(self)
        self._kvm = None

    def __repr__(self):
        live = sum(p.alive for p in self.processes.values())
        return (f"Machine(kernel={self.kernel!r}, page_size={self.page_size}, "
                f"processes={live}, frames={len(self.memory.pages)})")

    @property
    def kvm(self):
        """The KVM module (a secondary MMU), loaded on first use."""
        if self._kvm is None:
            from .kvm import Kvm
            self._kvm = Kvm(self)
        return self._kvm

    # --- processes ---
    def spawn(self, name: str = "proc", *, node: int = 0) -> Process:
        """A new process with an empty address space, allocating from NUMA ``node``.

        Out of memory (no frame for its page-global directory) raises ENOMEM and
        changes nothing: no pid is used up, as fork() frees its pid on failure."""
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, not {type(name).__name__} {name!r}")
        check_int("node", node)
        if not 0 <= node < self.numa_nodes:
            raise ValueError(f"no NUMA node {node}: this machine has nodes 0..{self.numa_nodes - 1}")
        pid = self._next_pid
        mm = MM(self, pid, nid=node)        # may raise ENOMEM: nothing is taken yet
        self._next_pid += 1
        proc = Process(self, pid, str(name), mm)
        self.processes[pid] = proc
        return proc

    def live_processes(self) -> list[Process]:
        return [p for p in self.processes.values() if p.alive]

    def process(self, name_or_pid) -> Process:
        for p in self.processes.values():
            if p.alive and (p.pid == name_or_pid or p.name == name_or_pid):
                return p
        raise KeyError(f"no live process {name_or_pid!r}")

    def new_anon_vma(self) -> AnonVma:
        self._anon_vma_ids += 1
        return AnonVma(self._anon_vma_ids)

    def get_unmapped_area(self, mm: MM, length: int, *, anon_private: bool = False) -> int:
        """Top-down search below mmap_base, as x86-64's default layout does.

        An anonymous private mapping whose length is a multiple of 2 MiB is placed on a
        2 MiB boundary (__get_unmapped_area() -> thp_get_unmapped_area_vmflags(), 6.7+,
        whatever the THP mode), so that it can hold THPs."""
        if anon_private:
            from .huge_memory import thp_get_unmapped_area
            addr = thp_get_unmapped_area(self, mm, length, self._arch_get_unmapped_area)
            if addr is not None:
                return addr
        return self._arch_get_unmapped_area(mm, length)

    def _arch_get_unmapped_area(self, mm: MM, length: int) -> int:
        """arch_get_unmapped_area_topdown(): the highest hole below mmap_base."""
        top = self.mmap_base
        for v in sorted(mm.vmas, key=lambda v: v.start, reverse=True):
            if v.start >= top:
                top = min(top, v.start)
                continue
            if v.end <= top - length:
                return top - length
            top = min(top, v.start)
        if top - length < self.page_size:
            from .errors import enomem
            raise enomem("mmap: address space exhausted")
        return top - length

    def _fork(self, parent: Process, name: str | None) -> Process:
        # dup_mmap() fails with ENOMEM before the child exists if its tables cannot fit
        pt = parent.mm.pagetables
        mapped = [a for v in parent.mm.vmas for a, _ in pt.present(v.start, v.end)]
        huge = [a for v in parent.mm.vmas for a, _ in pt.present_huge(v.start, v.end)]
        # a huge PMD's deposited table stands where a PTE table would
        self.memory.reserve({0: 1 + pt.tables_needed(mapped + huge, empty=True)}, "fork")
        child = self.spawn(name or f"{parent.name}-child", node=parent.mm.nid)
        dup_mmap(parent.mm, child.mm)
        child.mm.flags = 0
        self.ksm.ksm_fork(child.mm, parent.mm)
        return child

    def _exit(self, proc: Process) -> None:
        """mmput(): ksm_exit, then exit_mmap (notifier release, unmap, free tables)."""
        mm = proc.mm
        proc.alive = False
        mm.mm_users = 0
        self.fp.mm_exited()
        self.ksm.ksm_exit(mm)
        mm.notifiers.release()
        self.cpu_fbatches.lru_add_drain()             # exit_mmap(): lru_add_drain()
        for v in list(mm.vmas):
            mm.zap_range(v.start, v.end, "exit_mmap")
        for v in mm.vmas:
            if v.shmem is not None:
                v.shmem.put(self.memory)
        mm.vmas.clear()
        mm.pagetables.free_all()

    # --- time ---
    def advance(self, ms: float, *, progress=None) -> None:
        """Let ``ms`` milliseconds of simulated time pass; ksmd runs if run=1.

        ``progress(done_ns, total_ns)`` is called between ksmd batches, for long runs;
        Ctrl-C stops between two batches and leaves the machine consistent."""
        if isinstance(ms, bool) or not isinstance(ms, (int, float)):
            raise TypeError(f"advance: ms must be a number of milliseconds, not {type(ms).__name__}")
        if not math.isfinite(ms) or ms < 0:
            raise ValueError(f"advance: ms must be finite and >= 0 (time only moves forward), not {ms}")
        self.ksmd.advance(ms, progress=progress)

    # --- checks used by tests and the book ---
    def present_ptes(self):
        """Yield (process, address, pte) for every present PTE (pte_present(): PROT_NONE
        included) of every live process, VMA by VMA in address order: the one walk the
        checks below and the figures' snapshot (viz/snapshot.py) share.  Only reads."""
        for p in self.processes.values():
            if not p.alive:
                continue
            pt = p.mm.pagetables
            for v in p.mm.vmas:
                for addr, pte in pt.present(v.start, v.end):
                    if pte_present(pte):
                        yield p, addr, pte

    def recount_page_counts(self) -> dict[int, tuple[int, int]]:
        """(refcount, mapcount) of every frame recomputed from the page tables."""
        maps = Counter()
        shmem_refs = Counter()
        tables = Counter()
        for _p, _addr, pte in self.present_ptes():
            pfn = pte_pfn(pte)
            if pfn:
                maps[pfn] += 1
        for p in self.processes.values():
            if not p.alive:
                continue
            mm = p.mm
            stack = [mm.pagetables.pgd, *mm.pagetables.deposited.values()]
            while stack:
                t = stack.pop()
                tables[t.page.pfn] += 1
                stack.extend(c for c in (t.children or ()) if c is not None)
            for v in mm.vmas:
                if v.shmem is not None:
                    for page in v.shmem.pages.values():
                        shmem_refs[page.pfn] = 1
        out = {}
        for pfn in set(maps) | set(shmem_refs) | set(tables):
            out[pfn] = (maps[pfn] + shmem_refs[pfn] + tables[pfn], maps[pfn])
        # every subpage of a large folio still referenced is allocated, mapped or not
        # (a PTE-mapped THP holds one reference per PTE, on that subpage)
        for folio in self.large_folios():
            for page in folio.pages:
                out.setdefault(page.pfn, (0, 0))
        return out

    def large_folios(self) -> list:
        """Every large folio a page table refers to (PMD or PTE), plus the huge zero folio."""
        found = {}
        if self.huge_zero_folio is not None:
            found[self.huge_zero_folio.pfn] = self.huge_zero_folio
        for p in self.processes.values():
            if p.alive:
                for v in p.mm.vmas:
                    for _addr, pmd in p.mm.pagetables.present_huge(v.start, v.end):
                        folio = self.memory.pages[pte_pfn(pmd)].folio
                        found[folio.pfn] = folio
        for _p, _addr, pte in self.present_ptes():
            page = self.memory.pages.get(pte_pfn(pte))
            if page is not None and page.folio is not None:
                found[page.folio.pfn] = page.folio
        return list(found.values())

    def recount_pmd_maps(self) -> dict[int, int]:
        """Huge PMDs mapping each large folio (head pfn -> count), from the page tables."""
        out = Counter()
        for p in self.processes.values():
            if p.alive:
                for v in p.mm.vmas:
                    for _addr, pmd in p.mm.pagetables.present_huge(v.start, v.end):
                        out[pte_pfn(pmd)] += 1
        return dict(out)
