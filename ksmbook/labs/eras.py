"""Chapter 07's experiment: one KSM merge seen by KVM, replayed under each kernel era.

The story of the seed commit (set_pte_at_notify, 2.6.32) in four steps, run on the
simulated kernel of the era the reader picks:

1. the guest writes two pages with equal bytes (two EPT-violation exits, two sptes);
2. ksmd merges them (two full scans: checksum first, merge on the second);
3. the guest reads one of them;
4. the guest writes it.

``EraStory`` runs the steps one at a time and keeps, per step, the events that tell
the story (PTE changes, notifier calls, what KVM did to its sptes, exits) and the
state after it (host PTE and spte per guest frame).  ``measure_era`` and
``era_table`` count the exits of each step for any kernel version, live.  Nothing
here is a hard-coded result: every number is read back from the simulator.

The eras (versions.py has the commits):

* 2.6.32-3.6, the seed: change_pte alone tells KVM; it remaps the spte in place.
* 3.7-6.9: 6bdb913f0a70 (2012-10-09, merged for 3.7 -- often misdated 3.6) brackets
  every set_pte_at_notify site with invalidate_range_start/end; KVM zaps the spte in
  range_start, so change_pte finds nothing to change.
* 6.10+: change_pte and set_pte_at_notify are deleted (997308f9ae72 and friends).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..kernel.events import Fault, KsmEvent, KvmEvent, NotifierCall, PteChange
from ..kernel.kvm import KvmMmuNotifier
from ..kernel.machine import Machine
from ..kernel.memory import PG_ksm
from ..kernel.mm import MADV_MERGEABLE
from ..kernel.mmu_notifier import MmuNotifier
from ..kernel.pagetable import pte_pfn, pte_present, pte_write
from ..uapi import KSM_SYSFS

PAGE_SIZE = 4096

#: the three eras the reader can pick: key -> (kernel version simulated, short label)
ERAS = {
    "2.6.32": ("2.6.32", "2.6.32 – 3.6: the seed"),
    "3.7": ("3.7", "3.7 – 6.9: bracketed"),
    "6.10": ("6.10", "6.10+: change_pte removed"),
}

#: kernels of the measured era table: the boundaries of every behaviour the story has
TABLE_KERNELS = ("2.6.32", "2.6.37", "2.6.38", "3.6", "3.7", "4.13", "5.13", "6.9", "6.10",
                 "6.18")

STEPS = (
    ("fault in", "the guest writes 'A'×4096 to gfn 0 and to gfn 1"),
    ("merge", "ksmd runs two full scans: the second merges the two pages"),
    ("read", "the guest reads 8 bytes of gfn 0"),
    ("write", "the guest writes one byte to gfn 0"),
)

#: KSM events worth a line in the story (not the checksums and tree bookkeeping)
KSM_STORY_ACTIONS = frozenset({"merge", "stable_hit", "zero_merge", "break_ksm",
                               "merge_failed"})


def story_events(events) -> list:
    """The events that tell the notifier story: PTE changes, notifier calls, KVM's
    actions, host faults and KSM merges (no checksums, no frame bookkeeping)."""
    out = []
    for e in events:
        if isinstance(e, (NotifierCall, KvmEvent, PteChange, Fault)):
            out.append(e)
        elif isinstance(e, KsmEvent) and e.action in KSM_STORY_ACTIONS:
            out.append(e)
    return out


@dataclass(frozen=True)
class GfnState:
    """One guest frame after a step: the host PTE behind it and KVM's spte for it."""
    gfn: int
    hva: int
    host_pfn: int | None          # None: no host PTE
    host_writable: bool
    host_ksm: bool                # the host frame is a KSM page
    spte_pfn: int | None          # None: no spte (the next access exits)
    spte_writable: bool


@dataclass(frozen=True)
class StepRecord:
    """What one step of the story did, read back from the simulator."""
    index: int                    # 1-based
    name: str
    description: str
    kernel: str
    events: tuple                 # story_events() of the step
    exits: int
    retries: int
    guest_ns: int                 # simulated ns of the guest's accesses in the step
    stats: dict                   # the VM's counters that changed in the step
    state: tuple                  # GfnState per guest frame, after the step
    hva_to_gfn: dict = field(repr=False, default_factory=dict)
    page_size: int = PAGE_SIZE

    def explain(self) -> list[str]:
        """viz.events.explain() of the step's events: which notifier fired, what KVM did,
        why (the words are viz's; the events are data)."""
        from ..viz.events import explain
        return explain(self.events, self.page_size)

    def count(self, kind, name: str) -> int:
        """How many events of ``kind`` (NotifierCall / KvmEvent) have op/action ``name``."""
        attr = "op" if kind is NotifierCall else "action"
        return sum(1 for e in self.events if isinstance(e, kind) and getattr(e, attr) == name)


