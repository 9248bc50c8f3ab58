"""KVM as a secondary MMU: memslots, EPT sptes, EPT-violation exits, notifier handlers.

A VM's guest RAM is an anonymous mapping of a host process (QEMU's), which is why KSM
can merge it and why KVM needs MMU notifiers: the host may change the page behind any
guest frame at any time.  The VM keeps what virt/kvm and arch/x86/kvm/mmu keep:

* memslots: guest frame numbers (gfn) -> host virtual addresses (hva);
* an EPT-style table gfn -> ``Spte`` (pfn, writable, accessed, dirty, host_writable)
  and, per memslot, the rmap gfn -> the sptes that map it, through which every
  notifier handler finds its sptes;
* ``mmu_invalidate_seq`` and ``mmu_invalidate_in_progress`` (mmu_notifier_seq/count
  before 6.1): a fault snapshots the sequence before it resolves the pfn and retries
  if an invalidation ran meanwhile.

``guest_read``/``guest_write`` hit a valid spte or take an EPT-violation exit, whose
handler (``tdp_page_fault``) resolves the pfn through the host fault path
(``hva_to_pfn``), checks ``mmu_invalidate_retry`` and installs the spte.  The
notifier handlers are KVM's, per era (versions.py): change_pte remaps in place or
zaps (2.6.32-6.9), range_start zaps and flushes, range_end bumps the sequence,
release tears everything down.

Modelled: one vCPU, EPT with 4 KiB leaves, guest permissions ACC_ALL (so an spte is
writable exactly when the host page was mapped writable), accesses one at a time, so a
notifier never runs during a fault except the ones the fault's own host fault causes --
which is precisely the retry of the era table.  Not modelled: shadow paging, huge
pages, async page faults, dirty logging, the lockless fast-path fault (it cannot make
a !host_writable spte writable anyway).
"""
from __future__ import annotations

import errno
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from . import costs as _costs
from .errors import kernel_error
from .fault import FAULT_FLAG_WRITE, handle_mm_fault
from .memory import PG_ksm
from .mmu_notifier import MmuNotifier
from .pagetable import pte_flags_text, pte_pfn, pte_present, pte_write

#: no guest access needs more exits than this; more means the model livelocks
MAX_EXITS_PER_ACCESS = 8


@dataclass
class Spte:
    """One EPT leaf entry: the bits of the u64 spte the book shows.

    ``level`` 2 is a 2 MiB leaf (PG_LEVEL_2M): it maps the 512 gfns from ``gfn`` (the
    aligned first one) to the 512 frames from ``pfn``, and the EPT table holds it under
    each of those gfns.  KVM installs one when the host maps the hva with a huge PMD
    (a THP) and the memslot is 2 MiB-aligned with the hva (kvm_mmu_hugepage_adjust).
    """
    gfn: int
    pfn: int
    writable: bool          # PT_WRITABLE_MASK
    host_writable: bool     # SPTE_HOST_WRITEABLE: the host PTE allowed writes at fault time
    accessed: bool = True   # the EPT A bit, set by the hardware walk
    dirty: bool = False     # the EPT D bit
    level: int = 1          # PG_LEVEL_4K, or PG_LEVEL_2M

    @property
    def npages(self) -> int:
        return 512 if self.level == 2 else 1

    def pfn_of(self, gfn: int) -> int:
        """The frame this entry maps ``gfn`` to."""
        return self.pfn + (gfn - self.gfn)


