"""KVM as a secondary MMU: the era table of issue 4, the fault path, the notifier
handlers, the invariants, the cost model and the step-by-step explanation.

The era table (research notes 3.4) is reproduced from the kernel code, not from the
table: two guest pages with equal content, faulted in by the guest, merged by ksmd,
then guest exits counted.  One correction to the table's era boundary: 6bdb913f0a70,
which brackets change_pte, is dated 2012-10-09, after v3.6 shipped (2012-09-30), so
the "3.6 to 6.9" row starts at 3.7 and 3.6 still behaves as the seed.
"""
import errno

import pytest

from ksmbook import MADV_DONTNEED, MADV_MERGEABLE, Machine
from ksmbook.kernel import costs
from ksmbook.kernel.events import KvmEvent, NotifierCall
from ksmbook.kernel.kvm import VM
from ksmbook.viz.events import explain
from ksmbook.kernel.memory import PG_ksm
from ksmbook.kernel.pagetable import pte_pfn, pte_write

from machine_checks import check_page_counts

PS = 4096
SEED, BRACKETED = "seed", "bracketed"

#: the issue's table: merge, read after merge, write after that read, read-then-write
#: total, write to a merged page not read first; and what the merge did to the spte
ERA_TABLE = {
    SEED: dict(merge=0, read=0, write_after_read=2, total=2, write_unread=2,
               spte_after_merge="remapped read-only"),
    BRACKETED: dict(merge=0, read=1, write_after_read=2, total=3, write_unread=2,
                    spte_after_merge="zapped"),
}
ERAS = [("2.6.32", SEED), ("3.6", SEED), ("3.7", BRACKETED), ("6.9", BRACKETED),
        ("6.10", BRACKETED), ("6.18", BRACKETED)]


def new_guest(pages=1, kernel="6.18"):
    """A QEMU-like process whose ``pages`` of anonymous memory are a VM's guest RAM."""
    m = Machine(kernel=kernel, page_size=PS)
    p = m.spawn("qemu")
    a = p.mmap(pages * PS)
    return m, p, a, m.kvm.create_vm(p, a, pages * PS)


def merged_guest(kernel, pages=2):
    """Guest RAM of ``pages`` equal pages, written by the guest, then merged by ksmd."""
    m, p, a, vm = new_guest(pages, kernel)
    for i in range(pages):
        vm.guest_write(i * PS, b"A" * PS)
    p.madvise(a, pages * PS, MADV_MERGEABLE)
    m.sysfs.write("/sys/kernel/mm/ksm/run", "1")
    before = vm.stats["exits"]
    m.ksmd.run_full_scans(3)
    assert m.ksm.stats()["pages_sharing"] == pages - 1, "the pages merged"
    vm.check_invariants()
    return m, p, a, vm, vm.stats["exits"] - before


def exits_of(vm, fn):
    before = vm.stats["exits"]
    fn()
    vm.check_invariants()
    return vm.stats["exits"] - before


@pytest.mark.parametrize("kernel,era", ERAS)
def test_era_table(kernel, era):
    want = ERA_TABLE[era]
    m, p, a, vm, merge = merged_guest(kernel)
    host_pfn = pte_pfn(p.mm.pagetables.get_pte(a))
    assert m.memory.pfn_to_page(host_pfn).flags & PG_ksm
    s = vm.spte(0)
    if want["spte_after_merge"] == "zapped":
        assert s is None
    else:
        assert s is not None and s.pfn == host_pfn and not s.writable
    assert merge == want["merge"]
    read = exits_of(vm, lambda: vm.guest_read(0, 8))
    write = exits_of(vm, lambda: vm.guest_write(0, b"B"))
    assert (read, write, read + write) == (want["read"], want["write_after_read"],
                                          want["total"])
    assert vm.guest_read(0, 2) == b"BA" and p.read(a, 2) == b"BA"
    assert vm.spte(0).writable and vm.spte(0).pfn != host_pfn, "COW gave a private page"

    m2, p2, a2, vm2, _ = merged_guest(kernel)
    reasons = vm2.exit_reasons
    assert exits_of(vm2, lambda: vm2.guest_write(PS, b"C")) == want["write_unread"]
    assert vm2.stats["retries"] == 1, "the second exit is the retry after the COW"
    # seed: the remapped read-only spte write-faults, the retry finds none; later: none
    first = "write_protected" if era == SEED else "write"
    assert vm2.exit_reasons[first] - reasons[first] >= 1
    assert sum(vm2.exit_reasons.values()) - sum(reasons.values()) == 2
    assert p2.read(a2 + PS, 2) == b"CA"
    check_page_counts(m)
    check_page_counts(m2)