class KvmNotifierWithoutChangePte(KvmMmuNotifier):
    """KVM's notifier with a NULL ->change_pte: the counterfactual of chapter 07.

    The seed commit says drivers without change_pte "will just receive the
    mmu_notifier_invalidate_page() callback"; this is what KVM would have received
    had it not implemented the new op.
    """
    change_pte = MmuNotifier.change_pte


class EraStory:
    """The four steps of the chapter on one simulated kernel, one step at a time.

    ``guest_faults_in=False`` lets QEMU (the host process) write the pages instead of
    the guest, so no spte exists when ksmd merges them; ``kvm_change_pte=False``
    registers KVM's notifier without its change_pte op (the seed's fallback).
    """

    def __init__(self, kernel: str = "6.18", *, steps=STEPS, guest_faults_in: bool = True,
                 kvm_change_pte: bool = True, page_size: int = PAGE_SIZE):
        self.kernel = kernel
        self.steps = tuple(steps)
        self.guest_faults_in = guest_faults_in
        m = self.machine = Machine(kernel, page_size=page_size)
        self.page_size = page_size
        self.pages = 2
        self.process = m.spawn("qemu")
        self.addr = self.process.mmap(self.pages * page_size)
        self.vm = m.kvm.create_vm(self.process, self.addr, self.pages * page_size)
        if not kvm_change_pte:
            _drop_change_pte(self.vm)
        # QEMU marks guest RAM mergeable when it creates it; ksmd only runs at "merge"
        self.process.madvise(self.addr, self.pages * page_size, MADV_MERGEABLE)
        self.records: list[StepRecord] = []

    def __repr__(self):
        return f"EraStory(kernel={self.kernel!r}, done={len(self.records)}/{len(self.steps)})"

    @property
    def profile(self):
        return self.machine.profile

    @property
    def position(self) -> int:
        return len(self.records)

    @property
    def done(self) -> bool:
        return self.position >= len(self.steps)

    def gpa(self, gfn: int) -> int:
        return gfn * self.page_size

    # --- the actions of the steps ---
    def _do(self, name: str) -> None:
        ps = self.page_size
        if name == "fault in":
            for gfn in range(self.pages):
                if self.guest_faults_in:
                    self.vm.guest_write(self.gpa(gfn), b"A" * ps)
                else:
                    self.process.write(self.addr + gfn * ps, b"A" * ps)
        elif name == "merge":
            self.machine.sysfs.write(f"{KSM_SYSFS}/run", "1")
            self.machine.ksmd.run_full_scans(2)
            self.machine.sysfs.write(f"{KSM_SYSFS}/run", "0")
        elif name == "read":
            self.vm.guest_read(self.gpa(0), 8)
        elif name == "read gfn 1":
            self.vm.guest_read(self.gpa(1), 8)
        elif name == "write":
            self.vm.guest_write(self.gpa(0), b"B")
        elif name == "write gfn 1":
            self.vm.guest_write(self.gpa(1), b"C")
        else:
            raise ValueError(f"no such step: {name!r}")

    def next(self) -> StepRecord:
        """Run the next step; returns its record (StopIteration when the story is over)."""
        if self.done:
            raise StopIteration("the story is over: make a new EraStory to replay it")
        name, description = self.steps[self.position]
        vm, m = self.vm, self.machine
        before = dict(vm.stats)
        log_before = len(vm.access_log)
        with m.events.capture() as events:
            self._do(name)
        vm.check_invariants()
        changed = {k: v - before.get(k, 0) for k, v in vm.stats.items()
                   if v != before.get(k, 0)}
        accesses = list(vm.access_log)[log_before:]
        rec = StepRecord(
            index=self.position + 1, name=name, description=description,
            kernel=self.kernel, events=tuple(story_events(events)),
            exits=changed.get("exits", 0), retries=changed.get("retries", 0),
            guest_ns=sum(a.ns for a in accesses), stats=changed, state=self.state(),
            hva_to_gfn={self.addr + g * self.page_size: g for g in range(self.pages)},
            page_size=self.page_size)
        self.records.append(rec)
        return rec

    def run_all(self) -> list[StepRecord]:
        while not self.done:
            self.next()
        return self.records

    def state(self) -> tuple:
        """GfnState of every guest frame now (reads the page tables, changes nothing)."""
        out = []
        mem = self.machine.memory
        for gfn in range(self.pages):
            hva = self.addr + gfn * self.page_size
            pte = self.process.mm.pagetables.get_pte(hva)
            present = pte_present(pte)
            host_pfn = pte_pfn(pte) if present else None
            page = mem.pages.get(host_pfn) if present else None
            s = self.vm.spte(self.gpa(gfn))
            out.append(GfnState(gfn, hva, host_pfn, present and pte_write(pte),
                                bool(page is not None and page.flags & PG_ksm),
                                None if s is None else s.pfn, bool(s and s.writable)))
        return tuple(out)