@dataclass
class Memslot:
    """struct kvm_memory_slot: gfns [base_gfn, base_gfn + npages) at userspace_addr."""
    id: int
    base_gfn: int
    npages: int
    userspace_addr: int
    page_shift: int
    rmap: dict = field(default_factory=dict)    # gfn -> [Spte]: who maps this gfn

    @property
    def hva_end(self) -> int:
        return self.userspace_addr + (self.npages << self.page_shift)

    def gfn_to_hva(self, gfn: int) -> int:
        return self.userspace_addr + ((gfn - self.base_gfn) << self.page_shift)

    def hva_to_gfn(self, hva: int) -> int | None:
        if self.userspace_addr <= hva < self.hva_end:
            return self.base_gfn + ((hva - self.userspace_addr) >> self.page_shift)
        return None

    def gfns_in(self, start: int, end: int) -> range:
        """The gfns whose page overlaps hva range [start, end)."""
        lo, hi = max(start, self.userspace_addr), min(end, self.hva_end)
        if lo >= hi:
            return range(0)
        first = self.base_gfn + ((lo - self.userspace_addr) >> self.page_shift)
        last = self.base_gfn + ((hi - 1 - self.userspace_addr) >> self.page_shift)
        return range(first, last + 1)


class GuestAccess(NamedTuple):
    """One guest_read/guest_write as the cost model saw it."""
    op: str             # "read" | "write"
    gpa: int
    length: int
    exits: int
    ns: int


class KvmMmuNotifier(MmuNotifier):
    """kvm_mmu_notifier_ops: the struct KVM registers on the VMM process's mm."""

    def __init__(self, vm: "VM"):
        self.vm = vm

    def release(self, mm):
        self.vm.kvm_mmu_notifier_release()

    def clear_flush_young(self, mm, start, end):
        return self.vm.kvm_mmu_notifier_clear_flush_young(start, end)

    def clear_young(self, mm, start, end):
        return self.vm.kvm_mmu_notifier_clear_young(start, end)

    def test_young(self, mm, address):
        return self.vm.kvm_mmu_notifier_test_young(address)

    def change_pte(self, mm, address, pte):
        self.vm.kvm_mmu_notifier_change_pte(address, pte)

    def invalidate_page(self, mm, address):
        self.vm.kvm_mmu_notifier_invalidate_page(address)

    def invalidate_range_start(self, mm, start, end, event):
        self.vm.kvm_mmu_notifier_invalidate_range_start(start, end, event)

    def invalidate_range_end(self, mm, start, end, event):
        self.vm.kvm_mmu_notifier_invalidate_range_end(start, end, event)


class Kvm:
    """The kvm module (/dev/kvm): KVM_CREATE_VM + KVM_SET_USER_MEMORY_REGION in one call."""

    def __init__(self, machine):
        self.machine = machine
        self.vms: list[VM] = []

    def create_vm(self, process, addr: int, length: int) -> "VM":
        """A VM whose guest RAM (gpa 0..length) is ``process``'s mapping [addr, addr+length).

        Like KVM_SET_USER_MEMORY_REGION: EINVAL unless page-aligned, EFAULT unless the
        range is mapped; kvm_create_vm() registers the MMU notifier on the mm.
        """
        m = self.machine
        ps = m.page_size
        from .mm import Process, check_int
        if not isinstance(process, Process):
            raise TypeError(f"create_vm: process must be a Process, not {type(process).__name__}")
        if process.machine is not m:
            # /dev/kvm belongs to one kernel: a VM maps the memory of that kernel's processes
            raise ValueError(f"create_vm: process {process.pid} belongs to another Machine")
        check_int("addr", addr, "create_vm")
        check_int("length", length, "create_vm")
        if not process.alive:
            raise kernel_error(errno.ESRCH, f"create_vm: process {process.pid} has exited")
        if not isinstance(addr, int) or not isinstance(length, int) or addr % ps or \
                length <= 0 or length % ps:
            raise kernel_error(errno.EINVAL, "create_vm: guest RAM must be whole pages")
        if not process.mm.covered(addr, addr + length):
            raise kernel_error(errno.EFAULT, f"create_vm: [{addr:#x}, +{length:#x}) unmapped")
        vm = VM(self, len(self.vms) + 1, process, addr, length)
        self.vms.append(vm)
        return vm


