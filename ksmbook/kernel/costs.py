"""Simulated nanoseconds for what a guest memory access can cost: the side channel's clock.

A write to an unmerged, mapped page hits the TLB and costs about a nanosecond; a write
to a KSM-merged page takes EPT-violation exits, a copy-on-write fault in the host, a
retry and a page walk: microseconds.  The VM (kvm.py) adds these numbers up per
access, so the side-channel chapter can plot write latency of merged vs unmerged
pages.  They are parameters of one machine, not laws: change them in a CostModel.

Where each number comes from
----------------------------
Host side, measured with ``benchmarks/cost_probe.c`` (``cc -O2``; medians of
per-event ``clock_gettime(CLOCK_MONOTONIC)`` deltas over 4096 pages, typical value of
five runs) on the machines this book was built on: AMD EPYC, 2 vCPUs, Linux 6.18,
itself a KVM guest, so its page walks are two-dimensional as a guest's are.

* ``timer_ns`` 20: an empty clock_gettime() pair -- what an attacker's timer adds.
* ``tlb_hit_ns`` 1: a store that hits the TLB measured 20 ns *with* the timer, the
  same as the empty pair: the store itself is below the timer's resolution.
* ``page_walk_ns`` 30: a random pointer chase over 256 MiB took 175-210 ns per
  access on 4 KiB pages and 154-166 ns on 2 MiB THP pages; both miss the data caches,
  only the 4 KiB run misses the TLB and walks, so the walk costs the difference.
* ``minor_fault_ns`` 650: a write fault that reuses the page (do_wp_page ->
  wp_page_reuse, the forked child gone): 650-870 ns.  A read fault that maps the zero
  page measured 600-800 ns; the model uses this one number for both.
* ``anon_fault_ns`` 1450: a first-touch write fault (allocate and zero a page):
  1350-1980 ns.
* ``cow_fault_ns`` 1870: a write fault on a page shared with a forked child
  (allocate, copy 4 KiB, replace the PTE, flush): 1730-2870 ns.

Guest side, cited (that machine's /dev/kvm is kvm_pvm, software virtualization
without EPT, so a real EPT-violation exit cannot be timed there):

* ``vmexit_roundtrip_ns`` 500: Michael Roth's timing of KVM's SVM entry on AMD EPYC
  (LKML, Dec 2020, https://lkml.iu.edu/hypermail/linux/kernel/2012.2/00527.html):
  1344-1376 cycles from just before VMRUN to just after the #VMEXIT, ~0.5 us at the
  2.5-3 GHz of those parts.
* ``kvm_fault_ns`` 650: KVM's page-fault handler on an EPT violation (walk the
  memslot, hva_to_pfn's gup walk of the host page tables, take mmu_lock, install the
  spte) is modelled as costing a host minor fault; an estimate, no measurement.

So one exit (``exit_ns``) is ~1.15 us, inside the 1-3 us the research notes give, and
a guest write to a merged page (2 exits + COW + walk + store) ~4.2 us against 1 ns:
the write-timing side channel of CVE-2015-2877.
"""
from __future__ import annotations

from dataclasses import dataclass

# what the host did while KVM resolved a pfn (kvm.py's classification of the fault)
HOST_NONE, HOST_MINOR, HOST_ZERO_PAGE, HOST_ANON, HOST_COW = (
    "none", "minor", "zero_page", "anon", "cow")


@dataclass(frozen=True)
class CostModel:
    """Simulated nanoseconds per event; the defaults are documented in the module."""
    timer_ns: int = 20
    tlb_hit_ns: int = 1
    page_walk_ns: int = 30
    minor_fault_ns: int = 650
    anon_fault_ns: int = 1450
    cow_fault_ns: int = 1870
    vmexit_roundtrip_ns: int = 500
    kvm_fault_ns: int = 650

    @property
    def exit_ns(self) -> int:
        """One EPT-violation exit handled by KVM: the hardware round trip + the handler."""
        return self.vmexit_roundtrip_ns + self.kvm_fault_ns

    def host_fault_ns(self, kind: str) -> int:
        """The host fault that hva_to_pfn's get_user_pages() ran, by kind."""
        return {HOST_NONE: 0, HOST_MINOR: self.minor_fault_ns,
                HOST_ZERO_PAGE: self.minor_fault_ns, HOST_ANON: self.anon_fault_ns,
                HOST_COW: self.cow_fault_ns}[kind]

    def access_ns(self, exits: int, host_faults: tuple = ()) -> int:
        """A guest access: a TLB hit, or exits + their host faults + the walk that
        refills the TLB when the guest re-executes the instruction."""
        ns = self.tlb_hit_ns
        if exits:
            ns += exits * self.exit_ns + self.page_walk_ns
            ns += sum(self.host_fault_ns(k) for k in host_faults)
        return ns


DEFAULT = CostModel()
