"""Built-in scenarios (registered in :data:`ksmbook.oracle.scenario.SCENARIOS`).

Each one is small enough to read in one breath and checks one fact that the
book relies on; ``tests/data/kernel_traces/<name>.json`` holds what Linux 6.18
did with it.
"""
from __future__ import annotations

from .scenario import (SCENARIOS, Scenario, batch, dontneed, exit, fill, fork, hugepage, knob,
                       madvise, mmap, munmap, sleep, thp_stat,
                       mprotect, poke, prctl_merge, register, run, scans, spawn,
                       touch_read, unique)

__all__ = ["SCENARIOS", "two_identical_pages", "ten_identical_pages",
           "max_page_sharing_two", "zero_pages_to_zero_page", "cow_after_merge",
           "fork_after_merge", "fork_one_page", "exit_two_processes",
           "zero_page_lifecycle", "smart_scan_unique", "prctl_regions",
           "unmerge_and_dontneed", "knobs_while_shared", "prot_none_and_read_faults",
           "selftest_pages_count", "late_joiners", "max_page_sharing_2_of_10",
           "max_page_sharing_3_of_10", "max_page_sharing_4_of_40",
           "max_page_sharing_5_of_23", "max_page_sharing_256_of_40",
           "max_page_sharing_chain_collapse", "zero_and_read_faulted_pages",
           "volatile_rewrites", "volatile_rewrites_no_smart_scan", "smart_scan_off",
           "smart_scan_after_cow", "run2_unmerges_everything", "ksm_tests_merge",
           "ksm_tests_merge_prctl", "ksm_tests_unmerge", "ksm_tests_zero_pages_0",
           "ksm_tests_zero_pages_1", "ksm_tests_cow_pairs", "ksm_tests_merge_time",
           "ksm_functional_unmerge", "ksm_functional_unmerge_zero_pages",
           "ksm_functional_unmerge_discarded", "ksm_functional_prot_none",
           "ksm_functional_prctl", "ksm_functional_prctl_fork",
           "ksm_functional_prctl_unmerge", "ksm_functional_fork_merging_page_count",
           "ksm_functional_fork_global_zero_pages_count", "random_scenario",
           "random_scenario_with_knobs", "RANDOM_KNOB_PRESETS", "THP_SCENARIOS",
           "random_thp_scenario"]

M = "MADV_MERGEABLE"


def _identical_pages(name: str, description: str, pages: int, byte: int,
                     setup=(), n_scans: int = 3) -> Scenario:
    """One process, one region of ``pages`` pages all set to ``byte``, made
    mergeable, then scanned one full scan at a time (so the trace shows the
    first-visit checksum rule: nothing merges before the second scan)."""
    steps = [*setup,
             spawn("p"),
             mmap("p", "buf", pages),
             fill("p", "buf", 0, pages, byte),
             madvise("p", "buf", 0, pages, "MADV_MERGEABLE")]
    steps += [scans(1)] * n_scans
    return Scenario(name, description, steps)


two_identical_pages = register(_identical_pages(
    "two_identical_pages",
    "Two pages of 0x2a in one process: they merge in the second full scan "
    "into one KSM page (pages_shared=1, pages_sharing=1).",
    pages=2, byte=0x2A))

ten_identical_pages = register(_identical_pages(
    "ten_identical_pages",
    "ksm_tests -M -p 10: ten pages of '*' merge into one KSM page "
    "(pages_shared=1, pages_sharing=9).",
    pages=10, byte=ord("*")))

max_page_sharing_two = register(_identical_pages(
    "max_page_sharing_two",
    "Five identical pages with max_page_sharing=2: two KSM copies of the same "
    "content in a stable-node chain (shared=2, sharing=2, one page left "
    "unshared, chains=1, dups=2).",
    pages=5, byte=0x5A, setup=[knob("max_page_sharing", 2)]))

zero_pages_to_zero_page = register(_identical_pages(
    "zero_pages_to_zero_page",
    "ksm_tests -Z -z 1: with use_zero_pages=1, ten zero-filled pages are "
    "replaced by the shared zero page: ksm_zero_pages=10, no KSM page "
    "(pages_shared=0, pages_sharing=0).",
    pages=10, byte=0, setup=[knob("use_zero_pages", 1)]))


# ---------------------------------------------------------------------------
# Behaviour probes: each pins one rule of mm/ksm.c that a simulator easily
# gets wrong (research/ksm-kernel.md section 7); all were checked on 6.18.
# ---------------------------------------------------------------------------

cow_after_merge = register(Scenario(
    "cow_after_merge",
    "Four merged pages; a write to page 2 (COW) changes no counter until ksmd "
    "next visits it (sharing 3->2, then volatile, then unshared).  Rewriting "
    "page 3 with its own byte COWs it too, but its kept pre-merge checksum "
    "still matches, so it re-merges in that same visit.  Meanwhile page 2 "
    "hits the smart-scan skip (pages_skipped 1).",
    [spawn("a"), mmap("a", "r", 4), fill("a", "r", 0, 4, 9), madvise("a", "r", 0, 4, M),
     scans(2), poke("a", "r", 2, 0, 1), scans(1), scans(1), poke("a", "r", 3, 0, 9),
     scans(1), scans(1)]))

fork_after_merge = register(Scenario(
    "fork_after_merge",
    "Fork after four pages merged: the child starts with ksm_rmap_items 0 and "
    "ksm_merging_pages 0; its first scan appends its four mappings to the "
    "same KSM page (sharing 3->7).  A write in the child is seen one scan later.",
    [spawn("a"), mmap("a", "r", 4), fill("a", "r", 0, 4, 9), madvise("a", "r", 0, 4, M),
     scans(2), fork("a", "b"), scans(1), scans(1), poke("b", "r", 0, 0, 1), scans(1),
     scans(1)]))

fork_one_page = register(Scenario(
    "fork_one_page",
    "One page, forked before any scan: parent and child map the same physical "
    "page, so the unstable-tree search meets itself (page == tree_page) and "
    "never merges: one item unshared, one volatile; the smart-scan skip at the "
    "5th scan takes both out (pages_skipped 2).",
    [spawn("a"), mmap("a", "r", 1), fill("a", "r", 0, 1, 9), madvise("a", "r", 0, 1, M),
     fork("a", "b"), *[scans(1)] * 6]))

