"""A plain reference model of every process's memory, and the hypothesis state machine
that drives the simulator and the model side by side (issue 2).

The model knows nothing about frames, page tables or COW: each process is a dict
page address -> (prot, cell), where a private page's cell is its own bytearray and a
MAP_SHARED page's cell is one slot of a list that every process sharing the mapping
holds.  fork copies private cells and shares shared ones, which is all copy-on-write
must look like from user space.

After every step the machine is checked against the model without disturbing it (the
bytes behind each PTE are peeked; a read() would fault zero pages in and hide the
pte_none state), and the kernel's page counts are recounted from the page tables.
The ``read`` rule does the faulting read of whole mappings.
"""
from __future__ import annotations

import errno

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

from ksmbook import (MADV_DONTNEED, PROT_NONE, PROT_READ, PROT_WRITE, Machine,
                     SegmentationFault)
from ksmbook.kernel.mm import VMA
from ksmbook.kernel.pagetable import pte_pfn, pte_present

from machine_checks import check_page_counts, fingerprint

PS = 256                      # small pages: fast to copy, compare and checksum
MAX_PROCS = 4
MAX_MAP_PAGES = 5
RW = PROT_READ | PROT_WRITE
PROTS = (RW, RW, RW, PROT_READ, PROT_NONE)

index = st.integers(0, 1 << 16)            # picks from a list by modulo; shrinks to item 0
#: page contents from a tiny alphabet, so that identical pages are common
fill_byte = st.sampled_from([0, 0, 1, 1, 2, 0xA5])


class Cell:
    """One page of a MAP_SHARED mapping: shared by every process that maps it."""
    __slots__ = ("data",)

    def __init__(self):
        self.data = bytearray(PS)


class RefProcess:
    def __init__(self, proc):
        self.proc = proc
        self.pages: dict[int, list] = {}       # addr -> [prot, bytearray | Cell]

    def data(self, addr) -> bytearray:
        cell = self.pages[addr][1]
        return cell.data if isinstance(cell, Cell) else cell

    def fork(self, child_proc) -> "RefProcess":
        child = RefProcess(child_proc)
        for addr, (prot, cell) in self.pages.items():
            child.pages[addr] = [prot, cell if isinstance(cell, Cell) else bytearray(cell)]
        return child


def _is_checked(self) -> None:
    assert self.m.ksm.check_fastpath and self.m.ksm.fastpath, "the checked variant runs unchecked"


def checked_fastpath(machine_cls, max_examples: int = 20):
    """The TestCase of ``machine_cls`` on a Machine(check_fastpath=True): every
    shortcut asserts that the kernel's own lookup agrees.  Few examples: it is slow,
    and the plain TestCase already explores the rules."""
    variant = type(machine_cls.__name__ + "CheckedFastpath", (machine_cls,),
                   {"check_fastpath": True, "fastpath_is_checked": invariant()(_is_checked)})
    case = variant.TestCase
    case.settings = settings(max_examples=max_examples)
    return case


