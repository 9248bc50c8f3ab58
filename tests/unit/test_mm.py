"""Processes: mmap/munmap/mprotect/madvise/read/write, fork with COW, exit, and errors
that leave the machine exactly as it was."""
import errno

import pytest

import ksmbook
from ksmbook import (MADV_DONTNEED, MADV_MERGEABLE, MADV_UNMERGEABLE, PROT_NONE, PROT_READ,
                     PROT_WRITE, Machine, SegmentationFault)
from ksmbook.kernel.memory import PG_anon, PG_anon_exclusive
from ksmbook.kernel.mm import VMA
from ksmbook.kernel.pagetable import pte_pfn, pte_present, pte_special, pte_write

from machine_checks import check_ksm, check_page_counts, fingerprint

PS = 256
RW = PROT_READ | PROT_WRITE


@pytest.fixture
def m():
    return Machine(page_size=PS)


def pfn_at(p, addr):
    pte = p.mm.pagetables.get_pte(addr)
    assert pte_present(pte)
    return pte_pfn(pte)


def page_at(p, addr):
    return p.machine.memory.pfn_to_page(pfn_at(p, addr))


# --- mmap and friends ---------------------------------------------------------------------

def test_mmap_rounds_up_and_places_mappings_top_down(m):
    p = m.spawn("p")
    a = p.mmap(10)
    b = p.mmap(PS * 2 + 1)
    assert a % PS == 0 and b % PS == 0
    vmas = p.mm.vmas
    assert [(v.start, v.end) for v in vmas] == [(b, b + 3 * PS), (a, a + PS)]
    assert b + 3 * PS == a, "the second mapping goes right below the first"
    maps = p.maps().splitlines()
    assert len(maps) == 2 and " rw-p " in maps[0] and maps[0].startswith(f"{b:08x}-")
    s = p.mmap(PS, shared=True)
    assert " rw-s " in p.maps().splitlines()[0] and "/dev/zero" in p.maps().splitlines()[0]
    assert s + PS == b
    r = p.mmap(PS, PROT_READ)
    assert p.maps().splitlines()[0].split()[1] == "r--p"
    n = p.mmap(PS, PROT_NONE)
    assert p.maps().splitlines()[0].split()[1] == "---p"
    assert n < r


def test_untouched_memory_reads_as_zeros_through_the_zero_page(m):
    p = m.spawn("p")
    a = p.mmap(PS * 3)
    frames = len(m.memory.pages)
    assert p.read(a, PS * 3) == bytes(PS * 3)
    for i in range(3):
        pte = p.mm.pagetables.get_pte(a + i * PS)
        assert pte_pfn(pte) == 0 and not pte_write(pte) and pte_special(pte)
    assert len(m.memory.pages) == frames + 3, "3 tables (PUD, PMD, PTE) and no data frame"
    check_page_counts(m)


def test_write_allocates_a_zeroed_frame_per_touched_page(m):
    p = m.spawn("p")
    a = p.mmap(PS * 4)
    p.write(a + PS - 3, b"abcdef")            # the last 3 bytes of page 0, first 3 of page 1
    assert p.read(a + PS - 4, 8) == b"\0abcdef\0"
    pages = [page_at(p, a), page_at(p, a + PS)]
    assert pages[0].pfn != pages[1].pfn
    for page in pages:
        assert page.flags & PG_anon and page.flags & PG_anon_exclusive
        assert (page.refcount, page.mapcount) == (1, 1)
    assert bytes(pages[0].data) == bytes(PS - 3) + b"abc"
    assert bytes(pages[1].data) == b"def" + bytes(PS - 3)
    assert not pte_present(p.mm.pagetables.get_pte(a + 2 * PS)), "untouched stays pte_none"
    check_page_counts(m)


def test_write_after_read_fault_replaces_the_zero_page(m):
    p = m.spawn("p")
    a = p.mmap(PS)
    p.read(a, 1)
    p.write(a, b"z")
    pte = p.mm.pagetables.get_pte(a)
    assert pte_pfn(pte) != 0 and pte_write(pte)
    assert p.read(a, 2) == b"z\0"
    check_page_counts(m)