def test_the_era_boundary_is_the_bracket_commit():
    """3.6 still remaps in place; 3.7 is the first bracketed release."""
    for kernel, remapped in (("3.6", True), ("3.7", False)):
        _, _, _, vm, _ = merged_guest(kernel)
        assert (vm.stats["sptes_remapped"] > 0) is remapped, kernel
        assert (vm.spte(0) is not None) is remapped


def test_pinned_api():
    m, p, a, vm = new_guest(3)
    assert m.kvm is m.kvm and vm in m.kvm.vms
    assert vm.spte(PS) is None and vm.stats["exits"] == 0
    vm.guest_write(PS + 10, b"hello")
    assert vm.guest_read(PS + 10, 5) == b"hello"
    assert p.read(a + PS + 10, 5) == b"hello", "guest RAM is the process's memory"
    assert isinstance(vm.stats["exits"], int) and vm.stats["exits"] == 1
    e = vm.spte(PS)
    assert e.pfn == pte_pfn(p.mm.pagetables.get_pte(a + PS)) and e.writable is True
    p.write(a + PS, b"H")
    assert vm.guest_read(PS + 10, 1) == b"h" and vm.guest_read(PS, 1) == b"H"


def test_accesses_spanning_pages_fault_each_page():
    m, p, a, vm = new_guest(2)
    vm.guest_write(PS - 2, b"wxyz")
    assert vm.stats["exits"] == 2 and vm.guest_read(PS - 2, 4) == b"wxyz"
    assert vm.last_access.exits == 0 and vm.last_access.op == "read"


@pytest.mark.parametrize("kernel,exits,stays_merged", [
    ("2.6.32", 2, False), ("2.6.37", 2, False), ("2.6.38", 1, True), ("6.18", 1, True)])
def test_a_read_fault_on_a_ksm_page_breaks_the_merge_before_2_6_38(kernel, exits,
                                                                  stays_merged):
    """Before 2.6.38 hva_to_pfn asked for a writable page on every fault: a guest read
    whose spte was lost (here fork's range_start zapped it) COWs the KSM page; the COW
    bumps the sequence (change_pte), so the read takes the fault and a retry."""
    m, p, a, vm, _ = merged_guest(kernel)
    c = p.fork()
    assert vm.spte(0) is None, "copy_page_range's invalidate_range_start zapped it"
    assert exits_of(vm, lambda: vm.guest_read(0, 1)) == exits
    page = m.memory.pfn_to_page(pte_pfn(p.mm.pagetables.get_pte(a)))
    assert bool(page.flags & PG_ksm) is stays_merged
    assert vm.spte(0).writable is (not stays_merged)
    c.exit()


@pytest.mark.parametrize("kernel,read_exits,spte_pfn_zero", [
    ("2.6.32", 1, False), ("6.18", 1, True)])
def test_reading_untouched_guest_ram(kernel, read_exits, spte_pfn_zero):
    m, p, a, vm = new_guest(kernel=kernel)
    assert exits_of(vm, lambda: vm.guest_read(0, 4)) == read_exits
    assert vm.guest_read(0, 4) == bytes(4)
    assert (vm.spte(0).pfn == 0) is spte_pfn_zero, "2.6.38+ maps the zero page read-only"
    write_exits = exits_of(vm, lambda: vm.guest_write(0, b"x"))
    assert write_exits == (2 if spte_pfn_zero else 0), "COW from the zero page retries"
    assert vm.guest_read(0, 1) == b"x"


