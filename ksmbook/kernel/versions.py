"""Kernel-version profiles: every behaviour that differs between releases lives here.

A profile is computed from a version number and a table of feature lifetimes, so
``Machine(kernel="5.4")`` works as well as the named eras.  Code elsewhere never
compares version numbers; it reads a field of the profile.
"""
from __future__ import annotations

import re

from dataclasses import dataclass, fields

#: (introduced, removed) per feature; ``None`` means "still present in 6.18".
#: Each entry cites the commit or release that changed it (see research notes).
FEATURE_LIFETIMES: dict[str, tuple[str, str | None]] = {
    # --- mmu notifiers (include/linux/mmu_notifier.h, mm/mmu_notifier.c) ---
    # 828502d30073 "ksm: add mmu_notifier set_pte_at_notify()" (2.6.32) .. 997308f9ae72 (6.10)
    "change_pte": ("2.6.32", "6.10"),
    # the seed's macro: set_pte_at() then mmu_notifier_change_pte().  Xiao Guangrong's
    # "mm: mmu_notifier: fix inconsistent memory between secondary MMU and host"
    # (linux-mm, 21 Aug 2012, the same -mm cycle as 6bdb913f0a70) swapped the two lines;
    # a 2.6.38-3.6 header still sets first, 3.10-era headers notify first.
    "set_pte_first_then_notify": ("2.6.32", "3.7"),
    # __mmu_notifier_change_pte() fell back to invalidate_page until 6bdb913f0a70
    "change_pte_falls_back_to_invalidate_page": ("2.6.32", "3.7"),
    # 6bdb913f0a70 "mm: wrap calls to set_pte_at_notify with invalidate_range_start and
    # invalidate_range_end" is dated 2012-10-09, after v3.6 shipped (2012-09-30): it is
    # in the 3.7 merge window, so 3.7 is the first release with the bracket.
    "bracket_set_pte_at_notify": ("3.7", None),
    # "mm/mmu_notifier: kill invalidate_page" (4.13)
    "invalidate_page": ("2.6.27", "4.13"),
    # 2.6.32 write_protect_page() restored a pinned page's PTE with set_pte_at_notify();
    # Robin Holt's "ksm: remove unneeded set_pte_at_notify" (Mar 2010, acked by Izik
    # Eidus, Andrea Arcangeli, Hugh Dickins) made it set_pte_at(); after 2.6.34-rc1
    "ksm_wp_restore_notifies": ("2.6.32", "2.6.35"),
    # Joerg Roedel's invalidate_range (3.19), renamed arch_invalidate_secondary_tlbs (6.6)
    "invalidate_range": ("3.19", "6.6"),
    "arch_invalidate_secondary_tlbs": ("6.6", None),
    "clear_young": ("4.3", None),
    "test_young": ("2.6.38", None),
    # --- KVM ---
    # 2.6.32's gfn_to_pfn() called get_user_pages_fast(addr, 1, /*write*/1, page): every
    # KVM fault asked for a writable page.  Marcelo Tosatti's "KVM: propagate fault r/w
    # information to gup(), allow read-only memory" came after async page faults (Gleb
    # Natapov's v6, Oct 2010, still passes write=1), which shipped in 2.6.38.
    "kvm_read_fault_maps_readonly": ("2.6.38", None),
    # Sean Christopherson's MMU-notifier rework (5.13, "KVM: Move x86's MMU notifier
    # memslot walkers to generic code" and its series): start()/end() touch the
    # in-progress count and the sequence only for ranges that hit a memslot, and
    # change_pte stops bumping the sequence (c13fda237f08) and returns early unless an
    # invalidation is in progress.
    "kvm_generic_hva_walk": ("5.13", None),
    # --- KSM core (mm/ksm.c) ---
    "ksm_merge_across_nodes": ("3.9", None),
    "ksm_use_zero_pages": ("4.11", None),
    "ksm_stable_node_chains": ("4.13", None),
    "ksm_xxhash_checksum": ("5.0", None),          # jhash2 before
    "ksm_merging_pages_file": ("5.19", None),
    "ksm_stat_file": ("6.1", None),
    "ksm_break_with_unshare": ("6.2", None),        # FAULT_FLAG_UNSHARE in break_ksm
    "prctl_memory_merge": ("6.4", None),
    "ksm_general_profit": ("6.4", None),
    "ksm_zero_pages_counter": ("6.6", None),        # global + per-mm, unshare zero pages
    "ksm_pages_scanned": ("6.6", None),
    "ksm_smart_scan": ("6.7", None),
    "prctl_inherited_by_exec": ("6.7", None),
    "ksm_advisor": ("6.8", None),
    # d58a361b0350: checksum before stable_tree_search (6.11)
    "ksm_checksum_before_stable_search": ("6.11", None),
    "ksm_stat_merge_flags": ("6.12", None),          # ksm_merge_any:/ksm_mergeable: lines
    # "ksm: fix exec/fork inheritance" + fork counter reset (late 2025, in 6.18)
    "ksm_fork_resets_counters": ("6.18", None),
    # same series: the scanner stops clearing MMF_VM_MERGE_ANY when it drops an mm, and
    # ksm_vma_flags() re-enters a MERGE_ANY mm that lost its slot
    "ksm_scanner_keeps_merge_any": ("6.18", None),
    # 2.6.32 only: max_kernel_pages sysfs file (removed in 2.6.33)
    "ksm_max_kernel_pages": ("2.6.32", "2.6.33"),
    # KSM pages reused by do_wp_page when mapped once (reuse_ksm_page): 5.1..5.9
    "reuse_ksm_page": ("5.1", "5.9"),
    # --- transparent huge pages (mm/huge_memory.c; kernel/huge_memory.py) ---
    # Andrea Arcangeli's anonymous THP series, 2.6.38
    "thp": ("2.6.38", None),
    # Kirill Shutemov's "thp: implement huge zero page" series (3.8): a read fault maps
    # the huge zero folio; before it a read fault allocated a THP
    "huge_zero_page": ("3.8", None),
    # 3917c80280c9 "thp: change CoW semantics for anon-THP" (5.8): a write to a shared
    # THP splits the PMD and copies 4 KiB; before it the whole 2 MiB was copied
    "thp_cow_splits_pmd": ("5.8", None),
    # Dev Jain's "mm: Allocate THP on hugezeropage wp-fault" (6.14): a write to the huge
    # zero PMD allocates a THP (do_huge_zero_wp_pmd); 5.8-6.13 split the zero PMD
    "thp_wp_huge_zero_allocates": ("6.14", None),
    # b1f202060afe "mm: remap unused subpages to shared zeropage when splitting isolated
    # thp" (6.12): split_huge_page() maps all-zero subpages to the zero page, frees them
    "thp_split_remaps_zero_subpages": ("6.12", None),
    # efa7df3e3bb5 "mm: align larger anonymous mappings on THP boundaries" (6.7)
    "thp_anon_mmap_align": ("6.7", None),
    # d4148aeab412 "mm, mmap: limit THP alignment of anonymous mappings to PMD-aligned
    # sizes" (6.12): only lengths that are multiples of 2 MiB
    "thp_anon_mmap_align_pmd_multiple": ("6.12", None),
    # David Hildenbrand's "mm: COW reuse support for PTE-mapped THP" (MM_ID series, 6.15)
    "cow_reuse_pte_mapped_thp": ("6.15", None),
    # Qi Zheng's "mm: pgtable: reclaim empty PTE page in madvise(MADV_DONTNEED)" (6.14,
    # CONFIG_PT_RECLAIM=y on x86 as on this host)
    "pt_reclaim": ("6.14", None),
}