exit_two_processes = register(Scenario(
    "exit_two_processes",
    "Two processes with three identical pages each merge into one KSM page "
    "(sharing 5).  After one exits the counters lag until the next scan; after "
    "both exit the next scan empties everything, and with no mm left ksmd "
    "cannot scan at all (full_scans stays 4).",
    [spawn("a"), spawn("b"), mmap("a", "r", 3), mmap("b", "r", 3), fill("a", "r", 0, 3, 7),
     fill("b", "r", 0, 3, 7), madvise("a", "r", 0, 3, M), madvise("b", "r", 0, 3, M),
     scans(2), exit("a"), scans(1), exit("b"), scans(1), scans(1)]))

zero_page_lifecycle = register(Scenario(
    "zero_page_lifecycle",
    "use_zero_pages=1: four zero pages become KSM zero pages in scan 2 (items "
    "volatile), their items vanish in scan 3.  ksm_zero_pages then changes at "
    "once, with no scan: a write (-1), fork (+3 for the child, global too), "
    "MADV_UNMERGEABLE (-1), MADV_DONTNEED (-1), exit (-3), run=2 (-1).",
    [knob("use_zero_pages", 1), spawn("a"), mmap("a", "r", 4), fill("a", "r", 0, 4, 0),
     madvise("a", "r", 0, 4, M), scans(1), scans(1), scans(1), poke("a", "r", 0, 0, 0),
     fork("a", "b"), madvise("a", "r", 1, 1, "MADV_UNMERGEABLE"),
     madvise("a", "r", 2, 1, "MADV_DONTNEED"), exit("b"), scans(1), run(2)]))

smart_scan_unique = register(Scenario(
    "smart_scan_unique",
    "Sixteen distinct pages never merge: smart scan visits each in scans "
    "1-4, skips scan 5, visits 6, skips 7-8, visits 9, skips 10-13 "
    "(unshared <-> volatile as they leave the unstable tree).",
    [spawn("a"), mmap("a", "r", 16), unique("a", "r", 0, 16, 1), madvise("a", "r", 0, 16, M),
     *[scans(1)] * 14]))

prctl_regions = register(Scenario(
    "prctl_regions",
    "PR_SET_MEMORY_MERGE 1 before mapping: new private regions are mergeable "
    "at creation, MAP_SHARED ones never.  PR_SET_MEMORY_MERGE 0 unmerges and "
    "the next scan drops every item.",
    [spawn("a"), prctl_merge("a", 1), mmap("a", "r", 8), fill("a", "r", 0, 8, 3),
     mmap("a", "s", 4, shared=True), fill("a", "s", 0, 4, 3), scans(1), scans(1),
     prctl_merge("a", 0), scans(1)]))

unmerge_and_dontneed = register(Scenario(
    "unmerge_and_dontneed",
    "Six merged pages; MADV_UNMERGEABLE two and MADV_DONTNEED two: counters "
    "lag until the next scan.  max_page_sharing cannot change while pages are "
    "shared (EBUSY) but can after run=2, which keeps the mm registered.",
    [spawn("a"), mmap("a", "r", 6), fill("a", "r", 0, 6, 5), madvise("a", "r", 0, 6, M),
     scans(2), madvise("a", "r", 0, 2, "MADV_UNMERGEABLE"), madvise("a", "r", 2, 2, "MADV_DONTNEED"),
     scans(1), knob("max_page_sharing", 3), run(2), knob("max_page_sharing", 3), scans(2)]))

knobs_while_shared = register(Scenario(
    "knobs_while_shared",
    "Every tunable written while KSM pages exist.  merge_across_nodes_store() and "
    "max_page_sharing_store() refuse a change with EBUSY while ksm_pages_shared is "
    "not 0 (writing the value they hold is fine); the other stores never look at "
    "the trees.  After run=2 unmerged everything both changes are taken, and once "
    "pages merge again the old values are refused in their turn.",
    [spawn("a"), mmap("a", "r", 8), fill("a", "r", 0, 8, 7), madvise("a", "r", 0, 8, M),
     scans(2),
     knob("merge_across_nodes", 1), knob("merge_across_nodes", 0),
     knob("max_page_sharing", 256), knob("max_page_sharing", 4),
     knob("use_zero_pages", 1), knob("smart_scan", 0),
     knob("stable_node_chains_prune_millisecs", 1000), knob("advisor_max_cpu", 50),
     knob("advisor_min_pages_to_scan", 400), knob("advisor_max_pages_to_scan", 20000),
     knob("advisor_target_scan_time", 100), knob("pages_to_scan", 200),
     knob("sleep_millisecs", 30),
     run(2), knob("merge_across_nodes", 0), knob("max_page_sharing", 4), scans(2),
     knob("merge_across_nodes", 1), knob("max_page_sharing", 256)]))

prot_none_and_read_faults = register(Scenario(
    "prot_none_and_read_faults",
    "Read-faulted pages map the shared zero page and are never scanned; "
    "PROT_NONE pages are scanned and merged like any others.",
    [spawn("a"), mmap("a", "r", 4), touch_read("a", "r", 0, 4), mmap("a", "q", 4),
     fill("a", "q", 0, 4, 1), mprotect("a", "q", 0, 4, "none"), madvise("a", "r", 0, 4, M),
     madvise("a", "q", 0, 4, M), scans(2), mprotect("a", "q", 0, 2, "r"), scans(1)]))


# ---------------------------------------------------------------------------
# The selftest formula, and scenarios that pin the rules issue 3 lists
# ---------------------------------------------------------------------------

def selftest_pages_count(pages: int, max_page_sharing: int = 256) -> tuple[int, int]:
    """(pages_shared, pages_sharing) that ``assert_ksm_pages_count(pages)`` of
    tools/testing/selftests/mm/ksm_tests.c accepts for ``pages`` identical
    pages: with a remainder of 0 or 1 modulo max_page_sharing every dup is
    full (a lone leftover page stays unshared); otherwise one more, partial,
    dup holds the rest."""
    m = max_page_sharing
    if pages % m in (0, 1):
        shared = pages // m
        return shared, shared * (m - 1)
    shared = pages // m + 1
    return shared, pages - shared


def _merge_range(proc: str, region: str, pages: int, byte: int, prot: str = "rw",
                 mode: str = "madvise") -> list:
    """``__mmap_and_merge_range`` of ksm_functional_tests.c (and the setup of
    ksm_tests.c): run=2 "to stabilize accounting", mmap, memset, mprotect,
    opt in (``mode``: "madvise", "prctl" or "none" = prctl already set), then
    two full scans, after which "any possible merging happened"."""
    steps = [run(2), mmap(proc, region, pages), fill(proc, region, 0, pages, byte)]
    if prot != "rw":
        steps.append(mprotect(proc, region, 0, pages, prot))
    if mode == "madvise":
        steps.append(madvise(proc, region, 0, pages, M))
    elif mode == "prctl":
        steps.append(prctl_merge(proc, 1))
    steps.append(scans(2))
    return steps