def test_fork_zaps_then_cow_retries_then_reuse_does_not():
    m, p, a, vm = new_guest(2)
    vm.guest_write(0, b"a" * (2 * PS))
    c = p.fork()
    assert vm.spte(0) is None and vm.spte(PS) is None
    assert exits_of(vm, lambda: vm.guest_write(0, b"b")) == 2      # COW: child holds it
    c.exit()
    assert exits_of(vm, lambda: vm.guest_write(PS, b"c")) == 1     # reuse: no notifier
    assert vm.stats["retries"] == 1
    assert c.alive is False and p.read(a, 1) == b"b"


def test_dontneed_zaps_and_the_guest_then_reads_zeros():
    m, p, a, vm = new_guest()
    vm.guest_write(0, b"data")
    p.madvise(a, PS, MADV_DONTNEED)
    assert vm.spte(0) is None
    assert vm.guest_read(0, 4) == bytes(4)
    vm.check_invariants()


def test_munmapped_guest_ram_faults_with_efault():
    m, p, a, vm = new_guest(2)
    vm.guest_write(PS, b"x")
    p.munmap(a + PS, PS)
    assert vm.spte(PS) is None
    with pytest.raises(OSError) as e:
        vm.guest_read(PS, 1)
    assert e.value.errno == errno.EFAULT
    vm.check_invariants()


def test_exit_releases_everything():
    m, p, a, vm = new_guest(2)
    vm.guest_write(0, b"x" * (2 * PS))
    with m.events.capture() as ev:
        p.exit()
    assert vm.released and vm.ept == {} and vm.stats["sptes_zapped"] == 2
    assert [e.op for e in ev if isinstance(e, NotifierCall)] == ["release"]
    vm.check_invariants()
    with pytest.raises(OSError) as e:
        vm.guest_write(0, b"y")
    assert e.value.errno == errno.EFAULT


def test_destroy_unregisters_with_release():
    m, p, a, vm = new_guest()
    vm.guest_write(0, b"x")
    vm.destroy()
    assert vm.ept == {} and p.mm.notifiers.list == []
    p.write(a, b"still fine")


def test_create_vm_errors_look_like_kvm_set_user_memory_region():
    m = Machine()
    p = m.spawn("q")
    a = p.mmap(2 * PS)
    for args, code in (((a + 1, PS), errno.EINVAL), ((a, PS + 1), errno.EINVAL),
                       ((a, 0), errno.EINVAL), ((a, 3 * PS), errno.EFAULT)):
        with pytest.raises(OSError) as e:
            m.kvm.create_vm(p, *args)
        assert e.value.errno == code, args
    p.exit()
    with pytest.raises(OSError) as e:
        m.kvm.create_vm(p, a, PS)
    assert e.value.errno == errno.ESRCH


def test_guest_physical_addresses_outside_ram_are_refused():
    m = Machine()
    p = m.spawn("q")
    vm = m.kvm.create_vm(p, p.mmap(PS), PS)
    with pytest.raises(ValueError, match="outside guest RAM"):
        vm.guest_read(PS, 1)
    with pytest.raises(ValueError, match="outside guest RAM"):
        vm.guest_write(PS - 1, b"ab")
    assert vm.stats["exits"] == 0