def test_read_and_write_of_many_pages_across_mappings(m):
    p = m.spawn("p")
    hi = p.mmap(PS * 2)
    lo = p.mmap(PS * 2)          # directly below hi: one contiguous range in two VMAs
    data = bytes(range(256)) * 3 + b"tail"
    p.write(lo + 10, data)
    assert p.read(lo + 10, len(data)) == data
    assert p.read(lo, 4 * PS)[10:10 + len(data)] == data


def test_munmap_part_of_a_mapping_splits_it(m):
    p = m.spawn("p")
    a = p.mmap(PS * 4)
    p.write(a, bytes([1]) * (4 * PS))
    p.munmap(a + PS, PS)
    assert [(v.start, v.end) for v in p.mm.vmas] == [(a, a + PS), (a + 2 * PS, a + 4 * PS)]
    assert p.read(a, PS) == bytes([1]) * PS
    assert p.read(a + 2 * PS, 2 * PS) == bytes([1]) * (2 * PS)
    with pytest.raises(SegmentationFault) as e:
        p.read(a + PS, 1)
    assert e.value.address == a + PS and e.value.access == "read"
    p.munmap(a + PS, PS)                  # unmapping a hole is fine, as on Linux
    p.munmap(a, PS * 4)
    assert p.mm.vmas == []
    check_page_counts(m)
    assert len(m.memory.pages) == 1, "only the PGD is left"


def test_mprotect_read_only_then_write_segfaults_naming_address_and_access(m):
    p = m.spawn("p")
    a = p.mmap(PS * 2)
    p.write(a, b"A" * (2 * PS))
    p.mprotect(a + PS, PS, PROT_READ)
    assert not pte_write(p.mm.pagetables.get_pte(a + PS))
    assert pte_write(p.mm.pagetables.get_pte(a)), "only the given range changes"
    assert p.read(a + PS, 3) == b"AAA"
    before = fingerprint(m)
    with pytest.raises(SegmentationFault) as e:
        p.write(a + PS - 1, b"xy")
    assert e.value.address == a + PS and e.value.access == "write"
    assert f"{a + PS:#x}" in str(e.value) and "write" in str(e.value)
    assert fingerprint(m) == before, "the byte before the read-only page was not written"
    p.mprotect(a + PS, PS, RW)
    p.write(a + PS, b"ok")
    assert p.read(a + PS, 3) == b"okA"
    # the two halves have the same flags again: vma_merge() makes them one VMA
    assert [v.prot_text() for v in p.mm.vmas] == ["rw-p"]


def test_mprotect_none_blocks_reads_and_keeps_the_data(m):
    p = m.spawn("p")
    a = p.mmap(PS)
    p.write(a, b"secret")
    frame = pfn_at(p, a)
    p.mprotect(a, PS, PROT_NONE)
    with pytest.raises(SegmentationFault) as e:
        p.read(a + 3, 1)
    assert (e.value.address, e.value.access) == (a + 3, "read")
    with pytest.raises(SegmentationFault):
        p.write(a, b"x")
    assert pfn_at(p, a) == frame, "PROT_NONE keeps the frame mapped (pte_present is true)"
    p.mprotect(a, PS, PROT_READ)
    assert p.read(a, 6) == b"secret"
    check_page_counts(m)


def test_madvise_dontneed_drops_private_pages(m):
    p = m.spawn("p")
    a = p.mmap(PS * 3)
    p.write(a, b"x" * (3 * PS))
    frames = len(m.memory.pages)
    p.madvise(a + PS, PS, MADV_DONTNEED)
    assert not pte_present(p.mm.pagetables.get_pte(a + PS))
    assert len(m.memory.pages) == frames - 1
    assert p.read(a, 3 * PS) == b"x" * PS + bytes(PS) + b"x" * PS
    check_page_counts(m)