late_joiners = register(Scenario(
    "late_joiners",
    "A process that opts in late still needs two visits of its own.  Three "
    "processes hold four pages of 0x33 each; a opts in first, b after a's "
    "first scan (before a merged), c after a and b merged.  A new mm goes in "
    "behind the scan cursor and its pages start with oldchecksum 0, so b "
    "merges one scan after a, and c's pages, identical to an existing KSM "
    "page, are only volatile on their first visit (6.11+: the checksum test "
    "comes before the stable-tree search) and join the KSM page on the second.",
    [spawn("a"), spawn("b"), spawn("c"),
     *[s for p in "abc" for s in (mmap(p, "r", 4), fill(p, "r", 0, 4, 0x33))],
     madvise("a", "r", 0, 4, M), scans(1), madvise("b", "r", 0, 4, M), scans(1), scans(1),
     madvise("c", "r", 0, 4, M), scans(1), scans(1), scans(1)]))


def _max_page_sharing(limit: int, pages: int, n_scans: int = 4) -> Scenario:
    shared, sharing = selftest_pages_count(pages, limit)
    return _identical_pages(
        f"max_page_sharing_{limit}_of_{pages}",
        f"{pages} identical pages with max_page_sharing={limit} "
        f"({pages} % {limit} = {pages % limit}).  A full stable node is not "
        "returned by the stable-tree search, so the next page pairs up in the "
        "unstable tree and becomes a new dup of the same content (a chain once "
        "there are two).  The selftest formula (assert_ksm_pages_count) gives "
        f"pages_shared={shared}, pages_sharing={sharing}"
        + (", and the lone leftover page stays unshared." if pages % limit == 1 else "."),
        pages=pages, byte=0x5A, setup=[knob("max_page_sharing", limit)], n_scans=n_scans)


max_page_sharing_2_of_10 = register(_max_page_sharing(2, 10))
max_page_sharing_3_of_10 = register(_max_page_sharing(3, 10, n_scans=6))
max_page_sharing_4_of_40 = register(_max_page_sharing(4, 40))
max_page_sharing_5_of_23 = register(_max_page_sharing(5, 23))
max_page_sharing_256_of_40 = register(_max_page_sharing(256, 40, n_scans=3))

max_page_sharing_chain_collapse = register(Scenario(
    "max_page_sharing_chain_collapse",
    "A chain shrinks back to a plain stable node only when a search walks it.  "
    "Six identical pages with max_page_sharing=2 form a chain of three full "
    "dups; unmerging four of them empties two dups, which go at the next scan "
    "(dups 3->1), but the chain stays: the two pages still merged are KSM "
    "pages already in their node, and cmp_and_merge_page returns for them "
    "before any stable-tree search.  A page of other content, made mergeable "
    "later, searches the stable tree on its second visit; the walk passes the "
    "chain (the root), prunes it (stable_node_chains_prune_millisecs=0: at "
    "every walk) and, one dup being left, the dup replaces the chain "
    "(chains 1->0, dups 1->0).",
    [knob("max_page_sharing", 2), knob("stable_node_chains_prune_millisecs", 0), spawn("a"),
     mmap("a", "r", 6), fill("a", "r", 0, 6, 0x61), mmap("a", "s", 1), fill("a", "s", 0, 1, 0x62),
     madvise("a", "r", 0, 6, M), scans(2), madvise("a", "r", 2, 4, "MADV_UNMERGEABLE"),
     scans(1), scans(1), madvise("a", "s", 0, 1, M), scans(1), scans(1)]))

zero_and_read_faulted_pages = register(Scenario(
    "zero_and_read_faulted_pages",
    "Zero-filled pages under both use_zero_pages settings, beside read-faulted "
    "pages.  With use_zero_pages=0 four written zero pages merge into an "
    "ordinary KSM page of zeros (shared 1, sharing 3); four read-faulted pages "
    "map the shared zero page, get no rmap_item and are never scanned.  After "
    "use_zero_pages=1 new zero pages go to the zero page instead "
    "(ksm_zero_pages, not shared/sharing), while the existing KSM page of "
    "zeros stays a KSM page.  A zero byte written into a read-faulted page "
    "makes a real page of zeros that then goes to the zero page too.",
    [spawn("a"), mmap("a", "r", 8), fill("a", "r", 0, 4, 0), touch_read("a", "r", 4, 4),
     madvise("a", "r", 0, 8, M), scans(1), scans(1), knob("use_zero_pages", 1),
     mmap("a", "q", 4), fill("a", "q", 0, 4, 0), madvise("a", "q", 0, 4, M), scans(1), scans(1),
     poke("a", "r", 4, 0, 0), scans(1), scans(1), scans(1)]))


def _volatile_rewrites(name: str, smart: int) -> Scenario:
    steps = [knob("smart_scan", smart), spawn("a"), mmap("a", "r", 5),
             fill("a", "r", 0, 2, 0x44), fill("a", "r", 2, 3, 0x45), madvise("a", "r", 0, 5, M)]
    for i in range(1, 13):
        # pages 2 and 3 get a never-seen byte before every scan; page 4 is
        # rewritten with the byte it already holds (no change of checksum)
        steps += [poke("a", "r", 2, 100, i), poke("a", "r", 3, 7, 0x80 + i),
                  poke("a", "r", 4, 0, 0x45), scans(1)]
    return Scenario(name, steps=steps, description=(
        f"Volatile pages, smart_scan={smart}.  Two pages rewritten with new content "
        "before every one of 12 scans never pass the checksum test (the checksum "
        "is compared with the previous visit's), so they never leave "
        "pages_volatile; a page rewritten with the bytes it already holds is "
        "stable and goes to the unstable tree; two identical pages merge."
        + (" Smart scan ages and skips the two volatile pages and the lone "
           "stable one (pages_skipped grows), and a skipped item is volatile "
           "too, so the rewritten pages still never leave volatile."
           if smart else " With smart_scan=0 nothing is ever skipped.")))


volatile_rewrites = register(_volatile_rewrites("volatile_rewrites", 1))
volatile_rewrites_no_smart_scan = register(_volatile_rewrites("volatile_rewrites_no_smart_scan", 0))

smart_scan_off = register(Scenario(
    "smart_scan_off",
    "smart_scan=0: sixteen distinct pages are visited in every one of 12 scans "
    "(pages_skipped stays 0 and all 16 stay unshared), unlike smart_scan_unique.",
    [knob("smart_scan", 0), spawn("a"), mmap("a", "r", 16), unique("a", "r", 0, 16, 1),
     madvise("a", "r", 0, 16, M), *[scans(1)] * 12]))

