"""A VM under fire, in the three notifier eras: guest accesses, host writes, ksmd
batches, MADV_DONTNEED, fork and exit in any order.

After every step: the VM's secondary-MMU invariants (no spte maps a frame the host PTE
does not map; no writable spte over a read-only host PTE, so never on a KSM page; no
spte established during an invalidation and none left open; nothing mapped after
release), the page counts recounted from the page tables, and the data: a guest read,
and a host read of the same RAM, always return the bytes last written to that page by
the guest or the host.  A forked child's memory keeps the bytes it had at fork plus its
own writes.
"""
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, invariant, precondition, rule)

from ksmbook import MADV_DONTNEED, MADV_MERGEABLE, Machine

from machine_checks import check_page_counts
from mm_model import checked_fastpath

PS = 256
NPAGES = 4
RAM = NPAGES * PS
# three byte values: identical pages are common, so ksmd merges and writes unmerge
BYTES = st.sampled_from([0x00, 0x41, 0x42])


class KvmMachine(RuleBasedStateMachine):
    KERNEL = "6.18"
    check_fastpath = False

    def __init__(self):
        super().__init__()
        self.m = Machine(kernel=self.KERNEL, page_size=PS, check_fastpath=self.check_fastpath)
        self.m.sysfs.write("/sys/kernel/mm/ksm/run", "1")
        self.children = []          # (process, expected bytes of its copy)
        self._new_vm()

    def _new_vm(self):
        self.p = self.m.spawn("qemu")
        self.a = self.p.mmap(RAM)
        self.p.madvise(self.a, RAM, MADV_MERGEABLE)
        self.vm = self.m.kvm.create_vm(self.p, self.a, RAM)
        self.expected = bytearray(RAM)

    def live(self):
        return not self.vm.released

    # --- the guest ---
    @precondition(live)
    @rule(page=st.integers(0, NPAGES - 1), value=BYTES)
    def guest_fills_a_page(self, page, value):
        data = bytes([value]) * PS
        self.vm.guest_write(page * PS, data)
        self.expected[page * PS:(page + 1) * PS] = data

    @precondition(live)
    @rule(gpa=st.integers(0, RAM - 1), n=st.integers(1, 2 * PS), value=BYTES)
    def guest_writes(self, gpa, n, value):
        n = min(n, RAM - gpa)
        self.vm.guest_write(gpa, bytes([value]) * n)
        self.expected[gpa:gpa + n] = bytes([value]) * n

    @precondition(live)
    @rule(gpa=st.integers(0, RAM - 1), n=st.integers(0, 2 * PS))
    def guest_reads(self, gpa, n):
        n = min(n, RAM - gpa)
        assert self.vm.guest_read(gpa, n) == bytes(self.expected[gpa:gpa + n])

    # --- the host (QEMU itself, or anything sharing its memory) ---
    @precondition(live)
    @rule(page=st.integers(0, NPAGES - 1), off=st.integers(0, PS - 1), value=BYTES,
          whole=st.booleans())
    def host_writes(self, page, off, value, whole):
        start, n = (page * PS, PS) if whole else (page * PS + off, 1)
        self.p.write(self.a + start, bytes([value]) * n)
        self.expected[start:start + n] = bytes([value]) * n

    @precondition(live)
    @rule(page=st.integers(0, NPAGES - 1))
    def host_drops_a_page(self, page):
        self.p.madvise(self.a + page * PS, PS, MADV_DONTNEED)
        self.expected[page * PS:(page + 1) * PS] = bytes(PS)

    @rule(pages=st.integers(1, 3 * NPAGES))
    def ksmd_runs(self, pages):
        self.m.ksmd.scan(pages)

    @precondition(lambda self: self.live() and len(self.children) < 2)
    @rule()
    def host_forks(self):
        self.children.append((self.p.fork(), bytearray(self.expected)))

    @precondition(lambda self: self.children)
    @rule(i=st.integers(0, 1), page=st.integers(0, NPAGES - 1), value=BYTES)
    def child_writes(self, i, page, value):
        child, mem = self.children[i % len(self.children)]
        child.write(self.a + page * PS, bytes([value]) * PS)
        mem[page * PS:(page + 1) * PS] = bytes([value]) * PS
        assert child.read(self.a, RAM) == bytes(mem)

    @precondition(lambda self: self.children)
    @rule(i=st.integers(0, 1))
    def child_exits(self, i):
        child, _ = self.children.pop(i % len(self.children))
        child.exit()

    @precondition(live)
    @rule()
    def vmm_exits(self):
        self.p.exit()
        assert self.vm.released and not self.vm.ept

    @precondition(lambda self: not self.live())
    @rule()
    def start_another_vm(self):
        self._new_vm()

    # --- after every step ---
    @invariant()
    def secondary_mmu_rules_hold(self):
        for vm in self.m.kvm.vms:
            vm.check_invariants()
            assert vm.mmu_invalidate_in_progress == 0

    @invariant()
    def host_sees_what_was_written(self):
        if self.live():
            assert self.p.read(self.a, RAM) == bytes(self.expected)

    @invariant()
    def page_counts_add_up(self):
        # KSM's own counters are the KSM state machine's business (tests/property/)
        check_page_counts(self.m)


class SeedEra(KvmMachine):
    KERNEL = "2.6.32"


class BracketedEra(KvmMachine):
    KERNEL = "3.7"


class NoChangePteEra(KvmMachine):
    KERNEL = "6.18"


TestSeedEra = SeedEra.TestCase
TestBracketedEra = BracketedEra.TestCase
TestNoChangePteEra = NoChangePteEra.TestCase
TestSeedEraCheckedFastpath = checked_fastpath(SeedEra)
TestBracketedEraCheckedFastpath = checked_fastpath(BracketedEra)
TestNoChangePteEraCheckedFastpath = checked_fastpath(NoChangePteEra)