def test_madvise_dontneed_keeps_shared_memory(m):
    p = m.spawn("p")
    s = p.mmap(PS * 2, shared=True)
    p.write(s, b"shared")
    p.madvise(s, PS * 2, MADV_DONTNEED)
    assert not pte_present(p.mm.pagetables.get_pte(s))
    assert p.read(s, 6) == b"shared", "the shmem page cache still holds the data"
    check_page_counts(m)


def test_shared_mapping_is_shared_with_the_child(m):
    p = m.spawn("p")
    s = p.mmap(PS, shared=True)
    p.write(s, b"one")
    c = p.fork()
    c.write(s, b"two")
    assert p.read(s, 3) == b"two"
    p.write(s + 3, b"!")
    assert c.read(s, 4) == b"two!"
    assert pfn_at(p, s) == pfn_at(c, s)
    page = page_at(p, s)
    # two mappings plus the page cache's own reference
    assert (page.refcount, page.mapcount) == (3, 2)
    check_page_counts(m)
    p.exit()
    assert c.read(s, 4) == b"two!"
    c.exit()
    assert len(m.memory.pages) == 0


# --- fork and copy-on-write --------------------------------------------------------------

def test_fork_write_protects_both_sides_and_raises_the_counts(m):
    p = m.spawn("p")
    a = p.mmap(PS)
    p.write(a, b"parent")
    page = page_at(p, a)
    assert pte_write(p.mm.pagetables.get_pte(a))
    c = p.fork("c")
    assert c.name == "c" and c.pid != p.pid
    assert not pte_write(p.mm.pagetables.get_pte(a))
    assert not pte_write(c.mm.pagetables.get_pte(a))
    assert pfn_at(c, a) == page.pfn
    assert (page.refcount, page.mapcount) == (2, 2)
    assert not page.flags & PG_anon_exclusive, "a forked page is no longer exclusive"
    check_page_counts(m)


def test_cow_copies_for_the_writer_then_the_last_one_reuses(m):
    p = m.spawn("p")
    a = p.mmap(PS)
    p.write(a, b"orig")
    old = page_at(p, a)
    c = p.fork()
    c.write(a, b"C")
    # the child got a private copy; the parent keeps the original
    assert pfn_at(c, a) != old.pfn and pfn_at(p, a) == old.pfn
    assert c.read(a, 4) == b"Crig" and p.read(a, 4) == b"orig"
    assert (old.refcount, old.mapcount) == (1, 1)
    check_page_counts(m)
    # the parent is now the only user: do_wp_page reuses the page in place
    p.write(a, b"P")
    assert pfn_at(p, a) == old.pfn and pte_write(p.mm.pagetables.get_pte(a))
    assert p.read(a, 4) == b"Prig" and c.read(a, 4) == b"Crig"
    check_page_counts(m)


def test_cow_parent_writes_first(m):
    p = m.spawn("p")
    a = p.mmap(PS)
    p.write(a, b"orig")
    old = page_at(p, a)
    c = p.fork()
    p.write(a, b"P")
    assert pfn_at(p, a) != old.pfn and pfn_at(c, a) == old.pfn
    c.write(a, b"C")
    assert pfn_at(c, a) == old.pfn, "the child, now the only mapper, reuses the page"
    assert (p.read(a, 4), c.read(a, 4)) == (b"Prig", b"Crig")
    check_page_counts(m)


def test_fork_of_a_zero_page_mapping_then_write(m):
    p = m.spawn("p")
    a = p.mmap(PS)
    p.read(a, 1)
    c = p.fork()
    assert pfn_at(c, a) == 0
    c.write(a, b"c")
    assert pfn_at(c, a) != 0 and pfn_at(p, a) == 0
    assert p.read(a, 1) == b"\0" and c.read(a, 1) == b"c"
    check_page_counts(m)


