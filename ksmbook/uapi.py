"""The user-space ABI the simulator and the real kernel share: one home for its names.

Everything a program outside the kernel sees of KSM is spelled here once:
the sysfs directory ``/sys/kernel/mm/ksm`` (mm/ksm.c ``ksm_attr_group``, named
"ksm" under ``mm_kobj``), the madvise/mprotect/prctl numbers of
include/uapi/asm-generic/mman-common.h and include/uapi/linux/prctl.h (6.18),
the global counters and tunables of that directory with their 6.18 boot
defaults, and the fields of ``/proc/<pid>/ksm_stat`` (fs/proc/base.c
proc_pid_ksm_stat()).  The simulated kernel (kernel/), the scenario runners
(oracle/), the labs, viz and widgets all import these names, so a knob renamed
or a constant corrected here changes every one of them.

Nothing here imports anything: this module is the bottom of the dependency
graph and is safe to import from C-like test harnesses and notebooks alike.
"""
from __future__ import annotations

__all__ = [
    "KSM_SYSFS", "PROT_NONE", "PROT_READ", "PROT_WRITE", "PROT_EXEC", "MAP_SHARED",
    "MAP_PRIVATE", "MADV_DONTNEED", "MADV_MERGEABLE", "MADV_UNMERGEABLE", "MADV_HUGEPAGE",
    "MADV_NOHUGEPAGE",
    "PR_SET_MEMORY_MERGE", "PR_GET_MEMORY_MERGE", "MADV_BY_NAME", "PROT_BY_NAME",
    "KSM_COUNTERS", "NEVER_RESET_COUNTERS", "KSM_STAT_FIELDS", "KSM_TUNABLES",
    "TUNABLE_DEFAULTS",
]

#: mm/ksm.c registers its attributes as the "ksm" group of mm_kobj.
KSM_SYSFS = "/sys/kernel/mm/ksm"

# include/uapi/asm-generic/mman-common.h
PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0, 1, 2, 4
PROT_SEM = 0x8                  # asm-generic/mman-common.h
MAP_SHARED, MAP_PRIVATE = 0x01, 0x02
MADV_DONTNEED = 4
MADV_MERGEABLE = 12
MADV_UNMERGEABLE = 13
MADV_HUGEPAGE = 14          # hugepage_madvise(): VM_HUGEPAGE
MADV_NOHUGEPAGE = 15
# include/uapi/linux/prctl.h (6.4+)
PR_SET_MEMORY_MERGE = 67
PR_GET_MEMORY_MERGE = 68

#: The advice names a scenario step may use, with their numbers.
MADV_BY_NAME = {"MADV_MERGEABLE": MADV_MERGEABLE, "MADV_UNMERGEABLE": MADV_UNMERGEABLE,
                "MADV_DONTNEED": MADV_DONTNEED}
#: The short protections a scenario step may use ("rw" = PROT_READ|PROT_WRITE).
PROT_BY_NAME = {"none": PROT_NONE, "r": PROT_READ, "rw": PROT_READ | PROT_WRITE}

#: Every global counter of /sys/kernel/mm/ksm (6.18), in the order ``ls`` lists them
#: as the oracle records them.
KSM_COUNTERS = (
    "full_scans", "pages_scanned", "pages_shared", "pages_sharing",
    "pages_unshared", "pages_volatile", "pages_skipped", "stable_node_chains",
    "stable_node_dups", "ksm_zero_pages", "general_profit",
)
#: Counters the kernel never resets, not even on run=2 (ksm_pages_scanned,
#: ksm_pages_skipped are only ever incremented in ksm_do_scan()/scan_get_next_rmap_item()).
NEVER_RESET_COUNTERS = ("pages_scanned", "pages_skipped")

#: Fields of /proc/<pid>/ksm_stat on 6.12+ (6.18 prints all of them), plus the
#: separate file /proc/<pid>/ksm_merging_pages stored as ``merging_pages_file``.
KSM_STAT_FIELDS = (
    "ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages",
    "ksm_process_profit", "ksm_merge_any", "ksm_mergeable",
)

#: The writable tunables besides ``run``, with their 6.18 boot defaults
#: (mm/ksm.c: ksm_thread_pages_to_scan = 100, ksm_thread_sleep_millisecs = 20,
#: ksm_merge_across_nodes = 1, ksm_use_zero_pages = false, ksm_max_page_sharing = 256,
#: ksm_stable_node_chains_prune_millisecs = 2000, ksm_smart_scan = true, and the
#: advisor's ADVISOR_NONE, 70 %, 500, 30000 pages, 200 ms).
TUNABLE_DEFAULTS = {
    "pages_to_scan": "100",
    "sleep_millisecs": "20",
    "merge_across_nodes": "1",
    "use_zero_pages": "0",
    "max_page_sharing": "256",
    "stable_node_chains_prune_millisecs": "2000",
    "smart_scan": "1",
    "advisor_mode": "none",
    "advisor_max_cpu": "70",
    "advisor_min_pages_to_scan": "500",
    "advisor_max_pages_to_scan": "30000",
    "advisor_target_scan_time": "200",
}
#: Their names, in that order.
KSM_TUNABLES = tuple(TUNABLE_DEFAULTS)