class VM:
    """struct kvm with one vCPU: the guest's view of memory through EPT."""

    def __init__(self, kvm: Kvm, vm_id: int, process, addr: int, length: int):
        self.kvm = kvm
        self.machine = kvm.machine
        self.profile = self.machine.profile
        self.id = vm_id
        self.process = process
        self.mm = process.mm
        self.page_size = self.machine.page_size
        self.page_shift = self.machine.page_shift
        self.memslots = [Memslot(0, 0, length >> self.page_shift, addr, self.page_shift)]
        self.ept: dict[int, Spte] = {}
        self.mmu_invalidate_seq = 0
        self.mmu_invalidate_in_progress = 0
        self.mmu_invalidate_range: tuple[int, int] | None = None
        # flat ints, so a notebook can print them as they are; exits_<reason> split
        # the exits by what the EPT violation was
        self.stats: Counter = Counter({k: 0 for k in (
            "exits", "exits_read", "exits_write", "exits_write_protected", "hits",
            "retries", "sptes_installed", "sptes_zapped", "sptes_remapped", "tlb_flushes")})
        self.costs = _costs.DEFAULT
        self.guest_ns = 0
        self.access_log: deque = deque(maxlen=100_000)
        self.released = False
        self._violations: list[str] = []
        self.notifier = KvmMmuNotifier(self)
        self.mm.notifiers.register(self.notifier)

    def __repr__(self):
        return (f"VM(id={self.id}, pid={self.process.pid}, pages={self.memslots[0].npages}, "
                f"sptes={len(self.ept)}, exits={self.stats['exits']})")

    # --- helpers ---
    def _emit(self, function: str, action: str, gfn: int, pfn: int, reason=None,
              info=None) -> None:
        """Record a KvmEvent (fields only: viz/events.py words them)."""
        ev = self.machine.events
        if ev.enabled:
            ev.put(("KvmEvent", self.machine.clock_ns, self.id, function, action, gfn, pfn,
                    reason, info))             # (a KvmEvent, built when read)

    def _slot_for_gfn(self, gfn: int) -> Memslot | None:
        for s in self.memslots:
            if s.base_gfn <= gfn < s.base_gfn + s.npages:
                return s
        return None

    def _slots_in(self, start: int, end: int) -> list[Memslot]:
        return [s for s in self.memslots if s.gfns_in(start, end)]

    def spte(self, gpa: int) -> Spte | None:
        """The EPT entry that maps ``gpa`` (a copy), or None.  Under a 2 MiB entry
        (``level`` 2) the copy's ``gfn`` and ``pfn`` are those of ``gpa``'s page."""
        gfn = gpa >> self.page_shift
        e = self.ept.get(gfn)
        return None if e is None else replace(e, gfn=gfn, pfn=e.pfn_of(gfn))

    def huge_sptes(self) -> int:
        """How many 2 MiB EPT entries map guest RAM now."""
        return len({id(e) for e in self.ept.values() if e.level == 2})

    def gpa_to_hva(self, gpa: int) -> int:
        slot = self._slot_for_gfn(gpa >> self.page_shift)
        if slot is None:
            raise ValueError(f"gpa {gpa:#x} is outside guest RAM (an MMIO exit, not modelled)")
        return slot.gfn_to_hva(gpa >> self.page_shift) + gpa % self.page_size

    # --- spte changes, each an event ---
    def _install(self, gfn: int, pfn: int, writable: bool, why: str, level: int = 1) -> Spte:
        """mmu_set_spte(): map gfn -> pfn; replaces (and unlinks) an older entry.  A
        2 MiB entry (``level`` 2, ``gfn``/``pfn`` its first page) replaces the 4 KiB
        entries below it (their table is zapped)."""
        if self.mmu_invalidate_in_progress:
            self._violations.append(f"gfn {gfn:#x} mapped while an invalidation was in "
                                    f"progress")
        slot = self._slot_for_gfn(gfn)
        spte = Spte(gfn, pfn, writable, host_writable=writable, level=level)
        for g in range(gfn, gfn + spte.npages):
            old = self.ept.get(g)
            if old is not None:
                self._unlink(old)
        for g in range(gfn, gfn + spte.npages):
            self.ept[g] = spte
            slot.rmap.setdefault(g, []).append(spte)
        self.stats["sptes_installed"] += 1
        self._emit("mmu_set_spte", "spte_install", gfn, pfn, why,
                   {"writable": writable, "level": level})
        return spte

    def _unlink(self, spte: Spte) -> bool:
        """Take ``spte`` out of the table and the rmap (False if it already was)."""
        if self.ept.get(spte.gfn) is not spte:
            return False
        slot = self._slot_for_gfn(spte.gfn)
        for g in range(spte.gfn, spte.gfn + spte.npages):
            del self.ept[g]
            slot.rmap[g].remove(spte)
        return True

    def _zap(self, spte: Spte, why: str, info=None) -> None:
        """drop_spte(): unlink from the EPT table and the rmap (``why``: the caller),
        all 512 gfns of a 2 MiB entry at once."""
        if not self._unlink(spte):
            return
        self.stats["sptes_zapped"] += 1
        if spte.level == 2:
            info = {**(info or {}), "level": 2}
        self._emit("drop_spte", "spte_zap", spte.gfn, spte.pfn, why, info)

    def _zap_range(self, start: int, end: int, why: str, info=None) -> int:
        """kvm_unmap_hva_range(): zap every spte mapping a page of [start, end)."""
        n = 0
        for slot in self._slots_in(start, end):
            for gfn in slot.gfns_in(start, end):
                for spte in list(slot.rmap.get(gfn, ())):
                    self._zap(spte, why, info)
                    n += 1
        return n

    def _flush(self, why: str) -> None:
        """kvm_flush_remote_tlbs() (``why``: the caller)."""
        self.stats["tlb_flushes"] += 1
        self._emit("kvm_flush_remote_tlbs", "tlb_flush", -1, -1, why)

    # --- the guest ---
    def _chunks(self, gpa: int, n: int):
        from .mm import check_int
        check_int("gpa", gpa, "guest access")
        check_int("length", n, "guest access")
        if gpa < 0 or n < 0:
            raise ValueError(f"bad guest access at {gpa!r}, length {n!r}")
        self.gpa_to_hva(gpa)
        if n:
            self.gpa_to_hva(gpa + n - 1)
        ps = self.page_size
        pos, end = gpa, gpa + n
        while pos < end:
            chunk = min(end, pos - pos % ps + ps) - pos
            yield pos >> self.page_shift, pos % ps, chunk
            pos += chunk

    def _reserve(self, chunks, write: bool) -> None:
        """ENOMEM before the first EPT fault if the host faults cannot all finish, so a
        failed guest access leaves no frame behind (host memory is the process's)."""
        self.process.reserve_pages([self.gpa_to_hva(gfn << self.page_shift)
                                    for gfn, _off, _chunk in chunks], write)

    def _check_live(self) -> None:
        if self.released:
            raise kernel_error(errno.EFAULT, f"VM {self.id}: its mm has exited (released)")

    def guest_read(self, gpa: int, n: int) -> bytes:
        """The guest reads ``n`` bytes at guest-physical ``gpa``."""
        self._check_live()
        out = bytearray()
        total_exits = total_ns = 0
        chunks = list(self._chunks(gpa, n))
        self._reserve(chunks, write=False)
        for gfn, off, chunk in chunks:
            spte, exits, ns = self._access(gfn, write=False)
            out += self.machine.memory.pfn_to_page(spte.pfn_of(gfn)).data[off:off + chunk]
            total_exits += exits
            total_ns += ns
        self._record("read", gpa, n, total_exits, total_ns)
        return bytes(out)

    def guest_write(self, gpa: int, data) -> int:
        """The guest writes ``data`` at guest-physical ``gpa``; returns simulated ns."""
        self._check_live()
        if isinstance(data, (str, int)):
            raise TypeError(f"guest_write: data must be bytes-like, not {type(data).__name__}")
        data = bytes(data)
        chunks = list(self._chunks(gpa, len(data)))
        self._reserve(chunks, write=True)
        total_exits = total_ns = pos = 0
        memory = self.machine.memory
        for gfn, off, chunk in chunks:
            spte, exits, ns = self._access(gfn, write=True)
            memory.write_page(memory.pfn_to_page(spte.pfn_of(gfn)), off, data[pos:pos + chunk])
            pos += chunk
            total_exits += exits
            total_ns += ns
        self._record("write", gpa, len(data), total_exits, total_ns)
        return total_ns

    def _record(self, op, gpa, length, exits, ns) -> None:
        self.guest_ns += ns
        self.access_log.append(GuestAccess(op, gpa, length, exits, ns))

    @property
    def exit_reasons(self) -> dict:
        """Exits by reason: read / write with no spte, write to a read-only spte."""
        return {k[len("exits_"):]: v for k, v in self.stats.items() if k.startswith("exits_")}

    @property
    def last_access(self) -> GuestAccess | None:
        return self.access_log[-1] if self.access_log else None

    def _access(self, gfn: int, write: bool) -> tuple[Spte, int, int]:
        """The hardware: an EPT walk that hits, or an EPT violation and a re-execution."""
        exits = 0
        host_faults = []
        for _ in range(MAX_EXITS_PER_ACCESS):
            spte = self.ept.get(gfn)
            if spte is not None and (spte.writable or not write):
                spte.accessed = True
                spte.dirty = spte.dirty or write
                if not exits:
                    self.stats["hits"] += 1
                return spte, exits, self.costs.access_ns(exits, tuple(host_faults))
            exits += 1
            host_faults.append(self.handle_ept_violation(gfn, write, spte))
        raise AssertionError(f"VM {self.id}: gfn {gfn:#x} took {exits} exits without "
                             f"making progress")

    def handle_ept_violation(self, gfn: int, write: bool, spte: Spte | None) -> str:
        """handle_ept_violation() -> kvm_mmu_page_fault() -> the TDP fault handler.

        Snapshot mmu_invalidate_seq, resolve the pfn through the host (which may COW
        and so invalidate), then under mmu_lock give up if mmu_invalidate_retry() says
        an invalidation ran: the vCPU re-enters the guest, the instruction faults again
        and that is one more exit.  Returns the kind of host fault the exit caused.
        """
        if write and spte is not None:
            reason = "write_protected"
        else:
            reason = "write" if write else "read"
        self.stats["exits"] += 1
        self.stats[f"exits_{reason}"] += 1
        self._emit("handle_ept_violation", "exit", gfn,
                   -1 if spte is None else spte.pfn_of(gfn), reason)
        mmu_seq = self.mmu_invalidate_seq
        hva = self._slot_for_gfn(gfn).gfn_to_hva(gfn)
        pfn, map_writable, host_fault, why = self.hva_to_pfn(hva, write)
        if self.mmu_invalidate_retry(mmu_seq, hva):
            self.stats["retries"] += 1
            self._emit("mmu_invalidate_retry", "retry", gfn, pfn, "invalidated",
                       {"seq_before": mmu_seq, "seq_after": self.mmu_invalidate_seq})
            return host_fault
        if self._host_mapping_level(gfn, hva) == 2:
            base = gfn & ~511
            self._install(base, pfn - (gfn - base), map_writable, why, level=2)
        else:
            self._install(gfn, pfn, map_writable, why)
        return host_fault

    def _host_mapping_level(self, gfn: int, hva: int) -> int:
        """kvm_mmu_max_mapping_level() -> host_pfn_mapping_level(): 2 (PG_LEVEL_2M) when
        the host page table maps ``hva`` with a huge PMD (a THP, 2.6.38+:
        transparent_hugepage_adjust) and the memslot allows it (lpage_info: the 2 MiB
        gfn range lies in the slot, and gfn and hva are aligned alike); else 1."""
        pmd = self.mm.pagetables.huge_pmd(hva)
        if not pmd:
            return 1
        slot = self._slot_for_gfn(gfn)
        base = gfn & ~511
        if base < slot.base_gfn or base + 512 > slot.base_gfn + slot.npages:
            return 1
        if (slot.gfn_to_hva(base) >> self.page_shift) & 511:
            return 1
        return 2

    def mmu_invalidate_retry(self, mmu_seq: int, hva: int) -> bool:
        """mmu_invalidate_retry[_gfn]() (mmu_notifier_retry before 6.1)."""
        if self.mmu_invalidate_in_progress:
            return True
        return self.mmu_invalidate_seq != mmu_seq

    def hva_to_pfn(self, hva: int, write_fault: bool) -> tuple[int, bool, str, str]:
        """hva_to_pfn(): the host page behind ``hva``, faulting it in like GUP does.

        Returns (pfn, map_writable, host fault kind, why): ``why`` is a code
        (gup_fast, write_fault, read_fault_asks_write, read_fault_writable,
        read_fault_readonly) that viz/events.py words.  2.6.32-2.6.37 asked
        get_user_pages for a writable page on every fault, so a guest read of a KSM
        page broke the merge; from 2.6.38 a read fault asks for read access and is
        "mapped writable if possible", i.e. only if the host PTE is already writable.
        """
        mm = self.mm
        prof = self.profile
        vma = mm.find_vma(hva)
        write = write_fault or not prof.kvm_read_fault_maps_readonly
        if vma is None or not vma.flags & (vma.VM_WRITE if write else vma.VM_READ):
            raise kernel_error(errno.EFAULT, f"hva_to_pfn: {hva:#x} is not mapped "
                                             f"{'writable' if write else 'readable'}")
        before = mm.pagetables.get_pte(hva)
        if pte_present(before) and pte_write(before):
            # hva_to_pfn_fast(): get_user_page_fast_only(FOLL_WRITE) succeeds
            return pte_pfn(before), True, _costs.HOST_NONE, "gup_fast"
        # hva_to_pfn_slow(): get_user_pages(), running the host fault if needed
        if not pte_present(before) or (write and not pte_write(before)):
            handle_mm_fault(mm, vma, hva, FAULT_FLAG_WRITE if write else 0)
        after = mm.pagetables.get_pte(hva)
        kind = _host_fault_kind(before, after)
        if write:
            why = "write_fault" if write_fault else "read_fault_asks_write"
            return pte_pfn(after), True, kind, why
        if pte_write(after):
            return pte_pfn(after), True, kind, "read_fault_writable"
        return pte_pfn(after), False, kind, "read_fault_readonly"

    # --- the MMU notifier handlers (virt/kvm/kvm_main.c) ---
    def kvm_mmu_notifier_invalidate_range_start(self, start: int, end: int, event) -> None:
        """Count the invalidation in, record its range, zap and flush before returning:
        the primary may free the pages as soon as it has unmapped them."""
        if self.profile.kvm_generic_hva_walk and not self._slots_in(start, end):
            return          # 5.13+: no memslot in the range, mmu_lock not even taken
        self.mmu_invalidate_in_progress += 1
        lo, hi = (start, end) if self.mmu_invalidate_range is None else \
            (min(start, self.mmu_invalidate_range[0]), max(end, self.mmu_invalidate_range[1]))
        self.mmu_invalidate_range = (lo, hi)
        self._emit("kvm_mmu_notifier_invalidate_range_start", "invalidate_begin", -1, -1,
                   None, {"in_progress": self.mmu_invalidate_in_progress, "start": lo,
                          "end": hi})
        if self._zap_range(start, end, "invalidate_range_start",
                           {"start": start, "end": end, "event": event}):
            self._flush("invalidate_range_start")

    def kvm_mmu_notifier_invalidate_range_end(self, start: int, end: int, event) -> None:
        """Bump the sequence, then count the invalidation out: a fault that snapshotted
        the old sequence must retry.  Nothing is re-established here; refaults are lazy."""
        if self.profile.kvm_generic_hva_walk and not self._slots_in(start, end):
            return
        self.mmu_invalidate_seq += 1
        self.mmu_invalidate_in_progress -= 1
        if self.mmu_invalidate_in_progress < 0:
            raise AssertionError("invalidate_range_end without a start")
        if not self.mmu_invalidate_in_progress:
            self.mmu_invalidate_range = None
        self._emit("kvm_mmu_notifier_invalidate_range_end", "invalidate_end", -1, -1, None,
                   {"seq": self.mmu_invalidate_seq,
                    "in_progress": self.mmu_invalidate_in_progress})

    def kvm_mmu_notifier_change_pte(self, address: int, pte: int) -> None:
        """kvm_mmu_notifier_change_pte() (2.6.32-6.9): the seed's fast path.

        2.6.32-5.12: bump the sequence and kvm_set_spte_hva().  5.13+: no bump, and
        return at once unless an invalidation is in progress ("change_pte must be
        surrounded by invalidate_range_{start,end}").
        """
        if self.profile.kvm_generic_hva_walk:
            if not self.mmu_invalidate_in_progress:
                self._emit("kvm_mmu_notifier_change_pte", "change_pte_skip", -1, pte_pfn(pte),
                           "no_invalidation_in_progress")
                return
        else:
            self.mmu_invalidate_seq += 1
        self.kvm_set_spte_hva(address, pte)

    def kvm_set_spte_hva(self, hva: int, pte: int) -> None:
        """kvm_set_spte_hva() -> kvm_set_pte_rmapp(): for every spte of the gfn, zap it if
        the new host PTE is writable, else point it at the new pfn, write-protected."""
        new_pfn = pte_pfn(pte)
        for slot in self._slots_in(hva, hva + 1):
            gfn = slot.hva_to_gfn(hva)
            sptes = list(slot.rmap.get(gfn, ()))
            if not sptes:
                self._emit("kvm_set_spte_hva", "change_pte_miss", gfn, new_pfn,
                           "zapped_by_range_start" if self.mmu_invalidate_in_progress
                           else "no_spte")
                continue
            for spte in sptes:
                if spte.level == 2:
                    # kvm_tdp_mmu_set_spte_gfn(): only a 4 KiB leaf is changed in place
                    self._zap(spte, "change_pte_huge")
                elif pte_write(pte):
                    self._zap(spte, "change_pte_writable")
                else:
                    old_pfn = spte.pfn
                    spte.pfn = new_pfn
                    spte.writable = spte.host_writable = False
                    self.stats["sptes_remapped"] += 1
                    self._emit("kvm_set_spte_hva", "spte_remap", gfn, new_pfn, "readonly_pte",
                               {"old_pfn": old_pfn})
            self._flush("change_pte")

    def kvm_mmu_notifier_invalidate_page(self, address: int) -> None:
        """kvm_mmu_notifier_invalidate_page() (2.6.27-4.12): bump the sequence, zap."""
        self.mmu_invalidate_seq += 1
        if self._zap_range(address, address + self.page_size, "invalidate_page"):
            self._flush("invalidate_page")

    def kvm_mmu_notifier_release(self) -> None:
        """kvm_mmu_notifier_release() -> kvm_flush_shadow_all(): the mm is going away."""
        for spte in list(self.ept.values()):
            self._zap(spte, "release")
        self._flush("release")
        self.released = True

    def _age(self, start: int, end: int, clear: bool) -> bool:
        """kvm_age_hva / kvm_test_age_hva: the accessed bits of the sptes in the range."""
        young = False
        for slot in self._slots_in(start, end):
            for gfn in slot.gfns_in(start, end):
                for spte in slot.rmap.get(gfn, ()):
                    young = young or spte.accessed
                    if clear:
                        spte.accessed = False
        return young

    def kvm_mmu_notifier_clear_flush_young(self, start: int, end: int) -> bool:
        """Test-and-clear the accessed bits; flush if any was set (reclaim's aging)."""
        young = self._age(start, end, clear=True)
        if young:
            self._flush("clear_flush_young")
        return young

    def kvm_mmu_notifier_clear_young(self, start: int, end: int) -> bool:
        """4.3+: the same without the flush (idle page tracking)."""
        return self._age(start, end, clear=True)

    def kvm_mmu_notifier_test_young(self, address: int) -> bool:
        """2.6.38+: look without clearing (khugepaged)."""
        return self._age(address, address + 1, clear=False)

    def destroy(self) -> None:
        """kvm_destroy_vm(): mmu_notifier_unregister(), which runs ->release if needed."""
        self.mm.notifiers.unregister(self.notifier)
        self.released = True

    # --- invariants (the tests call these after every operation) ---
    def check_invariants(self) -> None:
        """The secondary-MMU rules of the research notes (4.2), as assertions:

        every spte maps the frame the host PTE for its hva maps; no spte is writable
        unless the host PTE is (so a KSM page never is); no spte was established while
        an invalidation was in progress, and none is open between operations; the rmap
        and the table agree; after release nothing is mapped.
        """
        errors = list(self._violations)
        mem = self.machine.memory
        for gfn, spte in self.ept.items():
            slot = self._slot_for_gfn(gfn)
            hva = slot.gfn_to_hva(gfn)
            pte = self.mm.pagetables.get_pte(hva) if self.process.alive else 0
            if not pte_present(pte) or pte_pfn(pte) != spte.pfn_of(gfn):
                errors.append(f"gfn {gfn:#x}: spte -> pfn {spte.pfn_of(gfn):#x}, host PTE at "
                              f"{hva:#x} is {pte_flags_text(pte)} pfn {pte_pfn(pte):#x}")
            if spte.level == 2 and not (self.process.alive and self.mm.pagetables.huge_pmd(hva)):
                errors.append(f"gfn {gfn:#x}: a 2 MiB spte where the host has no huge PMD")
            if spte.writable and not pte_write(pte):
                errors.append(f"gfn {gfn:#x}: writable spte over a read-only host PTE")
            page = mem.pages.get(spte.pfn_of(gfn))
            if spte.writable and page is not None and page.flags & PG_ksm:
                errors.append(f"gfn {gfn:#x}: writable spte on KSM page {spte.pfn:#x}")
            if spte.writable and not spte.host_writable:
                errors.append(f"gfn {gfn:#x}: writable without SPTE_HOST_WRITEABLE")
            if spte not in slot.rmap.get(gfn, ()):
                errors.append(f"gfn {gfn:#x}: spte missing from the rmap")
        for slot in self.memslots:
            for gfn, sptes in slot.rmap.items():
                if any(self.ept.get(gfn) is not s for s in sptes):
                    errors.append(f"gfn {gfn:#x}: rmap holds an spte the table does not")
        if self.mmu_invalidate_in_progress:
            errors.append(f"{self.mmu_invalidate_in_progress} invalidation(s) left open")
        if self.released and self.ept:
            errors.append(f"released, yet {len(self.ept)} sptes remain")
        if errors:
            raise AssertionError(f"VM {self.id}: " + "; ".join(errors))


def _host_fault_kind(before: int, after: int) -> str:
    """What get_user_pages() made the host do, from the PTE before and after."""
    if before == after or (pte_present(before) and pte_pfn(before) == pte_pfn(after)
                           and pte_write(before) == pte_write(after)):
        return _costs.HOST_NONE
    if not pte_present(before):
        return _costs.HOST_ZERO_PAGE if pte_pfn(after) == 0 else _costs.HOST_ANON
    if pte_pfn(before) != pte_pfn(after):
        return _costs.HOST_COW
    return _costs.HOST_MINOR


def __getattr__(name):
    """``ksmbook.kernel.kvm.explain`` moved to ``ksmbook.viz.events.explain`` (the kernel
    writes no text); the old name works for one release."""
    if name == "explain":
        import warnings
        warnings.warn("ksmbook.kernel.kvm.explain moved to ksmbook.viz.events.explain",
                      DeprecationWarning, stacklevel=2)
        from ..viz.events import explain
        return explain
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
