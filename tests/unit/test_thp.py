"""Transparent huge pages (kernel/huge_memory.py): faults, PMD and folio splits, and KSM.

Every expected number below is what Linux 6.18 did on this project's host for the same
calls (madvise mode); the recorded traces thp_*.json check the same paths end to end.
"""
import errno

import pytest

import ksmbook
from ksmbook import MADV_DONTNEED, MADV_HUGEPAGE, MADV_MERGEABLE, MADV_NOHUGEPAGE, Machine
from ksmbook.kernel.huge_memory import split_huge_page
from ksmbook.kernel.pagetable import _PAGE_PSE, pte_pfn

from machine_checks import check_ksm, check_page_counts

PS = 4096
M = 512 * PS


def smaps_huge(m, p):
    text = m.procfs.read(f"/proc/{p.pid}/smaps_rollup")
    return int([ln for ln in text.splitlines() if ln.startswith("AnonHugePages:")][0].split()[1])


def vm(m, *names):
    return tuple(m.vmstat[n] for n in names)


def thp_process(m, blocks=1, byte=0x2A, advise=True):
    p = m.spawn("guest")
    a = p.mmap(blocks * M)
    if advise:
        p.madvise(a, blocks * M, MADV_HUGEPAGE)
    if byte is not None:
        p.write(a, bytes([byte]) * (blocks * M))
    return p, a


def checks(m):
    check_page_counts(m)
    check_ksm(m)
    pmd = m.recount_pmd_maps()
    for folio in m.large_folios():
        assert folio.pmd_maps == pmd.get(folio.pfn, 0), folio


# --- faults ---------------------------------------------------------------------------

def test_a_write_fault_maps_a_thp_with_a_huge_pmd():
    m = Machine()
    p, a = thp_process(m)
    assert a % M == 0                                  # thp_get_unmapped_area()
    walk = p.mm.pagetables.walk(a)
    assert walk[-1].level == "PMD" and walk[-1].entry & _PAGE_PSE
    assert smaps_huge(m, p) == 2048
    assert vm(m, "thp_fault_alloc", "thp_split_pmd") == (1, 0)
    folio = m.memory.pages[pte_pfn(walk[-1].entry)].folio
    assert folio.nr_pages == 512 and folio.pmd_maps == 1 and folio.pfn % 512 == 0
    assert p.read(a + 5 * PS, 2) == b"\x2a\x2a"
    checks(m)


def test_reads_map_the_huge_zero_page_and_a_write_replaces_it_with_a_thp():
    m = Machine()
    p, a = thp_process(m, byte=None)
    assert p.read(a + 7, 3) == bytes(3)
    assert smaps_huge(m, p) == 0 and vm(m, "thp_zero_page_alloc", "thp_fault_alloc") == (1, 0)
    q, b = thp_process(m, byte=None)
    q.read(b, 1)
    assert m.vmstat["thp_zero_page_alloc"] == 1        # allocated once, then shared
    p.write(a + 5 * PS, b"\x05")                       # do_huge_zero_wp_pmd() (6.14+)
    assert smaps_huge(m, p) == 2048 and vm(m, "thp_fault_alloc", "thp_split_pmd") == (1, 0)
    assert p.read(a + 5 * PS, 2) == b"\x05\x00"
    checks(m)


def test_before_6_14_a_write_to_the_huge_zero_page_splits_it():
    m = Machine(kernel="6.12")
    p, a = thp_process(m, byte=None)
    p.read(a, 1)
    p.write(a, b"\x01")
    assert smaps_huge(m, p) == 0
    assert vm(m, "thp_fault_alloc", "thp_split_pmd") == (0, 1)
    checks(m)


@pytest.mark.parametrize("mode, advise, huge", [
    ("madvise", True, 2048), ("madvise", False, 0), ("always", False, 2048),
    ("never", True, 0)])
def test_the_sysfs_mode_and_madv_hugepage_decide(mode, advise, huge):
    m = Machine(thp=mode)
    p, _a = thp_process(m, advise=advise)
    assert smaps_huge(m, p) == huge
    assert m.sysfs.read("/sys/kernel/mm/transparent_hugepage/enabled").count(f"[{mode}]") == 1


