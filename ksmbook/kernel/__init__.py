"""The simulated kernel: the part of Linux the book is about, and nothing else.

DOC: Overview.  A :class:`Machine` is one computer running one modelled kernel
version (``Machine(kernel="2.6.32")`` ... ``"6.18"``): physical memory as frames
with refcount, mapcount and page flags (memory.py), x86-64 four-level page
tables with hardware-layout PTEs (pagetable.py), processes and their VMAs with
mmap/munmap/mprotect/madvise/fork/exit (mm.py), the fault handler that decides
between the zero page, a new anonymous page, reuse and copy-on-write
(fault.py, after mm/memory.c), the per-CPU LRU batches whose references keep a
fresh page from merging (swap.py, after mm/swap.c), KSM and ksmd (ksm/, after
mm/ksm.c), the MMU notifier chain (mmu_notifier.py, after mm/mmu_notifier.c)
and KVM's secondary MMU that listens to it (kvm.py, after virt/kvm/ and
arch/x86/kvm/mmu/), and /sys/kernel/mm/ksm and /proc (sysfs.py).

What differs between kernel versions is looked up in one profile
(versions.py), never tested by version number at the call site.  Everything is
deterministic: the same calls give the same pfns, events and counters.  The
kernel reports what it does as typed events (events.py) and keeps counters as
Linux does; it imports no UI library and writes no prose for a reader:
``ksmbook.viz`` turns its state and events into figures and text.
"""
from .errors import SegmentationFault
from .machine import Machine

__all__ = ["Machine", "SegmentationFault"]