smart_scan_after_cow = register(Scenario(
    "smart_scan_after_cow",
    "Smart scan ages only non-KSM pages and never resets age.  Four identical "
    "and eight distinct pages; the distinct ones follow the skip schedule "
    "(visited in scans 1-4, 6, 9, 14...) while the KSM ones are never skipped.  "
    "A merged page COWed after scan 6 with distinct content resumes aging from "
    "the age it had when it merged (2), so it is visited twice more and then "
    "skipped once, not from a fresh start.",
    [spawn("a"), mmap("a", "r", 12), fill("a", "r", 0, 4, 0x77), unique("a", "r", 4, 8, 1),
     madvise("a", "r", 0, 12, M), *[scans(1)] * 6, poke("a", "r", 1, 0, 0x78),
     *[scans(1)] * 10]))

run2_unmerges_everything = register(Scenario(
    "run2_unmerges_everything",
    "run=2 is synchronous: it unmerges every KSM page and KSM zero page of every "
    "mm, frees every rmap_item and stable node, and sets full_scans to 0 at "
    "once (pages_scanned and pages_skipped keep counting).  The mms stay "
    "registered and VM_MERGEABLE, a second run=2 changes nothing, and after it "
    "the first-scan rule starts over: two scans to merge again.",
    [knob("use_zero_pages", 1), spawn("a"), spawn("b"), mmap("a", "r", 3), mmap("b", "r", 5),
     fill("a", "r", 0, 3, 0x21), fill("b", "r", 0, 3, 0x21), fill("b", "r", 3, 2, 0),
     madvise("a", "r", 0, 3, M), madvise("b", "r", 0, 5, M), scans(3), run(2), run(2), run(0),
     scans(1), scans(1)]))


# ---------------------------------------------------------------------------
# The kernel selftests (tools/testing/selftests/mm), step by step as far as the
# scenario format goes; research/ksm-kernel.md section 6 lists them.
# ---------------------------------------------------------------------------

def _ksm_tests(name: str, description: str, pages: int, byte: int, setup=(),
               mode: str = "madvise", after=()) -> Scenario:
    """ksm_tests.c: run=2, allocate_memory (mmap, memset, mprotect), then
    ksm_merge_pages (opt in, run=1, wait for 2 full scans)."""
    return Scenario(name, description, [*setup, spawn("t"),
                                        *_merge_range("t", "map", pages, byte, mode=mode), *after])


ksm_tests_merge = register(_ksm_tests(
    "ksm_tests_merge",
    "ksm_tests -M -p 10 (CHECK_KSM_MERGE): ten pages of '*' after run=2 and two "
    "full scans; assert_ksm_pages_count(10) wants pages_shared=1, pages_sharing=9.",
    10, ord("*")))

ksm_tests_merge_prctl = register(_ksm_tests(
    "ksm_tests_merge_prctl",
    "ksm_tests -M -p 10 -t 1: the same merge with PR_SET_MEMORY_MERGE instead of "
    "madvise (every anonymous VMA becomes mergeable; ksm_merge_any yes); "
    "assert_ksm_pages_count(10) wants pages_shared=1, pages_sharing=9.",
    10, ord("*"), mode="prctl"))

ksm_tests_unmerge = register(_ksm_tests(
    "ksm_tests_unmerge",
    "ksm_tests -U (CHECK_KSM_UNMERGE): two merged pages of '*', then byte 0 of "
    "page 0 set to '-' and of page 1 to '+' (a COW of the KSM page on each).  "
    "Counters lag until ksmd's next scan; after it assert_ksm_pages_count(0) "
    "wants pages_shared=0, pages_sharing=0.",
    2, ord("*"), after=[poke("t", "map", 0, 0, ord("-")), poke("t", "map", 1, 0, ord("+")),
                        scans(1)]))

ksm_tests_zero_pages_0 = register(_ksm_tests(
    "ksm_tests_zero_pages_0",
    "ksm_tests -Z -p 10 -z 0: with use_zero_pages=0 ten zero-filled pages merge "
    "into one ordinary KSM page; assert_ksm_pages_count(10) wants "
    "pages_shared=1, pages_sharing=9 (ksm_zero_pages 0).",
    10, 0, setup=[knob("use_zero_pages", 0)]))

ksm_tests_zero_pages_1 = register(_ksm_tests(
    "ksm_tests_zero_pages_1",
    "ksm_tests -Z -p 10 -z 1: with use_zero_pages=1 ten zero-filled pages are "
    "mapped to the zero page; assert_ksm_pages_count(0) wants pages_shared=0, "
    "pages_sharing=0, and ksm_zero_pages counts the ten.",
    10, 0, setup=[knob("use_zero_pages", 1)]))

#: ksm_tests -C uses 4000 pages = 2000 pairs.
COW_PAIRS = 2000

ksm_tests_cow_pairs = register(Scenario(
    "ksm_tests_cow_pairs",
    f"ksm_tests -C (KSM_COW_TIME), {COW_PAIRS} identical pairs: every pair has "
    "its own content, so the pairs merge into one KSM page each "
    f"(pages_shared={COW_PAIRS}, pages_sharing={COW_PAIRS}; the selftest times "
    "this and the writes).  Pairs are page i of two regions (the selftest "
    "uses adjacent pages; the scan order differs, not the counts).  Then the "
    "first page of every pair is rewritten (COW): each KSM page keeps one "
    "mapper and stays shared, sharing drops to 0 at the next scan.",
    [run(2), spawn("t"), mmap("t", "a", COW_PAIRS), mmap("t", "b", COW_PAIRS),
     unique("t", "a", 0, COW_PAIRS, 1), unique("t", "b", 0, COW_PAIRS, 1),
     madvise("t", "a", 0, COW_PAIRS, M), madvise("t", "b", 0, COW_PAIRS, M), scans(2),
     unique("t", "a", 0, COW_PAIRS, 2), scans(1), scans(1)]))

ksm_tests_merge_time = register(_ksm_tests(
    "ksm_tests_merge_time",
    "ksm_tests -P -s 100 (KSM_MERGE_TIME): 100 MiB = 25600 pages of '*' merged "
    "in two full scans (the selftest only times it).  With max_page_sharing=256 "
    "the formula gives pages_shared=100, pages_sharing=25500: one chain of 100 "
    "dups.",
    25600, ord("*")))

FUNCTIONAL_PAGES = 512   # 2 MiB, the size every ksm_functional_tests case maps