KNOWN_ERAS = ("2.6.32", "2.6.37", "2.6.38", "3.6", "3.7", "3.8", "3.9", "4.11", "4.13",
              "4.15", "5.0", "5.4", "5.8", "5.19", "6.1", "6.4", "6.6", "6.7", "6.8", "6.10",
              "6.11", "6.12", "6.14", "6.15", "6.18")
OLDEST, NEWEST = "2.6.32", "6.18"


#: The last minor release of each major series (2.6 counts as the series 2.6.x):
#: Linux went 2.6.39 -> 3.0, 3.19 -> 4.0, 4.20 -> 5.0, 5.19 -> 6.0.
_LAST_MINOR = {2: None, 3: 19, 4: 20, 5: 19, 6: 18}
_VERSION = re.compile(r"[0-9]+(\.[0-9]+){1,3}")


def parse_version(text: str) -> tuple[int, ...]:
    """'6.10' -> (6, 10); raises ValueError on anything that is not a kernel version
    (digits and dots only: no sign, no spaces inside, no '6.-1')."""
    t = str(text).strip()
    if not _VERSION.fullmatch(t):
        raise ValueError(f"not a kernel version: {text!r}")
    return tuple(int(p) for p in t.split("."))


def is_released(v: tuple[int, ...]) -> bool:
    """Is ``v`` a Linux release between 2.6.32 and 6.18 (a stable number may follow)?"""
    major = v[0]
    if major == 2:
        return len(v) >= 3 and v[1] == 6 and 32 <= v[2] <= 39
    last = _LAST_MINOR.get(major)
    return last is not None and len(v) <= 3 and v[1] <= last


