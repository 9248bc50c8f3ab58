"""Issue 3's property test: the memory-manager state machine plus KSM.

On top of spawn/mmap/write/read/fork/munmap/madvise(DONTNEED)/mprotect/exit, ksmd
runs batches and full scans, processes opt in and out with MADV_MERGEABLE /
MADV_UNMERGEABLE and prctl(PR_SET_MEMORY_MERGE), and the knobs move: run 0/1/2,
use_zero_pages, smart_scan, max_page_sharing (EBUSY while pages are shared),
merge_across_nodes (on two NUMA nodes), the chain prune interval and the advisor; and
simulated time passes (ksmd wakes every sleep_millisecs).

After every step, besides issue 2's checks: no read ever differs from the model (KSM
must be invisible to user space), and every KSM counter equals a recount from
scratch over the rmap_items and trees (tests/machine_checks.check_ksm: global and
per-mm counters, KSM zero PTEs, red-black and memcmp order of every tree, stable
nodes and KSM pages pointing at each other).

Page contents come from a tiny alphabet so that merges, chains (max_page_sharing 2
or 3), zero-page merges and COW of merged pages happen all the time.
"""
import errno

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from ksmbook import (MADV_MERGEABLE, MADV_UNMERGEABLE, PR_GET_MEMORY_MERGE, PR_SET_MEMORY_MERGE,
                     PROT_WRITE)
from ksmbook.kernel.ksm.ksmd import KsmdNotRunning
from ksmbook.kernel.pagetable import pte_pfn

from machine_checks import check_ksm, fingerprint
from mm_model import MAX_PROCS, PS, RW, MMMachine, RefProcess, checked_fastpath, index

KSM = "/sys/kernel/mm/ksm"