ksm_functional_unmerge = register(Scenario(
    "ksm_functional_unmerge",
    "ksm_functional_tests test_unmerge: 512 pages of 0xcf merged, then "
    "MADV_UNMERGEABLE on all.  The selftest asserts no PFN is mapped twice; "
    "the counters show it lazily: merging pages stay until the next scan "
    "drops every item of the no-longer-mergeable range.",
    [spawn("t"), *_merge_range("t", "map", FUNCTIONAL_PAGES, 0xCF),
     madvise("t", "map", 0, FUNCTIONAL_PAGES, "MADV_UNMERGEABLE"), scans(1)]))

ksm_functional_unmerge_zero_pages = register(Scenario(
    "ksm_functional_unmerge_zero_pages",
    "ksm_functional_tests test_unmerge_zero_pages: use_zero_pages=1, 512 zero "
    "pages merged; the selftest asserts ksm_stat ksm_zero_pages == 512, then "
    "256 after MADV_UNMERGEABLE of the first half, then 0 after writing a "
    "distinct value into each page of the second half (these change at once, "
    "not lazily).",
    [knob("use_zero_pages", 1), spawn("t"), *_merge_range("t", "map", FUNCTIONAL_PAGES, 0),
     madvise("t", "map", 0, FUNCTIONAL_PAGES // 2, "MADV_UNMERGEABLE"),
     unique("t", "map", FUNCTIONAL_PAGES // 2, FUNCTIONAL_PAGES // 2, 1), scans(1)]))

ksm_functional_unmerge_discarded = register(Scenario(
    "ksm_functional_unmerge_discarded",
    "ksm_functional_tests test_unmerge_discarded: 512 merged pages, MADV_DONTNEED "
    "on the first half (pte_none holes), then MADV_UNMERGEABLE on all: unmerge "
    "tolerates the holes (the selftest asserts no PFN is mapped twice).",
    [spawn("t"), *_merge_range("t", "map", FUNCTIONAL_PAGES, 0xCF),
     madvise("t", "map", 0, FUNCTIONAL_PAGES // 2, "MADV_DONTNEED"),
     madvise("t", "map", 0, FUNCTIONAL_PAGES, "MADV_UNMERGEABLE"), scans(1)]))

ksm_functional_prot_none = register(Scenario(
    "ksm_functional_prot_none",
    "ksm_functional_tests test_prot_none: 512 pages of 0x11 made PROT_NONE "
    "before MADV_MERGEABLE still merge (ksmd does not care about protection).  "
    "The selftest writes a distinct int into each page of the first half "
    "through /proc/self/mem (a forced COW); here that half is made writable "
    "again and written.  MADV_UNMERGEABLE then unshares the PROT_NONE half.",
    [spawn("t"), *_merge_range("t", "map", FUNCTIONAL_PAGES, 0x11, prot="none"),
     mprotect("t", "map", 0, FUNCTIONAL_PAGES // 2, "rw"),
     unique("t", "map", 0, FUNCTIONAL_PAGES // 2, 1),
     madvise("t", "map", FUNCTIONAL_PAGES // 2, FUNCTIONAL_PAGES // 2, "MADV_UNMERGEABLE"),
     scans(1)]))

ksm_functional_prctl = register(Scenario(
    "ksm_functional_prctl",
    "ksm_functional_tests test_prctl: PR_SET_MEMORY_MERGE 1 then 0; the selftest "
    "reads PR_GET_MEMORY_MERGE (1, then 0), ksm_stat shows it as ksm_merge_any "
    "yes, then no.",
    [spawn("t"), prctl_merge("t", 1), prctl_merge("t", 0)]))

ksm_functional_prctl_fork = register(Scenario(
    "ksm_functional_prctl_fork",
    "ksm_functional_tests test_prctl_fork: PR_SET_MEMORY_MERGE 1, fork; the "
    "child inherits it (ksm_merge_any yes) and a 512-page range it maps "
    "merges without madvise (mode NONE): the child's ksm_merging_pages > 0.",
    [spawn("t"), prctl_merge("t", 1), fork("t", "child"),
     *_merge_range("child", "map", FUNCTIONAL_PAGES, 0xCF, mode="none"),
     exit("child"), prctl_merge("t", 0)]))

ksm_functional_prctl_unmerge = register(Scenario(
    "ksm_functional_prctl_unmerge",
    "ksm_functional_tests test_prctl_unmerge: 512 pages merged through "
    "PR_SET_MEMORY_MERGE 1; PR_SET_MEMORY_MERGE 0 unmerges them at once "
    "(the selftest asserts no PFN is mapped twice) and the next scan drops "
    "every item.",
    [spawn("t"), *_merge_range("t", "map", FUNCTIONAL_PAGES, 0xCF, mode="prctl"),
     prctl_merge("t", 0), scans(1)]))

ksm_functional_fork_merging_page_count = register(Scenario(
    "ksm_functional_fork_merging_page_count",
    "ksm_functional_tests test_fork_ksm_merging_page_count (6.18): after 512 "
    "pages merged, a forked child has ksm_merging_pages 0 (and no rmap_items): "
    "ksm_fork zeroes the counters it would otherwise copy from the parent.",
    [spawn("t"), *_merge_range("t", "map", FUNCTIONAL_PAGES, 0xCF), fork("t", "child"),
     exit("child"), scans(1)]))

ksm_functional_fork_global_zero_pages_count = register(Scenario(
    "ksm_functional_fork_global_zero_pages_count",
    "test_fork_global_ksm_zero_pages_count (posted with the 2025 fork fix; the "
    "test itself was dropped from v3): with use_zero_pages=1, 512 zero pages "
    "merged, fork (the global ksm_zero_pages counts the child's inherited "
    "zero-page PTEs too), the child writes run=2 and exits: the global "
    "ksm_zero_pages ends where it started.",
    [knob("use_zero_pages", 1), spawn("t"), run(2),
     *_merge_range("t", "map", FUNCTIONAL_PAGES, 0), fork("t", "child"), run(2),
     exit("child")]))


# ---------------------------------------------------------------------------
# Random scenarios: differential testing of the simulator against the kernel
# ---------------------------------------------------------------------------

def _track(step, procs: list, regions: dict) -> None:
    """What a random generator knows after ``step``: live processes, their regions."""
    from .scenario import Exit, Fork, Mmap, Spawn
    if isinstance(step, Spawn):
        procs.append(step.proc)
        regions[step.proc] = {}
    elif isinstance(step, Fork):
        procs.append(step.child)
        regions[step.child] = dict(regions[step.proc])
    elif isinstance(step, Exit):
        procs.remove(step.proc)
    elif isinstance(step, Mmap):
        regions[step.proc][step.region] = step.pages


def random_scenario(seed: int, steps: int = 25, max_pages: int = 8) -> Scenario:
    """A valid random scenario, the same for the same ``seed``.

    Contents come from a tiny alphabet (bytes 0-2, two unique tags) so that
    duplicates, zero pages and COW all happen often; every step is kept only
    if the scenario's static check accepts it.  Not registered: use it to
    compare ``run_in_simulator`` with ``live.run_live`` over many seeds.
    """
    return _random_scenario(seed, steps, max_pages=max_pages, thp=False)


#: The step kinds of the random generators and their weights: small regions (plain)
#: or THP-backed ones (thp)
_RANDOM_KINDS = {
    False: (("spawn", "mmap", "fill", "unique", "poke", "touch", "madvise", "mprotect",
             "munmap", "prctl", "fork", "exit", "knob", "scans", "run"),
            (2, 3, 8, 2, 4, 1, 8, 1, 1, 1, 1, 1, 1, 5, 1)),
    True: (("spawn", "mmap", "fill", "unique", "poke", "touch", "mergeable", "dontneed",
            "mprotect", "munmap", "fork", "exit", "knob", "scans"),
           (1, 3, 6, 2, 3, 2, 6, 2, 1, 1, 1, 1, 1, 4)),
}


def _random_scenario(seed: int, steps: int, *, max_pages: int = 8, thp: bool) -> Scenario:
    """The random generator behind :func:`random_scenario` (``thp=False``) and
    :func:`random_thp_scenario` (``thp=True``): one ``random.Random(seed)`` draws
    every choice, in an order that each flag keeps fixed (the recorded traces of
    tests/data/kernel_traces name their seeds)."""
    import random

    from .scenario import (Dontneed, Exit, Fill, Fork, Hugepage, Knob, Madvise, Mmap, Mprotect,
                           Munmap, Poke, PrctlMerge, Run, Scans, ScenarioError, Spawn, ThpStat,
                           TouchRead, Unique)

    rng = random.Random(seed)
    # THP: p0 exists from the start, at most 3 processes, never the last one exits
    out: list = [Spawn("p0")] if thp else []
    procs: list[str] = ["p0"] if thp else []
    regions: dict[str, dict[str, int]] = {"p0": {}} if thp else {}
    counter = iter(range(1 if thp else 0, 10**6))
    most, least = (3, 1) if thp else (float("inf"), 0)
    kinds, weights = _RANDOM_KINDS[thp]

    def pick_range(pages):
        if thp and rng.random() < 0.5:               # whole 2 MiB blocks
            first = rng.randrange(pages // 512) * 512
            return first, 512 * rng.randint(1, (pages - first) // 512)
        page = rng.randrange(pages)
        return page, rng.randint(1, min(pages - page, 64) if thp else pages - page)

    def knob_step():
        if thp:
            return Knob("use_zero_pages", rng.choice([0, 1]))
        return rng.choice([Knob("use_zero_pages", rng.choice([0, 1])),
                           Knob("max_page_sharing", rng.choice([2, 3, 256])),
                           Knob("stable_node_chains_prune_millisecs", rng.choice([0, 2000])),
                           Knob("smart_scan", rng.choice([0, 1]))])

    def mmap_steps(proc):
        if not thp:
            return [Mmap(proc, f"r{next(counter)}", rng.randint(1, max_pages),
                         shared=rng.random() < 0.1)]
        pages = rng.choice([512, 512, 1024])
        name = f"r{next(counter)}"
        new = [Mmap(proc, name, pages)]
        if rng.random() < 0.8:
            new.append(Hugepage(proc, name, 0, pages))
        return new

    def propose() -> list:
        kind = rng.choices(kinds, weights)[0]
        if (kind == "spawn" and len(procs) < most) or not procs:
            return [Spawn(f"p{next(counter)}")]
        proc = rng.choice(procs)
        if kind == "fork" and len(procs) < most:
            return [Fork(proc, f"p{next(counter)}")]
        if kind == "exit" and len(procs) > least:
            return [Exit(proc)]
        if kind == "prctl":
            return [PrctlMerge(proc, rng.choice([1, 1, 0]))]
        if kind == "scans":
            return [Scans(rng.choice([1, 1, 2])), ThpStat()] if thp else \
                [Scans(rng.choice([1, 1, 1, 2, 3]))]
        if kind == "run":
            return [Run(rng.choice([2, 0]))]
        if kind == "knob":
            return [knob_step()]
        if kind == "mmap" or not regions[proc]:
            return mmap_steps(proc)
        region = rng.choice(sorted(regions[proc]))
        page, count = pick_range(regions[proc][region])
        return [{
            "fill": lambda: Fill(proc, region, page, count, rng.choice([0, 1, 1, 2])),
            "unique": lambda: Unique(proc, region, page, count, rng.choice([1, 2])),
            "poke": lambda: Poke(proc, region, page, rng.choice([0, 8, 4095]), rng.choice([0, 1, 2])),
            "touch": lambda: TouchRead(proc, region, page, count),
            "madvise": lambda: Madvise(proc, region, page, count, rng.choice(
                ["MADV_MERGEABLE"] * 4 + ["MADV_UNMERGEABLE", "MADV_DONTNEED"])),
            "mergeable": lambda: Madvise(proc, region, page, count, "MADV_MERGEABLE"),
            "dontneed": lambda: Dontneed(proc, region, page, count),
            "mprotect": lambda: Mprotect(proc, region, page, count,
                                         rng.choice(["r", "rw"] if thp else ["none", "r", "rw"])),
            "munmap": lambda: Munmap(proc, region, page, count),
        # THP: a spawn, fork or exit over its limit writes instead
        }.get(kind, lambda: Fill(proc, region, page, count, 1))()]

    while len(out) < steps:
        new = propose()
        try:
            Scenario("random", "", out + new)
        except ScenarioError:
            continue
        out.extend(new)
        for step in new:
            _track(step, procs, regions)
    if thp:
        out += [Scans(2), ThpStat()]
        return Scenario(f"random_thp_{seed}", f"random_thp_scenario({seed}, {steps})", out)
    if not any(isinstance(s, Scans) for s in out[-3:]):
        out.append(Scans(2))
    return Scenario(f"random_{seed}", f"random_scenario({seed}, {steps}, {max_pages})", out)


#: Knob settings a random scenario may start with (``random_scenario_with_knobs``),
#: so that use_zero_pages, smart_scan=0 and small max_page_sharing limits shape the
#: whole run, not only the steps after a random ``knob`` step.
RANDOM_KNOB_PRESETS = (
    (),
    (knob("use_zero_pages", 1),),
    (knob("smart_scan", 0),),
    (knob("max_page_sharing", 2),),
    (knob("max_page_sharing", 3), knob("use_zero_pages", 1)),
)


def random_scenario_with_knobs(seed: int, steps: int = 25, max_pages: int = 8) -> Scenario:
    """:func:`random_scenario` behind the knob preset ``seed % len(RANDOM_KNOB_PRESETS)``."""
    base = random_scenario(seed, steps, max_pages)
    preset = RANDOM_KNOB_PRESETS[seed % len(RANDOM_KNOB_PRESETS)]
    knobs = ", ".join(s.describe() for s in preset)
    return Scenario(base.name, f"{base.description} after [{knobs}]", (*preset, *base.steps))


# --------------------------------------------------------------------------
# Transient references: pages faulted or COWed inside a full scan
# --------------------------------------------------------------------------
# A fresh folio sits in a per-CPU lru_add batch (mm/swap.c, one reference) until
# the batch fills (31 folios) or is drained; ksmd drains every CPU only when a new
# full scan starts.  write_protect_page() counts that reference, so a page faulted
# or COWed after the drain cannot merge before the next full scan.  batch(1) starts
# a full scan (and its drain) and stops after one page.

cow_same_content_mid_scan = register(Scenario(
    "cow_same_content_mid_scan",
    "Four pages of 0x5a merge (1 shared, 3 sharing).  A new full scan starts and "
    "stops after one page; then page 2 is rewritten with the same byte: COW gives "
    "it a fresh folio with the same checksum, but that folio is still in the CPU's "
    "LRU batch, so when ksmd reaches it in this scan write_protect_page() refuses "
    "it (it goes to the unstable tree: pages_unshared=1).  The next full scan "
    "drains the batch first and merges it again.",
    [spawn("a"), mmap("a", "r", 4), fill("a", "r", 0, 4, 0x5A), madvise("a", "r", 0, 4, M),
     scans(2), batch(1), fill("a", "r", 2, 1, 0x5A), batch(8), scans(1), scans(1)]))

fork_cow_mid_scan = register(Scenario(
    "fork_cow_mid_scan",
    "Two pages of 0x31 and two distinct pages, scanned twice (merged pair).  A "
    "full scan starts; a fork shares every page; the child rewrites its copy of a "
    "distinct page and of a merged page with the same bytes (COW, fresh folios in "
    "the LRU batch), the parent rewrites a distinct page (COW too: the page is "
    "shared with the child).  None of the three can merge before the next full "
    "scan; the scans after show when each does.",
    [spawn("a"), mmap("a", "r", 4), fill("a", "r", 0, 2, 0x31), unique("a", "r", 2, 2, 7),
     madvise("a", "r", 0, 4, M), scans(2), batch(1), fork("a", "b"),
     fill("b", "r", 1, 1, 0x31), fill("b", "r", 0, 1, 0x31), unique("a", "r", 3, 1, 7),
     batch(16), scans(1), scans(1), scans(1)]))

zero_fault_mid_scan = register(Scenario(
    "zero_fault_mid_scan",
    "With use_zero_pages=1: pages read-faulted onto the zero page and pages written "
    "with zeros; a full scan starts, then the zero-page mappings are written "
    "with zeros (wp_page_copy: fresh folios, in the LRU batch) and a DONTNEED'd "
    "page is faulted back with its old content.  The batch's reference keeps "
    "each from merging (with the zero page or the stable tree) in this scan.",
    [knob("use_zero_pages", 1), spawn("a"), mmap("a", "r", 6), touch_read("a", "r", 0, 2),
     fill("a", "r", 2, 2, 0), fill("a", "r", 4, 2, 0x44), madvise("a", "r", 0, 6, M),
     scans(2), batch(1), fill("a", "r", 0, 2, 0), madvise("a", "r", 5, 1, "MADV_DONTNEED"),
     fill("a", "r", 5, 1, 0x44), batch(16), scans(1), scans(1)]))

lru_batch_fills_at_31 = register(Scenario(
    "lru_batch_fills_at_31",
    "40 pages of 0x66 merge into one KSM page.  A full scan starts and stops after "
    "one page; then all 40 are rewritten with the same byte (40 COWs).  The LRU "
    "batch holds 31 folios (FOLIO_BATCH_SIZE): the 31st add moves the first 31 to "
    "the LRU, so those can merge again in this scan, while the last 9 wait for "
    "the next full scan's drain.",
    [spawn("a"), mmap("a", "r", 40), fill("a", "r", 0, 40, 0x66), madvise("a", "r", 0, 40, M),
     scans(2), batch(1), fill("a", "r", 0, 40, 0x66), batch(64), scans(1), scans(1)]))

hugepage_dontneed_munmap_mprotect_sleep = register(Scenario(
    "hugepage_dontneed_munmap_mprotect_sleep",
    "Guest-RAM style: a region marked MADV_HUGEPAGE (no 2 MiB block fits, so it "
    "stays small pages and KSM merges them as usual), then DONTNEED on a merged "
    "page (pages_sharing drops at the next scan), a DONTNEED'd page refaulted "
    "inside a full scan (LRU batch: merges one scan later), mprotect read-only "
    "of a merged page, a munmap of a merged page and a sleep with ksmd stopped.",
    [spawn("a"), mmap("a", "r", 8), hugepage("a", "r", 0, 8), fill("a", "r", 0, 8, 0x3C),
     madvise("a", "r", 0, 8, M), scans(2), dontneed("a", "r", 1, 1), scans(1),
     batch(1), fill("a", "r", 1, 1, 0x3C), batch(16), mprotect("a", "r", 2, 1, "r"),
     munmap("a", "r", 3, 1), sleep(50), hugepage("a", "r", 4, 2, False), scans(1),
     scans(1)]))


# --- transparent huge pages (kernel/huge_memory.py), recorded on 6.18 in madvise mode --

def _thp_scans(n: int) -> list:
    """``n`` single full scans, each followed by a THP observation."""
    out = []
    for _ in range(n):
        out += [scans(1), thp_stat()]
    return out


thp_identical_subpages = register(Scenario(
    "thp_identical_subpages",
    "QEMU-style guest RAM: a 2 MiB region with MADV_HUGEPAGE, written all 0x2a, "
    "is one THP (AnonHugePages 2048 kB, thp_fault_alloc).  KSM scans its 512 "
    "subpages one by one.  In the second full scan subpage 1 matches subpage 0 in "
    "the unstable tree: both belong to the same THP, so split_huge_page() sees "
    "KSM's two references and fails (thp_split_page_failed), and cmp_and_merge_page() "
    "splits it on the retry (thp_split_page, thp_split_pmd).  The 512 small pages "
    "then merge, 256 to a KSM page (max_page_sharing): two KSM pages in a chain.",
    [spawn("a"), mmap("a", "r", 512), hugepage("a", "r", 0, 512),
     fill("a", "r", 0, 512, 0x2A), thp_stat(), madvise("a", "r", 0, 512, M),
     *_thp_scans(3)]))

thp_zero_subpages = register(Scenario(
    "thp_zero_subpages",
    "A THP with one written byte: 511 of its subpages are all zeros.  When KSM "
    "splits it, remap_page() maps every all-zero subpage to the shared zero page "
    "and frees it (6.12+): memory comes back without any merge, pages_shared stays "
    "0 and ksm_zero_pages too (those are not KSM's zero pages).",
    [spawn("a"), mmap("a", "r", 512), hugepage("a", "r", 0, 512),
     poke("a", "r", 0, 0, 1), thp_stat(), madvise("a", "r", 0, 512, M), *_thp_scans(3)]))

thp_two_guests = register(Scenario(
    "thp_two_guests",
    "Two processes, one THP each, with the same distinct content per subpage "
    "(guests booted from one image).  Subpage i of b meets subpage i of a in the "
    "unstable tree: different THPs, so each merge splits both (one reference each), "
    "and all 512 pairs merge.",
    [spawn("a"), spawn("b"), mmap("a", "r", 512), mmap("b", "r", 512),
     hugepage("a", "r", 0, 512), hugepage("b", "r", 0, 512),
     unique("a", "r", 0, 512, 7), unique("b", "r", 0, 512, 7), thp_stat(),
     madvise("a", "r", 0, 512, M), madvise("b", "r", 0, 512, M), *_thp_scans(3)]))

thp_huge_zero_page = register(Scenario(
    "thp_huge_zero_page",
    "Reads of a MADV_HUGEPAGE region map the huge zero page (not counted in "
    "AnonHugePages, no thp_fault_alloc); the first write replaces it with a new THP "
    "(do_huge_zero_wp_pmd, 6.14+).  With use_zero_pages=1 KSM splits that THP: its "
    "511 zero subpages go to the zero page in the split, not by KSM (ksm_zero_pages 0).",
    [knob("use_zero_pages", 1), spawn("a"), mmap("a", "r", 1024), hugepage("a", "r", 0, 1024),
     touch_read("a", "r", 0, 1024), thp_stat(), poke("a", "r", 512, 8, 5), thp_stat(),
     madvise("a", "r", 0, 1024, M), *_thp_scans(3)]))

thp_fork_cow = register(Scenario(
    "thp_fork_cow",
    "fork() shares a THP read-only (one huge PMD in each process).  A write in the "
    "child splits the child's PMD and copies 4 KiB (thp_split_pmd, AnonHugePages "
    "0 in the child); a write in the parent splits the parent's.  When the child "
    "exits, the THP is partly unmapped (thp_deferred_split_page).  KSM then splits "
    "the folio and merges its 0x11 subpages.",
    [spawn("a"), mmap("a", "r", 512), hugepage("a", "r", 0, 512), fill("a", "r", 0, 512, 0x11),
     fork("a", "c"), thp_stat(), poke("c", "r", 0, 0, 0x11), thp_stat(),
     poke("a", "r", 1, 0, 0x22), thp_stat(), exit("c"), thp_stat(),
     madvise("a", "r", 0, 512, M), *_thp_scans(2)]))

thp_dontneed_munmap_mprotect = register(Scenario(
    "thp_dontneed_munmap_mprotect",
    "Parts of two THPs unmapped and protected.  MADV_DONTNEED of a quarter of the "
    "first splits its PMD and leaves a "
    "partly mapped folio (deferred split); mprotect of one page of the second splits "
    "its PMD at the new VMA boundaries, and munmap of two more pages leaves it partly "
    "mapped.  DONTNEED of the whole first block and a write fault it back as a THP "
    "(CONFIG_PT_RECLAIM freed the empty page table).  KSM splits both folios.",
    [spawn("a"), mmap("a", "r", 1024), hugepage("a", "r", 0, 1024),
     fill("a", "r", 0, 1024, 0x22), thp_stat(), dontneed("a", "r", 0, 128), thp_stat(),
     mprotect("a", "r", 600, 1, "r"), thp_stat(), munmap("a", "r", 700, 2), thp_stat(),
     dontneed("a", "r", 0, 512), poke("a", "r", 3, 0, 0x22), thp_stat(),
     madvise("a", "r", 0, 600, M), madvise("a", "r", 601, 99, M),
     madvise("a", "r", 702, 322, M), *_thp_scans(2)]))

thp_fault_drains_lru_batch = register(Scenario(
    "thp_fault_drains_lru_batch",
    "A merged page is written with the same content inside a full scan (COW: the new "
    "folio waits in the per-CPU LRU batch, with a reference that keeps it from "
    "merging).  A THP fault in another region adds a large folio to the LRU, which "
    "moves the whole batch at once: the copy merges again in the same full scan.",
    [spawn("a"), mmap("a", "r", 4), fill("a", "r", 0, 4, 0x44), madvise("a", "r", 0, 4, M),
     scans(2), batch(1), poke("a", "r", 3, 0, 0x44), mmap("a", "t", 512),
     hugepage("a", "t", 0, 512), poke("a", "t", 0, 0, 1), thp_stat(), batch(16), scans(1),
     thp_stat()]))

#: The THP scenarios, in the order the book and the tests use them.
THP_SCENARIOS = (thp_identical_subpages, thp_zero_subpages, thp_two_guests,
                 thp_huge_zero_page, thp_fork_cow, thp_dontneed_munmap_mprotect,
                 thp_fault_drains_lru_batch)


def random_thp_scenario(seed: int, steps: int = 20) -> Scenario:
    """A valid random scenario on THP-backed regions, the same for the same ``seed``.

    Regions of 512 or 1024 pages, most of them MADV_HUGEPAGE before their first touch;
    whole-block and random-range writes from a tiny alphabet (zeros, one byte, two
    unique tags), read faults (the huge zero page), partial MADV_DONTNEED, mprotect
    and munmap (PMD splits, deferred splits), fork and exit (shared THPs, COW), and
    ``thp_stat`` after every scan.  Not registered: tests compare it live.
    """
    return _random_scenario(seed, steps, thp=True)