def test_change_pte_handler_per_era_called_directly():
    """5.13+: change_pte returns at once unless an invalidation is in progress and no
    longer bumps the sequence; before, it bumps the sequence and remaps or zaps."""
    for kernel, remaps in (("5.12", True), ("5.13", False)):
        m, p, a, vm = new_guest(kernel=kernel)
        vm.guest_write(0, b"x")
        pte = p.mm.pagetables.get_pte(a)
        seq = vm.mmu_invalidate_seq
        vm.kvm_mmu_notifier_change_pte(a, pte & ~0x2)          # read-only, same pfn
        assert (vm.stats["sptes_remapped"] == 1) is remaps
        assert vm.mmu_invalidate_seq == seq + (1 if remaps else 0)
        vm.kvm_mmu_notifier_change_pte(a, pte)                 # writable: zap (5.12)
        assert (vm.spte(0) is None) is remaps


def test_since_5_13_invalidations_outside_guest_ram_leave_kvm_alone():
    for kernel, bumps in (("5.12", True), ("5.13", False)):
        m = Machine(kernel=kernel)
        p = m.spawn("q")
        ram = p.mmap(PS)
        other = p.mmap(PS)
        vm = m.kvm.create_vm(p, ram, PS)
        p.write(other, b"x")
        seq = vm.mmu_invalidate_seq
        p.madvise(other, PS, MADV_DONTNEED)
        assert (vm.mmu_invalidate_seq == seq + 1) is bumps, kernel


def test_aging_handlers():
    m, p, a, vm = new_guest()
    vm.guest_read(0, 1)
    nf = p.mm.notifiers
    assert nf.test_young(a) is True and nf.test_young(a) is True, "test does not clear"
    flushes = vm.stats["tlb_flushes"]
    assert nf.clear_flush_young(a, a + PS) is True
    assert vm.stats["tlb_flushes"] == flushes + 1
    assert nf.clear_flush_young(a, a + PS) is False and nf.test_young(a) is False
    vm.guest_read(0, 1)
    assert nf.clear_young(a, a + PS) is True and vm.stats["tlb_flushes"] == flushes + 1


def test_invariants_can_fail():
    m, p, a, vm = new_guest()
    vm.guest_read(0, 1)                         # the zero page, read-only
    vm.ept[0].writable = vm.ept[0].host_writable = True
    with pytest.raises(AssertionError, match="writable spte over a read-only host PTE"):
        vm.check_invariants()
    vm.ept[0].writable = False
    vm.ept[0].pfn = 12345
    with pytest.raises(AssertionError, match="host PTE"):
        vm.check_invariants()


def test_no_spte_is_established_while_an_invalidation_is_in_progress():
    m, p, a, vm = new_guest()
    p.write(a, b"x")
    vm.kvm_mmu_notifier_invalidate_range_start(a, a + PS, "clear")
    # a fault during the invalidation must retry, not map
    assert vm.mmu_invalidate_retry(vm.mmu_invalidate_seq, a)
    vm.kvm_mmu_notifier_invalidate_range_end(a, a + PS, "clear")
    assert not vm.mmu_invalidate_retry(vm.mmu_invalidate_seq, a)
    assert vm.mmu_invalidate_retry(vm.mmu_invalidate_seq - 1, a), "the sequence moved"
    vm.check_invariants()


# --- costs ---

def test_write_latency_merged_vs_unmerged_follows_the_cost_model():
    c = costs.DEFAULT
    for kernel in ("2.6.32", "6.18"):
        m, p, a, vm, _ = merged_guest(kernel, pages=3)
        # make page 2 unique again and map it writable: the unmerged control
        vm.guest_write(2 * PS, b"U")
        vm.guest_write(2 * PS, b"V")
        assert vm.last_access.exits == 0
        assert vm.last_access.ns == c.tlb_hit_ns
        merged_ns = vm.guest_write(0, b"W")
        assert merged_ns == 2 * c.exit_ns + c.cow_fault_ns + c.page_walk_ns + c.tlb_hit_ns
        assert merged_ns > 1000 * c.tlb_hit_ns