class MMMachine(RuleBasedStateMachine):
    """spawn, mmap (private, shared), write, read, fork, munmap, madvise(DONTNEED),
    mprotect and exit, against the reference model."""

    kernel = "6.18"
    check_fastpath = False

    def __init__(self):
        super().__init__()
        self.m = Machine(kernel=self.kernel, page_size=PS, events=False,
                         check_fastpath=self.check_fastpath)
        self.ref: dict[int, RefProcess] = {}
        self.spawned = 0

    # --- helpers ------------------------------------------------------------------
    def live(self):
        return [self.ref[pid] for pid in sorted(self.ref)]

    def pick(self, i) -> RefProcess:
        procs = self.live()
        return procs[i % len(procs)]

    def pick_mapped(self, i) -> RefProcess:
        """A process with some mapping (given one if it has none, so no step is wasted;
        preconditions that disable most rules make hypothesis give up on runs)."""
        r = self.pick(i)
        if not r.pages:
            self.mmap(i, 2, False, RW)
        return r

    def pick_run(self, r, i, npages, allow_holes=False):
        """[start, end) starting at a mapped page of r; stops before holes unless
        ``allow_holes``."""
        addrs = sorted(r.pages)
        start = addrs[i % len(addrs)]
        end = start + PS
        while end < start + npages * PS and (allow_holes or end in r.pages):
            end += PS
        return start, end

    def expect_error(self, call, code):
        """The call fails with ``code`` and leaves the machine exactly as it was."""
        before = fingerprint(self.m)
        try:
            call()
        except OSError as e:
            assert e.errno == code, (e, code)
        else:
            raise AssertionError(f"expected errno {errno.errorcode[code]}")
        assert fingerprint(self.m) == before, "a failed call changed the machine"

    # --- rules ----------------------------------------------------------------------
    def new_process(self):
        p = self.m.spawn(f"p{self.spawned}")
        self.spawned += 1
        self.ref[p.pid] = RefProcess(p)

    @initialize()
    def first_process(self):
        self.new_process()

    @precondition(lambda self: len(self.ref) < MAX_PROCS)
    @rule()
    def spawn(self):
        self.new_process()

    @rule(i=index, npages=st.integers(1, MAX_MAP_PAGES), shared=st.booleans(),
          prot=st.sampled_from(PROTS))
    def mmap(self, i, npages, shared, prot):
        r = self.pick(i)
        a = r.proc.mmap(npages * PS - (PS // 2 if npages > 1 else 0), prot, shared=shared)
        assert a % PS == 0
        for k in range(npages):
            assert a + k * PS not in r.pages, "mmap returned a mapped address"
            r.pages[a + k * PS] = [prot, Cell() if shared else bytearray(PS)]

    @rule(i=index, j=index, offset=st.integers(0, PS - 1), npages=st.integers(0, 2),
          value=fill_byte, whole=st.booleans())
    def write(self, i, j, offset, npages, value, whole):
        r = self.pick_mapped(i)
        addrs = sorted(r.pages)
        addr = addrs[j % len(addrs)]
        if whole:
            offset, length = 0, (npages + 1) * PS
        else:
            length = 1 + (offset * 7 + npages * PS) % (PS + npages * PS)
        start = addr + offset
        data = bytes([value]) * length if whole else \
            bytes((value + k) % 3 for k in range(length))
        bad = next((b for b in range(start - start % PS, start + length, PS)
                    if b not in r.pages or not r.pages[b][0] & PROT_WRITE), None)
        if bad is not None:
            before = fingerprint(self.m)
            try:
                r.proc.write(start, data)
            except SegmentationFault as e:
                assert (e.address, e.access) == (max(bad, start), "write")
            else:
                raise AssertionError("write to an unwritable page did not fault")
            assert fingerprint(self.m) == before
            return
        r.proc.write(start, data)
        pos = start
        for byte in data:
            r.data(pos - pos % PS)[pos % PS] = byte
            pos += 1

    @rule(i=index)
    def read(self, i):
        """Read every mapping of one process in full, through the faulting path."""
        r = self.pick(i)
        for v in list(r.proc.mm.vmas):
            n = v.end - v.start
            if v.flags & VMA.VM_READ:
                expect = b"".join(bytes(r.data(a)) for a in range(v.start, v.end, PS))
                assert r.proc.read(v.start, n) == expect
            else:
                before = fingerprint(self.m)
                try:
                    r.proc.read(v.start, n)
                except SegmentationFault as e:
                    assert (e.address, e.access) == (v.start, "read")
                else:
                    raise AssertionError("read of a PROT_NONE mapping did not fault")
                assert fingerprint(self.m) == before

    @precondition(lambda self: len(self.ref) < MAX_PROCS)
    @rule(i=index)
    def fork(self, i):
        r = self.pick(i)
        child = r.proc.fork()
        self.ref[child.pid] = r.fork(child)

    @rule(i=index, j=index, npages=st.integers(1, 4))
    def munmap(self, i, j, npages):
        r = self.pick_mapped(i)
        start, end = self.pick_run(r, j, npages, allow_holes=True)
        r.proc.munmap(start, end - start)
        for a in range(start, end, PS):
            r.pages.pop(a, None)

    @rule(i=index, j=index, npages=st.integers(1, 4))
    def madvise_dontneed(self, i, j, npages):
        r = self.pick_mapped(i)
        start, end = self.pick_run(r, j, npages)
        r.proc.madvise(start, end - start, MADV_DONTNEED)
        for a in range(start, end, PS):
            cell = r.pages[a][1]
            if not isinstance(cell, Cell):      # private memory reads back as zeros
                r.pages[a][1] = bytearray(PS)

    @rule(i=index, j=index, npages=st.integers(1, 4), prot=st.sampled_from(PROTS))
    def mprotect(self, i, j, npages, prot):
        r = self.pick_mapped(i)
        start, end = self.pick_run(r, j, npages)
        r.proc.mprotect(start, end - start, prot)
        for a in range(start, end, PS):
            r.pages[a][0] = prot

    @rule(i=index, j=index, prot=st.sampled_from(PROTS),
          what=st.sampled_from(["mprotect past a hole", "dontneed past a hole",
                                "mprotect from a hole", "unaligned", "zero-length munmap"]))
    def failing_call(self, i, j, prot, what):
        """Calls Linux refuses.  EINVAL, and ENOMEM for a range starting in a hole, leave
        the machine exactly as it was.  A range running into a hole is half done, as on
        Linux (checked on 6.18): mprotect changes the mapped stretch before the hole,
        madvise advises every mapped part, and then both return ENOMEM."""
        r = self.pick_mapped(i)
        start = sorted(r.pages)[j % len(r.pages)]
        hole = start
        while hole in r.pages:
            hole += PS
        p = r.proc
        if what == "mprotect from a hole":
            self.expect_error(lambda: p.mprotect(hole, 2 * PS, prot), errno.ENOMEM)
        elif what == "unaligned":
            self.expect_error(lambda: p.munmap(start + 1, PS), errno.EINVAL)
        elif what == "zero-length munmap":
            self.expect_error(lambda: p.munmap(start, 0), errno.EINVAL)
        else:
            try:
                if what == "mprotect past a hole":
                    p.mprotect(start, hole + PS - start, prot)
                else:
                    p.madvise(start, hole + PS - start, MADV_DONTNEED)
            except OSError as e:
                assert e.errno == errno.ENOMEM
            else:
                raise AssertionError(f"{what}: no ENOMEM")
            for a in range(start, hole, PS):
                if what == "mprotect past a hole":
                    r.pages[a][0] = prot
                elif not isinstance(r.pages[a][1], Cell):
                    r.pages[a][1] = bytearray(PS)

    @rule(i=index)
    def exit(self, i):
        r = self.pick(i)
        r.proc.exit()
        del self.ref[r.proc.pid]
        if not self.ref:
            # everyone has exited: not one frame may be left; then life goes on
            self.nothing_leaks_once_everyone_exited()
            self.new_process()

    # --- invariants --------------------------------------------------------------------
    @invariant()
    def memory_matches_the_model(self):
        mem = self.m.memory
        for r in self.ref.values():
            mm = r.proc.mm
            covered = {}
            for v in mm.vmas:
                for a in range(v.start, v.end, PS):
                    covered[a] = v
            assert set(covered) == set(r.pages), "VMAs do not cover the model's pages"
            for a, (prot, cell) in r.pages.items():
                v = covered[a]
                assert bool(v.flags & VMA.VM_SHARED) == isinstance(cell, Cell)
                assert bool(v.flags & VMA.VM_WRITE) == bool(prot & PROT_WRITE)
                assert bool(v.flags & VMA.VM_READ) == bool(prot & PROT_READ)
                pte = mm.pagetables.get_pte(a)
                if pte_present(pte):
                    got = mem.pfn_to_page(pte_pfn(pte)).data
                elif v.shmem is not None:
                    page = v.shmem.pages.get(v.pgoff + ((a - v.start) >> mm.page_shift))
                    got = page.data if page is not None else bytes(PS)
                else:
                    got = bytes(PS)
                assert got == r.data(a), f"pid {r.proc.pid} page {a:#x} differs from the model"

    @invariant()
    def page_counts_match_a_recount(self):
        check_page_counts(self.m)

    @invariant()
    def nothing_leaks_once_everyone_exited(self):
        if not self.ref:
            assert len(self.m.memory.pages) == 0, \
                f"frames left after every process exited: {list(self.m.memory.pages.values())}"