def test_nohugepage_a_misaligned_block_or_a_pte_table_mean_small_pages():
    m = Machine(thp="always")
    p = m.spawn()
    a = p.mmap(M + PS)                                 # not a 2 MiB multiple: not aligned
    p.write(a, bytes([1]) * (M + PS))
    b = p.mmap(M)
    p.madvise(b, M, MADV_NOHUGEPAGE)
    p.write(b, b"\x01")
    c = p.mmap(M)
    p.madvise(c, PS, MADV_NOHUGEPAGE)                  # the VMA is split: no 2 MiB fits
    p.write(c + PS, b"\x01")
    # only an aligned 2 MiB block wholly inside the first VMA can be a THP
    inside = (a + M - 1) // M * M + M <= a + M + PS
    assert a % M and smaps_huge(m, p) == 2048 * inside
    assert m.vmstat["thp_fault_alloc"] == inside
    checks(m)


def test_machine_thp_argument_and_sysfs_store():
    with pytest.raises(ValueError, match="always"):
        Machine(thp="sometimes")
    with pytest.raises(TypeError):
        Machine(thp=True)
    with pytest.raises(ValueError, match="2.6.38"):
        Machine(kernel="2.6.32", thp="always")
    assert Machine(kernel="2.6.32").thp == "never" and Machine().thp == "madvise"
    m = Machine()
    m.sysfs.write("/sys/kernel/mm/transparent_hugepage/enabled", "always\n")
    assert m.thp == "always"
    with pytest.raises(OSError) as e:
        m.sysfs.write("/sys/kernel/mm/transparent_hugepage/enabled", "sometimes")
    assert e.value.errno == errno.EINVAL


def test_anon_mappings_of_2mib_multiples_are_aligned_since_6_7():
    for kernel, aligned in (("6.18", True), ("6.6", False)):
        m = Machine(kernel=kernel)
        p = m.spawn()
        p.mmap(3 * PS)
        a = p.mmap(2 * M)
        assert (a % M == 0) is aligned, kernel
        assert p.mmap(M + PS) % M != 0 or not aligned


def test_without_512_free_frames_the_fault_falls_back():
    m = Machine(pages_per_node=300)
    p, a = thp_process(m, byte=None)
    p.write(a, b"\x01")
    assert smaps_huge(m, p) == 0 and vm(m, "thp_fault_alloc", "thp_fault_fallback") == (0, 1)
    checks(m)


def test_a_thp_fault_moves_the_whole_lru_batch():
    m = Machine()
    p = m.spawn()
    a = p.mmap(4 * PS)
    p.write(a, bytes(4 * PS))
    assert m.cpu_fbatches.pending() == 4
    b = p.mmap(M)
    p.madvise(b, M, MADV_HUGEPAGE)
    p.write(b, b"\x01")
    assert m.cpu_fbatches.pending() == 0


# --- fork, COW, zap, munmap, mprotect --------------------------------------------------

def test_fork_shares_the_thp_and_cow_splits_only_the_writers_pmd():
    m = Machine()
    p, a = thp_process(m, byte=0x11)
    c = p.fork("child")
    assert (smaps_huge(m, p), smaps_huge(m, c)) == (2048, 2048)
    c.write(a, b"\x99")
    assert (smaps_huge(m, p), smaps_huge(m, c)) == (2048, 0)
    assert m.vmstat["thp_split_pmd"] == 1 and p.read(a, 1) == b"\x11"
    checks(m)
    p.write(a + PS, b"\x22")
    assert m.vmstat["thp_split_pmd"] == 2 and c.read(a + PS, 1) == b"\x11"
    checks(m)
    c.exit()
    assert m.vmstat["thp_deferred_split_page"] == 1     # page 1 lost its last mapping
    checks(m)


def test_an_exclusive_read_only_thp_is_reused_on_write():
    m = Machine()
    p, a = thp_process(m)
    p.mprotect(a, M, ksmbook.PROT_READ)                 # change_huge_pmd: stays huge
    p.mprotect(a, M, ksmbook.PROT_READ | ksmbook.PROT_WRITE)
    p.write(a, b"\x01")
    assert smaps_huge(m, p) == 2048 and m.vmstat["thp_split_pmd"] == 0
    checks(m)