def check_kernel_argument(version) -> str:
    """The ``kernel=`` argument of Machine, checked: a string naming a released version
    in the modelled range.  TypeError for other types (6.1 the float would be 6.10's
    twin), ValueError otherwise, listing the eras."""
    if not isinstance(version, str):
        raise TypeError(f"kernel must be a string such as '6.18' or '2.6.32', not "
                        f"{type(version).__name__} {version!r}")
    v = parse_version(version)
    release = v[:3] if v[0] == 2 else v[:2]        # a stable number (6.18.44) is that release
    if not parse_version(OLDEST) <= release <= parse_version(NEWEST) or not is_released(v):
        raise ValueError(f"kernel {version!r} is not a Linux release in the modelled range "
                         f"{OLDEST}..{NEWEST}; the eras whose behaviour differs: "
                         f"{', '.join(KNOWN_ERAS)}")
    return version.strip()


@dataclass(frozen=True)
class KernelProfile:
    """Every behaviour difference between the kernel versions ksmbook models."""
    version: str
    change_pte: bool
    set_pte_first_then_notify: bool
    change_pte_falls_back_to_invalidate_page: bool
    bracket_set_pte_at_notify: bool
    invalidate_page: bool
    ksm_wp_restore_notifies: bool
    invalidate_range: bool
    arch_invalidate_secondary_tlbs: bool
    clear_young: bool
    test_young: bool
    kvm_read_fault_maps_readonly: bool
    kvm_generic_hva_walk: bool
    ksm_merge_across_nodes: bool
    ksm_use_zero_pages: bool
    ksm_stable_node_chains: bool
    ksm_xxhash_checksum: bool
    ksm_merging_pages_file: bool
    ksm_stat_file: bool
    ksm_break_with_unshare: bool
    prctl_memory_merge: bool
    ksm_general_profit: bool
    ksm_zero_pages_counter: bool
    ksm_pages_scanned: bool
    ksm_smart_scan: bool
    prctl_inherited_by_exec: bool
    ksm_advisor: bool
    ksm_checksum_before_stable_search: bool
    ksm_stat_merge_flags: bool
    ksm_fork_resets_counters: bool
    ksm_scanner_keeps_merge_any: bool
    ksm_max_kernel_pages: bool
    reuse_ksm_page: bool
    thp: bool
    huge_zero_page: bool
    thp_cow_splits_pmd: bool
    thp_wp_huge_zero_allocates: bool
    thp_split_remaps_zero_subpages: bool
    thp_anon_mmap_align: bool
    thp_anon_mmap_align_pmd_multiple: bool
    cow_reuse_pte_mapped_thp: bool
    pt_reclaim: bool

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return parse_version(self.version)

    @property
    def era(self) -> str:
        """The notifier era the book talks about: 'seed', 'bracketed' or 'no change_pte'."""
        if not self.change_pte:
            return "6.10+: change_pte removed"
        if self.bracket_set_pte_at_notify:
            return "3.7-6.9: change_pte bracketed by invalidate_range_start/end"
        return "2.6.32-3.6: change_pte unbracketed (the seed)"


def profile(version: str = NEWEST) -> KernelProfile:
    """The profile of ``version`` ("2.6.32" .. "6.18", a released version, as a string);
    TypeError or ValueError otherwise."""
    version = check_kernel_argument(version)
    v = parse_version(version)
    values = {}
    for f in fields(KernelProfile):
        if f.name == "version":
            continue
        start, end = FEATURE_LIFETIMES[f.name]
        values[f.name] = parse_version(start) <= v and (end is None or v < parse_version(end))
    return KernelProfile(version=str(version), **values)