def test_grandchildren_share_until_they_write(m):
    p = m.spawn("p")
    a = p.mmap(PS * 2)
    p.write(a, b"x" * (2 * PS))
    c = p.fork()
    g = c.fork()
    page = page_at(p, a)
    assert (page.refcount, page.mapcount) == (3, 3)
    g.write(a, b"g")
    assert (page.refcount, page.mapcount) == (2, 2)
    c.exit()
    assert (page.refcount, page.mapcount) == (1, 1)
    p.write(a, b"p")
    assert pfn_at(p, a) == page.pfn
    assert [x.read(a, 2) for x in (p, g)] == [b"px", b"gx"]
    check_page_counts(m)


def test_mprotect_after_fork_keeps_cow(m):
    p = m.spawn("p")
    a = p.mmap(PS)
    p.write(a, b"same")
    c = p.fork()
    p.mprotect(a, PS, PROT_READ)
    p.mprotect(a, PS, RW)
    p.write(a, b"diff")
    assert c.read(a, 4) == b"same", "making the mapping writable again did not skip COW"
    check_page_counts(m)


def test_exit_frees_everything(m):
    p = m.spawn("p")
    a = p.mmap(PS * 8)
    p.write(a, b"q" * (8 * PS))
    p.read(p.mmap(PS * 2), 2 * PS)
    s = p.mmap(PS, shared=True)
    p.write(s, b"s")
    c = p.fork()
    c.write(a + PS, b"c")
    g = c.fork()
    for proc in (p, c, g):
        proc.exit()
        check_page_counts(m)
    assert len(m.memory.pages) == 0
    assert not p.alive and "exited" in repr(p)
    with pytest.raises(OSError) as e:
        p.read(a, 1)
    assert e.value.errno == errno.ESRCH


# --- errors leave no trace -----------------------------------------------------------------

def busy_machine():
    """A machine with a bit of everything, to compare fingerprints on."""
    m = Machine(page_size=PS)
    p = m.spawn("p")
    a = p.mmap(PS * 4)
    p.write(a, b"p" * (3 * PS))
    p.read(a + 3 * PS, 1)
    s = p.mmap(PS * 2, shared=True)
    p.write(s, b"s")
    c = p.fork("c")
    c.write(a, b"c")
    ro = p.mmap(PS, PROT_READ)
    p.madvise(a, PS * 4, MADV_MERGEABLE)
    return m, p, a, s, ro


def err(call):
    with pytest.raises(OSError) as e:
        call()
    return e.value.errno