def test_dontneed_munmap_and_mprotect_of_part_of_a_thp_split_the_pmd():
    m = Machine()
    p, a = thp_process(m, blocks=2, byte=0x22)
    frames = len(m.memory.pages)
    p.madvise(a, 128 * PS, MADV_DONTNEED)
    assert vm(m, "thp_split_pmd", "thp_deferred_split_page") == (1, 1)
    assert len(m.memory.pages) == frames               # the folio stays whole (deferred)
    p.mprotect(a + M + 88 * PS, PS, ksmbook.PROT_READ)
    assert vm(m, "thp_split_pmd", "thp_deferred_split_page") == (2, 1)
    p.munmap(a + M + 188 * PS, 2 * PS)
    assert vm(m, "thp_split_pmd", "thp_deferred_split_page") == (2, 2)
    checks(m)
    p.madvise(a, M, MADV_DONTNEED)                     # the whole block: folio freed,
    assert len(m.memory.pages) < frames                # its empty PTE table too (PT_RECLAIM)
    p.write(a + 3 * PS, b"\x22")
    assert smaps_huge(m, p) == 2048 and m.vmstat["thp_fault_alloc"] == 3
    checks(m)


def test_exit_and_munmap_free_every_frame_of_a_thp():
    m = Machine()
    p, a = thp_process(m, blocks=2)
    base = len(m.memory.pages)
    p.munmap(a, M)
    assert len(m.memory.pages) == base - 512 - 1        # the folio and its deposited table
    checks(m)
    p.exit()
    checks(m)


# --- KSM --------------------------------------------------------------------------------

def scan(m, n=1):
    m.sysfs.write("/sys/kernel/mm/ksm/run", "1")
    m.ksmd.run_full_scans(n)
    m.sysfs.write("/sys/kernel/mm/ksm/run", "0")
    return m.ksm.stats()


def test_ksm_splits_a_thp_of_identical_subpages_after_one_failed_try():
    m = Machine()
    p, a = thp_process(m)
    p.madvise(a, M, MADV_MERGEABLE)
    st = scan(m)
    assert st["pages_volatile"] == 512 and smaps_huge(m, p) == 2048
    st = scan(m)
    assert vm(m, "thp_split_page_failed", "thp_split_page", "thp_split_pmd") == (1, 1, 1)
    assert (st["pages_shared"], st["pages_sharing"], st["stable_node_chains"]) == (2, 509, 1)
    assert smaps_huge(m, p) == 0
    checks(m)
    assert scan(m)["pages_sharing"] == 510
    checks(m)


def test_ksm_split_maps_zero_subpages_to_the_zero_page():
    m = Machine()
    p, a = thp_process(m, byte=None)
    p.write(a, b"\x01")
    p.madvise(a, M, MADV_MERGEABLE)
    frames = len(m.memory.pages)
    scan(m, 2)
    assert len(m.memory.pages) == frames - 511          # freed by the split, not merged
    st = m.ksm.stats()
    assert st["pages_shared"] == 0 and st["ksm_zero_pages"] == 0
    checks(m)


def test_before_6_12_zero_subpages_stay_and_merge():
    m = Machine(kernel="6.11")
    p, a = thp_process(m, byte=None)
    p.write(a, b"\x01")
    p.madvise(a, M, MADV_MERGEABLE)
    st = scan(m, 3)
    assert st["pages_shared"] >= 1 and st["pages_sharing"] >= 500
    checks(m)


def test_split_huge_page_fails_while_someone_else_holds_the_folio():
    m = Machine()
    p, a = thp_process(m)
    page = m.memory.pages[pte_pfn(p.mm.pagetables.get_pte(a))]
    assert split_huge_page(m, page, caller_pins=2) == -11     # -EAGAIN: an extra pin
    assert vm(m, "thp_split_page_failed", "thp_split_page") == (1, 0)
    assert split_huge_page(m, page, caller_pins=1) == 0
    assert page.folio is None and smaps_huge(m, p) == 0
    checks(m)


def test_two_guests_merge_subpage_by_subpage():
    m = Machine()
    procs = []
    for name in ("a", "b"):
        p = m.spawn(name)
        a = p.mmap(M)
        p.madvise(a, M, MADV_HUGEPAGE)
        p.write(a, b"".join(i.to_bytes(8, "little") + bytes(PS - 8) for i in range(1, 513)))
        p.madvise(a, M, MADV_MERGEABLE)
        procs.append(p)
    st = scan(m, 2)
    assert (st["pages_shared"], st["pages_sharing"]) == (512, 512)
    assert m.vmstat["thp_split_page"] == 2 and m.vmstat["thp_split_page_failed"] == 0
    checks(m)