def _drop_change_pte(vm) -> None:
    """Re-register ``vm``'s notifier as one without ->change_pte, in the same slot."""
    subs = vm.mm.notifiers
    i = subs.list.index(vm.notifier)
    vm.notifier = KvmNotifierWithoutChangePte(vm)
    subs.list[i] = vm.notifier


def run_story(kernel: str, steps=STEPS, **kw) -> list[StepRecord]:
    """All the steps of a story on ``kernel``; returns their records."""
    return EraStory(kernel, steps=steps, **kw).run_all()


# --- the era table ----------------------------------------------------------------

@dataclass(frozen=True)
class EraRow:
    """Exits per step of the story on one kernel, and what the merge did to the sptes."""
    kernel: str
    era: str
    merge: int                    # exits while ksmd merged
    read: int                     # the guest's first read after the merge
    write_after_read: int
    write_unread: int             # a write to a merged page the guest had not read
    remapped_at_merge: int        # sptes remapped in place by change_pte
    zapped_at_merge: int          # sptes zapped (invalidate_range_start / invalidate_page)
    change_pte_calls: int         # change_pte notifier calls during the merge
    change_pte_misses: int        # ... that found no spte to change
    read_ns: int
    write_ns: int
    untouched_read: int           # exits of a first read of a page QEMU wrote, merged
    untouched_stays_merged: bool  # ... and whether that read left it merged

    @property
    def read_then_write(self) -> int:
        return self.read + self.write_after_read

    @property
    def merge_action(self) -> str:
        if self.remapped_at_merge:
            return "remap in place"
        return "zap" if self.zapped_at_merge else "nothing"


def untouched_read(kernel: str, **kw) -> dict:
    """QEMU (not the guest) wrote the two pages; ksmd merged them; the guest reads one.

    Before 2.6.38 hva_to_pfn asked get_user_pages for a writable page even on a read
    fault, so this first read breaks the merge with a COW.
    """
    story = EraStory(kernel, steps=STEPS[:3], guest_faults_in=False, **kw)
    recs = story.run_all()
    after = recs[-1].state[0]
    return {"exits": recs[-1].exits, "stays_merged": after.host_ksm,
            "spte_writable": after.spte_writable, "record": recs[-1]}


def measure_era(kernel: str) -> EraRow:
    """Run the story (and its variants) on ``kernel`` and count."""
    fault, merge, read, write = run_story(kernel)
    unread = run_story(kernel, steps=(STEPS[0], STEPS[1], STEPS[3]))[-1]
    first = untouched_read(kernel)
    prof = EraStory(kernel).profile
    return EraRow(
        kernel=kernel, era=prof.era, merge=merge.exits, read=read.exits,
        write_after_read=write.exits, write_unread=unread.exits,
        remapped_at_merge=merge.stats.get("sptes_remapped", 0),
        zapped_at_merge=merge.stats.get("sptes_zapped", 0),
        change_pte_calls=merge.count(NotifierCall, "change_pte"),
        change_pte_misses=merge.count(KvmEvent, "change_pte_miss"),
        read_ns=read.guest_ns, write_ns=write.guest_ns,
        untouched_read=first["exits"], untouched_stays_merged=first["stays_merged"])


def era_table(kernels=TABLE_KERNELS) -> list[EraRow]:
    """measure_era() for each kernel, in order."""
    return [measure_era(k) for k in kernels]