CASES = {
    "mmap length 0": (lambda p, a, s, ro: p.mmap(0), errno.EINVAL),
    "mmap negative length": (lambda p, a, s, ro: p.mmap(-PS), errno.ENOMEM),   # size_t: huge
    "mmap bad node": (lambda p, a, s, ro: p.mmap(PS, node=1), errno.EINVAL),
    "munmap unaligned": (lambda p, a, s, ro: p.munmap(a + 1, PS), errno.EINVAL),
    "munmap length 0": (lambda p, a, s, ro: p.munmap(a, 0), errno.EINVAL),
    "munmap negative": (lambda p, a, s, ro: p.munmap(a, -1), errno.EINVAL),
    "munmap beyond TASK_SIZE": (lambda p, a, s, ro: p.munmap(p.machine.task_size, PS),
                                errno.EINVAL),
    "mprotect unaligned": (lambda p, a, s, ro: p.mprotect(a + 8, PS, PROT_READ), errno.EINVAL),
    "mprotect bad prot": (lambda p, a, s, ro: p.mprotect(a, PS, 0x100), errno.EINVAL),
    "mprotect unmapped": (lambda p, a, s, ro: p.mprotect(PS, PS, PROT_READ), errno.ENOMEM),
    "madvise bad advice": (lambda p, a, s, ro: p.madvise(a, PS, 999), errno.EINVAL),
    "madvise unaligned": (lambda p, a, s, ro: p.madvise(a + 1, PS, MADV_DONTNEED),
                          errno.EINVAL),
    "madvise bad advice, length 0": (lambda p, a, s, ro: p.madvise(a, 0, 999), errno.EINVAL),
    "madvise mergeable unmapped": (lambda p, a, s, ro: p.madvise(PS, PS, MADV_MERGEABLE),
                                   errno.ENOMEM),
    "prctl unknown option": (lambda p, a, s, ro: p.prctl(12345), errno.EINVAL),
    "prctl set with arg3": (lambda p, a, s, ro: p.prctl(ksmbook.PR_SET_MEMORY_MERGE, 1, 1),
                            errno.EINVAL),
    "prctl get with arg2": (lambda p, a, s, ro: p.prctl(ksmbook.PR_GET_MEMORY_MERGE, 1),
                            errno.EINVAL),
    "read negative length": (lambda p, a, s, ro: p.read(a, -1), errno.EINVAL),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_errors_raise_the_kernel_errno_and_change_nothing(name):
    call, code = CASES[name]
    m, p, a, s, ro = busy_machine()
    before = fingerprint(m)
    assert err(lambda: call(p, a, s, ro)) == code
    assert fingerprint(m) == before
    check_page_counts(m)
    check_ksm(m)


def test_calls_over_a_hole_change_the_mapped_part_then_fail_with_enomem():
    """Linux 6.18 (checked with ctypes on the real kernel): madvise_walk_vmas()
    advises every VMA of the range and returns -ENOMEM afterwards for the hole;
    do_mprotect_pkey() changes the VMAs before the hole, then stops with -ENOMEM.
    The 4-page mapping at ``a`` has nothing above it."""
    m, p, a, s, ro = busy_machine()
    assert err(lambda: p.mprotect(a, PS * 64, PROT_READ)) == errno.ENOMEM
    assert p.mm.find_vma(a).prot_text().startswith("r-")
    with pytest.raises(SegmentationFault):
        p.write(a, b"x")
    p.mprotect(a, PS * 4, PROT_READ | PROT_WRITE)
    assert err(lambda: p.madvise(a, PS * 64, MADV_UNMERGEABLE)) == errno.ENOMEM
    assert not p.mm.find_vma(a).flags & VMA.VM_MERGEABLE
    assert err(lambda: p.madvise(a, PS * 64, MADV_DONTNEED)) == errno.ENOMEM
    assert p.read(a, 1) == b"\0"                  # zapped: reads the zero page now
    assert err(lambda: p.madvise(a + 3 * PS, PS * 2, MADV_MERGEABLE)) == errno.ENOMEM
    assert p.mm.find_vma(a + 3 * PS).flags & VMA.VM_MERGEABLE
    check_page_counts(m)
    check_ksm(m)


SEGV = {   # call, the address it must name, the access
    "read unmapped": (lambda p, a, s, ro: p.read(PS * 16, 1), lambda a, s, ro: PS * 16, "read"),
    "write unmapped": (lambda p, a, s, ro: p.write(PS * 16, b"x"), lambda a, s, ro: PS * 16,
                       "write"),
    "write read-only": (lambda p, a, s, ro: p.write(ro + 5, b"x"), lambda a, s, ro: ro + 5,
                        "write"),
    "write running into a hole": (lambda p, a, s, ro: p.write(a + 4 * PS - 2, b"xyz"),
                                  lambda a, s, ro: a + 4 * PS, "write"),
    # the first mapping sits right below mmap_base, with nothing above it
    "read running into a hole": (lambda p, a, s, ro: p.read(a + 3 * PS, PS + 1),
                                 lambda a, s, ro: a + 4 * PS, "read"),
}


@pytest.mark.parametrize("name", sorted(SEGV))
def test_segfaults_name_the_address_and_change_nothing(name):
    call, where, access = SEGV[name]
    m, p, a, s, ro = busy_machine()
    addr = where(a, s, ro)
    before = fingerprint(m)
    with pytest.raises(SegmentationFault) as e:
        call(p, a, s, ro)
    assert (e.value.address, e.value.access) == (addr, access)
    assert f"{addr:#x}" in str(e.value) and access in str(e.value)
    assert fingerprint(m) == before


def test_calls_on_an_exited_process_are_esrch_and_change_nothing():
    m, p, a, s, ro = busy_machine()
    p.exit()
    before = fingerprint(m)
    for call in (lambda: p.mmap(PS), lambda: p.munmap(a, PS), lambda: p.read(a, 1),
                 lambda: p.write(a, b"x"), lambda: p.fork(), lambda: p.exit(),
                 lambda: p.mprotect(a, PS, PROT_READ), lambda: p.madvise(a, PS, MADV_DONTNEED),
                 lambda: p.prctl(ksmbook.PR_GET_MEMORY_MERGE)):
        assert err(call) == errno.ESRCH
        assert fingerprint(m) == before


def test_mprotect_and_madvise_of_length_zero_succeed_as_on_linux():
    # mm/mprotect.c do_mprotect_pkey(): "if (!len) return 0" right after the alignment
    # check, before prot is validated; mm/madvise.c: an empty range returns 0 once the
    # advice and the alignment are valid.  (Checked on this machine's 6.18 kernel.)
    m, p, a, s, ro = busy_machine()
    before = fingerprint(m)
    p.mprotect(a, 0, PROT_NONE)
    p.mprotect(a, 0, 0x100)
    p.madvise(a, 0, MADV_DONTNEED)
    p.madvise(PS, 0, MADV_MERGEABLE)
    assert fingerprint(m) == before
    assert err(lambda: p.mprotect(a + 1, 0, PROT_READ)) == errno.EINVAL
    assert err(lambda: p.madvise(a + 1, 0, MADV_DONTNEED)) == errno.EINVAL


def test_write_that_runs_out_of_memory_changes_nothing():
    # zero page + PGD, PUD, PMD, PTE + one data frame = 6 of 7 frames: the 3-page write
    # below needs 2 more frames, so it must fail before its first page is touched
    m = Machine(page_size=PS, pages_per_node=7)
    p = m.spawn("p")
    a = p.mmap(PS * 3)
    p.write(a, b"a")
    before = fingerprint(m)
    assert err(lambda: p.write(a, b"b" * (3 * PS))) == errno.ENOMEM
    assert fingerprint(m) == before
    check_page_counts(m)


def test_read_that_runs_out_of_memory_changes_nothing():
    # a read of untouched pages allocates no data frame, but the first one needs tables
    m = Machine(page_size=PS, pages_per_node=3)     # zero page + PGD + one more frame
    p = m.spawn("p")
    a = p.mmap(PS)
    before = fingerprint(m)
    assert err(lambda: p.read(a, 1)) == errno.ENOMEM
    assert fingerprint(m) == before


def test_fork_that_runs_out_of_memory_changes_nothing():
    # the parent uses PGD, PUD, PMD, PTE and one data frame: 5 frames + the zero page;
    # the child needs the same 4 tables and no data frame (it shares the page)
    for limit, ok in ((9, False), (10, True)):
        m = Machine(page_size=PS, pages_per_node=limit)
        p = m.spawn("p")
        a = p.mmap(PS)
        p.write(a, b"x")
        before = fingerprint(m)
        if ok:
            c = p.fork()
            assert c.read(a, 1) == b"x"
            assert len(m.memory.pages) == 9
        else:
            assert err(lambda: p.fork()) == errno.ENOMEM
            assert fingerprint(m) == before


def test_accesses_exactly_at_the_memory_limit_succeed():
    # zero page + 4 tables + 3 data frames = 8 frames: a 3-page write fits exactly
    m = Machine(page_size=PS, pages_per_node=8)
    p = m.spawn("p")
    a = p.mmap(PS * 3)
    p.write(a, b"w" * (3 * PS))
    assert p.read(a, 3 * PS) == b"w" * (3 * PS)
    assert m.memory.nr_free(0) == 0
    # a write to an exclusively owned page reuses it: no frame needed even when full
    p.write(a, b"again")
    assert p.read(a, 5) == b"again"