def test_reads_after_a_merge_leak_from_3_7_on():
    """A side effect of the bracket the book can plot: the first read of a merged page
    costs an exit from 3.7 on (the spte was zapped), none in the seed era."""
    seed = merged_guest("2.6.32")[3]
    seed.guest_read(0, 1)
    new = merged_guest("6.18")[3]
    new.guest_read(0, 1)
    assert seed.last_access.ns == costs.DEFAULT.tlb_hit_ns
    assert new.last_access.ns == costs.DEFAULT.exit_ns + costs.DEFAULT.page_walk_ns + \
        costs.DEFAULT.tlb_hit_ns


def test_cost_model_is_replaceable_per_vm():
    m, p, a, vm, _ = merged_guest("6.18")
    vm.costs = costs.CostModel(vmexit_roundtrip_ns=0, kvm_fault_ns=0, cow_fault_ns=0,
                               page_walk_ns=0)
    assert vm.guest_write(0, b"x") == 1


def test_cross_vm_merge_is_the_side_channel():
    """Victim and attacker VMs in two QEMU processes: the attacker's write to its copy
    of the victim's page is slow once ksmd merged them, fast otherwise."""
    m = Machine(kernel="6.18")
    vms = []
    for name, content in (("victim", b"secret" * 100), ("attacker", b"secret" * 100)):
        p = m.spawn(name)
        a = p.mmap(2 * PS)
        vm = m.kvm.create_vm(p, a, 2 * PS)
        vm.guest_write(0, content)
        vm.guest_write(PS, name.encode() * 10)
        p.madvise(a, 2 * PS, MADV_MERGEABLE)
        vms.append(vm)
    m.sysfs.write("/sys/kernel/mm/ksm/run", "1")
    m.ksmd.run_full_scans(3)
    attacker = vms[1]
    guess_ns = attacker.guest_write(0, b"s")
    control_ns = attacker.guest_write(PS, b"a")
    assert guess_ns > 1000 and control_ns < 100
    assert vms[0].guest_read(0, 6) == b"secret", "the victim still sees its data"
    for vm in vms:
        vm.check_invariants()


# --- explain ---

def captured_merge_and_write(kernel):
    m, p, a, vm = new_guest(2, kernel)
    vm.guest_write(0, b"A" * PS)
    vm.guest_write(PS, b"A" * PS)
    p.madvise(a, 2 * PS, MADV_MERGEABLE)
    m.sysfs.write("/sys/kernel/mm/ksm/run", "1")
    with m.events.capture() as ev:
        m.ksmd.run_full_scans(3)
        vm.guest_write(0, b"B")
    return [e for e in ev if isinstance(e, (NotifierCall, KvmEvent))]


def test_explain_is_deterministic_and_tells_the_story_in_order():
    seed = explain(captured_merge_and_write("2.6.32"))
    assert seed == explain(captured_merge_and_write("2.6.32"))
    text = "\n".join(seed)
    assert text.index("change_pte") < text.index("spte_remap") < text.index("exit")
    assert "remap in place" in text and "2.6.32-3.6" in text
    assert text.index("exit gfn 0x0") < text.index("retry") < text.rindex("spte_install")
    new = "\n".join(explain(captured_merge_and_write("6.18")))
    assert "spte_remap" not in new and ": change_pte [" not in new
    assert new.index("invalidate_range_start") < new.index("spte_zap") < \
        new.index("invalidate_end")
    assert "6.10+" in new
    mid = "\n".join(explain(captured_merge_and_write("6.9")))
    assert "change_pte_miss" in mid and "dead code" in mid


def test_explain_formats_every_event_kind():
    m, p, a, vm = new_guest()
    with m.events.capture() as ev:
        vm.guest_write(0, b"x")
        p.exit()
    lines = explain(ev)
    assert len(lines) == len(ev)
    kinds = {line.split()[0] for line in lines}
    assert {"host", "kvm", "frame", "notifier"} <= kinds


def test_vm_repr_and_type():
    m, p, a, vm = new_guest()
    assert isinstance(vm, VM) and "exits=0" in repr(vm)
    assert all(isinstance(v, int) for v in vm.stats.values())
    assert not pte_write(0)