@pytest.mark.parametrize("fastpath, check", [(False, False), (True, True)])
def test_the_fast_path_agrees_across_thp_splits(fastpath, check):
    def run(m):
        p, a = thp_process(m, blocks=2, byte=None)
        p.write(a + 3 * PS, b"\x22")
        p.write(a + M, bytes([0x22]) * M)
        p.madvise(a, 2 * M, MADV_MERGEABLE)
        return [dict(scan(m)) for _ in range(3)]
    assert run(Machine(fastpath=fastpath, check_fastpath=check)) == run(Machine())


def test_pre_5_8_cow_copies_the_whole_thp():
    m = Machine(kernel="5.4")
    p, a = thp_process(m)
    c = p.fork()
    c.write(a, b"\x01")
    assert (smaps_huge(m, p), smaps_huge(m, c)) == (2048, 2048)
    assert vm(m, "thp_fault_alloc", "thp_split_pmd") == (2, 0)
    checks(m)


# --- KVM: a guest backed by THPs -------------------------------------------------------

def _thp_guests(kernel, n=2):
    m = Machine(kernel=kernel)
    vms = []
    content = b"".join(i.to_bytes(8, "little") + bytes(PS - 8) for i in range(1, 513))
    for i in range(n):
        p = m.spawn(f"qemu{i}")
        a = p.mmap(M)
        p.madvise(a, M, MADV_HUGEPAGE)                 # QEMU does this on guest RAM
        vm = m.kvm.create_vm(p, a, M)
        vm.guest_write(0, content)
        p.madvise(a, M, MADV_MERGEABLE)
        vms.append(vm)
    return m, vms


@pytest.mark.parametrize("kernel", ["6.18", "6.9", "3.7", "3.6", "2.6.38"])
def test_a_thp_backed_guest_has_one_2mib_spte_until_ksm_splits_it(kernel):
    m, (g, h) = _thp_guests(kernel)
    assert g.huge_sptes() == 1 and g.stats["exits"] == 1     # one EPT violation for 2 MiB
    s = g.spte(5 * PS)
    assert s.level == 2 and s.gfn == 5 and s.pfn == g.spte(0).pfn + 5
    exits = g.stats["exits"]
    g.guest_read(0, M)
    assert g.stats["exits"] == exits                         # every page hits
    scan(m, 2)
    assert m.ksm.stats()["pages_sharing"] == 512
    # the split's invalidate_range_start zapped the 2 MiB spte (every era with THP):
    # there is no 4 KiB spte for change_pte to remap, so each page faults back alone
    assert g.huge_sptes() == 0 and len(g.ept) == 0
    g.guest_read(0, M)
    assert g.stats["exits"] == exits + 512 and len(g.ept) == 512
    assert not g.spte(0).writable                            # a KSM page: read-only
    for vm in (g, h):
        vm.check_invariants()
    checks(m)


def test_no_2mib_spte_without_a_host_thp_or_with_a_misaligned_memslot():
    m = Machine()
    p = m.spawn()
    a = p.mmap(2 * M)
    p.madvise(a, 2 * M, MADV_HUGEPAGE)
    vm = m.kvm.create_vm(p, a + PS, M)                       # hva and gfn not 2 MiB-congruent
    vm.guest_write(0, b"\x01")
    assert smaps_huge(m, p) == 2048 and vm.huge_sptes() == 0
    q = m.spawn()
    b = q.mmap(M)                                            # no MADV_HUGEPAGE: 4 KiB pages
    vm2 = m.kvm.create_vm(q, b, M)
    vm2.guest_write(0, b"\x01")
    assert vm2.huge_sptes() == 0
    vm.check_invariants()
    vm2.check_invariants()


def test_thp_events_are_worded():
    from ksmbook.viz.events import describe_events, explain
    m = Machine()
    with m.events.capture() as ev:
        p, a = thp_process(m)
        p.madvise(a, M, MADV_MERGEABLE)
        scan(m, 2)
    lines = "\n".join(describe_events(ev))
    assert "do_huge_pmd_anonymous_page" in lines
    assert "split failed (-EAGAIN)" in lines and "512 small pages now" in lines
    m2, (g, _h) = _thp_guests("6.18")
    with m2.events.capture() as ev2:
        scan(m2, 2)
        g.guest_read(0, PS)
    text = "\n".join(explain(ev2))
    assert "2 MiB spte: all 512 pages go" in text and "huge PMD is split" in text