class KsmMachine(MMMachine):
    numa_nodes = 2

    def __init__(self):
        super().__init__()
        self.m = type(self.m)(kernel=self.kernel, page_size=self.m.page_size,
                              numa_nodes=self.numa_nodes, events=False,
                              check_fastpath=self.check_fastpath)
        self.m.sysfs.write(f"{KSM}/run", "1")

    def new_process(self):
        """Processes alternate between the NUMA nodes (for merge_across_nodes=0)."""
        p = self.m.spawn(f"p{self.spawned}", node=self.spawned % self.numa_nodes)
        self.spawned += 1
        self.ref[p.pid] = RefProcess(p)

    # --- ksmd -----------------------------------------------------------------------------
    @rule(pages=st.integers(1, 40))
    def ksmd_batch(self, pages):
        if self.m.ksm.run == 1:
            self.m.ksmd.scan(pages)
        else:
            before = fingerprint(self.m)
            try:
                self.m.ksmd.scan(pages)
            except KsmdNotRunning:
                pass
            else:
                raise AssertionError("ksmd scanned with run != 1")
            assert fingerprint(self.m) == before

    @rule(n=st.integers(1, 3))
    def ksmd_full_scans(self, n):
        self.full_scans(n)

    @rule()
    def ksmd_two_full_scans(self):
        """What the selftests wait for: two full scans merge what can merge."""
        self.full_scans(2)

    def full_scans(self, n):
        if self.m.ksm.run == 1:
            before = self.m.ksm.ksm_scan.seqnr
            self.m.ksmd.run_full_scans(n)
            after = self.m.ksm.ksm_scan.seqnr
            # fewer scans only if the mm list ran empty (a scan drops mms with no
            # mergeable VMA): then ksmd sleeps until an mm registers
            assert before <= after <= before + n
            assert after == before + n or not self.m.ksm.slots()

    # --- workloads: make the interesting states common ---------------------------------------
    @initialize(use_zero_pages=st.booleans(), max_page_sharing=st.sampled_from(["2", "3", "256"]),
                contents=st.lists(st.sampled_from([0, 1, 1, 2]), min_size=2, max_size=6))
    def first_workload(self, use_zero_pages, max_page_sharing, contents):
        """Every example starts with knobs drawn and merge fodder in place."""
        self.m.sysfs.write(f"{KSM}/use_zero_pages", str(int(use_zero_pages)))
        self.m.sysfs.write(f"{KSM}/max_page_sharing", max_page_sharing)
        if not self.ref:
            self.new_process()
        self.mmap_mergeable(0, contents)

    @rule(i=index, contents=st.lists(st.sampled_from([None, "read", 0, 1, 1, 2, 0xA5]),
                                     min_size=1, max_size=6))
    def mmap_mergeable(self, i, contents):
        """mmap, fill (None: untouched, "read": read-faulted zero page), MADV_MERGEABLE."""
        r = self.pick(i)
        before = set(r.pages)
        self.mmap(i, len(contents), False, RW)
        start = min(set(r.pages) - before)
        for k, c in enumerate(contents):
            a = start + k * PS
            if c == "read":
                assert r.proc.read(a, PS) == bytes(PS)
            elif c is not None:
                r.proc.write(a, bytes([c]) * PS)
                r.data(a)[:] = bytes([c]) * PS
        r.proc.madvise(start, len(contents) * PS, MADV_MERGEABLE)

    @rule(i=index, j=index, npages=st.integers(1, 6), value=st.sampled_from([0, 1, 2]))
    def fill_run(self, i, j, npages, value):
        """Identical whole pages over a run of writable pages (merge fodder, or COW of
        merged pages)."""
        r = self.pick_mapped(i)
        start, end = self.pick_run(r, j, npages)
        for a in range(start, end, PS):
            if r.pages[a][0] & PROT_WRITE:
                r.proc.write(a, bytes([value]) * PS)
                r.data(a)[:] = bytes([value]) * PS

    @rule(ms=st.integers(0, 120))
    def advance(self, ms):
        """Simulated time: ksmd wakes every sleep_millisecs while run=1."""
        self.m.advance(ms)

    # --- opting in and out ------------------------------------------------------------------
    @rule(i=index, j=index, npages=st.integers(1, 6), merge=st.booleans())
    def madvise_ksm(self, i, j, npages, merge):
        r = self.pick_mapped(i)
        start, end = self.pick_run(r, j, npages)
        r.proc.madvise(start, end - start, MADV_MERGEABLE if merge else MADV_UNMERGEABLE)

    @rule(i=index, on=st.booleans())
    def prctl(self, i, on):
        r = self.pick(i)
        assert r.proc.prctl(PR_SET_MEMORY_MERGE, int(on)) == 0
        assert r.proc.prctl(PR_GET_MEMORY_MERGE) == int(on)

    @precondition(lambda self: len(self.ref) < MAX_PROCS)
    @rule()
    def prctl_newcomer(self):
        """A process that opts in with prctl before it maps anything (as after exec):
        ksmd drops its empty slot, and its first mmap must bring it back."""
        self.new_process()
        p = self.live()[-1].proc
        assert p.prctl(PR_SET_MEMORY_MERGE, 1) == 0

    # --- knobs ----------------------------------------------------------------------------
    @rule(value=st.sampled_from([1, 1, 1, 0, 2]))
    def run(self, value):
        self.m.sysfs.write(f"{KSM}/run", str(value))
        if value == 2:
            k = self.m.ksm
            assert k.ksm_scan.seqnr == 0 and k.ksm_rmap_items == 0
            assert k.ksm_pages_shared == k.ksm_pages_sharing == k.ksm_pages_unshared == 0

    @rule(name=st.sampled_from(["use_zero_pages", "smart_scan"]), value=st.booleans())
    def bool_knob(self, name, value):
        self.m.sysfs.write(f"{KSM}/{name}", str(int(value)))

    @rule(mode=st.sampled_from(["none", "scan-time"]))
    def advisor(self, mode):
        self.m.sysfs.write(f"{KSM}/advisor_mode", mode)
        if mode == "scan-time":
            self.expect_error(lambda: self.m.sysfs.write(f"{KSM}/pages_to_scan", "100"),
                              errno.EINVAL)

    @rule(value=st.sampled_from([0, 2000]))
    def prune_knob(self, value):
        self.m.sysfs.write(f"{KSM}/stable_node_chains_prune_millisecs", str(value))

    @rule(name=st.sampled_from(["max_page_sharing", "merge_across_nodes"]),
          choice=st.integers(0, 2))
    def busy_knob(self, name, choice):
        """Writable only with no shared KSM page: EBUSY (and no change) otherwise."""
        value = {"max_page_sharing": ("2", "3", "256"),
                 "merge_across_nodes": ("0", "1", "1")}[name][choice]
        k, path = self.m.ksm, f"{KSM}/{name}"
        if self.m.sysfs.read(path).strip() == value:
            self.m.sysfs.write(path, value)          # the same value is never EBUSY
        elif k.ksm_pages_shared:
            self.expect_error(lambda: self.m.sysfs.write(path, value), errno.EBUSY)
        else:
            # pages_shared == 0, but a KSM page mapped without an rmap_item (a fork ksmd
            # has not visited yet) still makes remove_all_stable_nodes() say busy
            try:
                self.m.sysfs.write(path, value)
            except OSError as e:
                assert e.errno == errno.EBUSY
                assert any(p.mapcount for p in self.m.memory.pages.values() if p.is_ksm)
            else:
                assert self.m.sysfs.read(path).strip() == value
                assert not list(k.stable_nodes()), "the stable tree was emptied first"

    # --- liveness: what can merge does merge -------------------------------------------------
    @rule()
    def settle(self):
        """With nothing changing, four full scans without smart-scan skips merge every
        mergeable page with its twins: afterwards each content has at most one page left
        outside KSM per tree (a lone page waiting in the unstable tree: the remainder of
        max_page_sharing, or a page whose twins are all in full dups), never beside a
        KSM page of that content with room for one more sharer, and with use_zero_pages
        no zero-filled page is left at all.  Knobs are put back after."""
        m, k = self.m, self.m.ksm
        saved_run, saved_smart = str(k.run), str(k.smart_scan)
        m.sysfs.write(f"{KSM}/smart_scan", "0")
        m.sysfs.write(f"{KSM}/run", "1")
        m.ksmd.run_full_scans(4)
        loose = {}
        for p in m.live_processes():
            if p.mm not in k.mm_slots:
                continue
            for v in p.mm.vmas:
                if not v.flags & v.VM_MERGEABLE or v.anon_vma is None:
                    continue
                for _a, pte in p.mm.pagetables.present(v.start, v.end):
                    page = m.memory.pages.get(pte_pfn(pte))
                    if page is None or not page.is_anon or page.is_ksm:
                        continue
                    key = (bytes(page.data), k.get_kpfn_nid(page.pfn))
                    loose.setdefault(key, set()).add(page.pfn)
        room = set()            # contents with a KSM page that can take one more sharer
        for node in k.stable_nodes():
            page = m.memory.pages.get(node.kpfn)
            if page is not None and page.mapping is node and \
                    0 < node.rmap_hlist_len < k.max_page_sharing:
                room.add((bytes(page.data), node.nid))
        for (data, nid), pfns in loose.items():
            if k.use_zero_pages and not any(data):
                assert not pfns, f"zero-filled pages {pfns} not mapped to the zero page"
            assert len(pfns) <= 1, f"identical pages {sorted(pfns)} left unmerged (node {nid})"
            assert (data, nid) not in room, \
                f"page {pfns} left beside an identical KSM page with room for it"
        m.sysfs.write(f"{KSM}/smart_scan", saved_smart)
        m.sysfs.write(f"{KSM}/run", saved_run)

    # --- invariants -------------------------------------------------------------------------
    @invariant()
    def ksm_counters_match_a_recount(self):
        check_ksm(self.m)


TestKsm = KsmMachine.TestCase
TestKsmCheckedFastpath = checked_fastpath(KsmMachine)


class Ksm610Machine(KsmMachine):
    """6.10: the stable tree is searched before the checksum test (pre-6.11 order)."""
    kernel = "6.10"


TestKsmPre611Order = Ksm610Machine.TestCase
TestKsmPre611OrderCheckedFastpath = checked_fastpath(Ksm610Machine)
