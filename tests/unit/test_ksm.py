"""KSM scenarios whose every expected number is derived by hand from mm/ksm.c.

The derivations follow research/ksm-kernel.md §2 (checked against mm/ksm.c of 6.15-6.18)
and are written next to each assertion.  Vocabulary: a "visit" is one
cmp_and_merge_page() call for an rmap_item; "scan #k" is the k-th full scan, counted
from 0, so after scan #k full_scans == k + 1.
"""
import errno

import pytest

from ksmbook import (MADV_DONTNEED, MADV_MERGEABLE, MADV_UNMERGEABLE, PR_GET_MEMORY_MERGE,
                     PR_SET_MEMORY_MERGE, PROT_NONE, Machine, parse_ksm_stat)
from ksmbook.kernel.ksm.ksmd import KsmdNotRunning
from ksmbook.kernel.ksm.scan import skip_age
from ksmbook.kernel.memory import PG_ksm
from ksmbook.kernel.pagetable import pte_pfn, pte_present

from machine_checks import check_ksm, check_page_counts, fingerprint

PS = 256
KSM = "/sys/kernel/mm/ksm"
COUNTERS = ("full_scans", "pages_shared", "pages_sharing", "pages_unshared", "pages_volatile",
            "stable_node_chains", "stable_node_dups")


def machine(kernel="6.18", run=True, **kw):
    m = Machine(kernel=kernel, page_size=PS, **kw)
    if run:
        m.sysfs.write(f"{KSM}/run", "1")
    return m


def fill(value):
    return bytes([value]) * PS


def mergeable(m, name, contents, node=None):
    """A process with one VMA of len(contents) pages, page i filled with contents[i]
    (an int fills the page with that byte), madvised MERGEABLE."""
    p = m.spawn(name)
    a = p.mmap(len(contents) * PS, node=node)
    for i, c in enumerate(contents):
        p.write(a + i * PS, fill(c) if isinstance(c, int) else c)
    p.madvise(a, len(contents) * PS, MADV_MERGEABLE)
    return p, a


def scans(m, n=1):
    m.ksmd.run_full_scans(n)
    check_ksm(m)
    check_page_counts(m)


def counters(m, *names):
    s = m.ksm.stats()
    return {k: s[k] for k in (names or COUNTERS)}


def rmap_items(m):
    return m.ksm.ksm_rmap_items


def pfn(p, addr):
    pte = p.mm.pagetables.get_pte(addr)
    return pte_pfn(pte) if pte_present(pte) else None


def stat(m, p):
    return parse_ksm_stat(m.procfs.read(f"/proc/{p.pid}/ksm_stat"))


def item_at(m, p, addr):
    return next(i for i in m.ksm.rmap_items() if i.mm is p.mm and i.address == addr)


# --- the first-visit rule and trace A ---------------------------------------------------

def test_two_identical_pages_merge_on_the_second_scan_into_the_scanned_page():
    m = machine()
    p, a = mergeable(m, "p", [7, 7])
    old0, old1 = pfn(p, a), pfn(p, a + PS)
    scans(m)
    # scan #0: both items are new (oldchecksum = 0) -> the checksum is only recorded
    assert counters(m) == dict(full_scans=1, pages_shared=0, pages_sharing=0, pages_unshared=0,
                               pages_volatile=2, stable_node_chains=0, stable_node_dups=0)
    assert (pfn(p, a), pfn(p, a + PS)) == (old0, old1)
    scans(m)
    # scan #1: p0's checksum held -> unstable tree; p1 finds p0 there.  p1, the page being
    # scanned, becomes the KSM page and p0's PTE is pointed at it; p0's frame is freed
    assert counters(m) == dict(full_scans=2, pages_shared=1, pages_sharing=1, pages_unshared=0,
                               pages_volatile=0, stable_node_chains=0, stable_node_dups=0)
    assert pfn(p, a) == pfn(p, a + PS) == old1
    assert old0 not in m.memory.pages
    kpage = m.memory.pages[old1]
    assert kpage.flags & PG_ksm and (kpage.refcount, kpage.mapcount) == (2, 2)
    assert p.read(a, 2 * PS) == fill(7) * 2


def test_trace_a_four_pages_then_cow_with_lazy_counters():
    m = machine()
    p, a = mergeable(m, "p", [1, 1, 1, 1])
    scans(m)
    assert counters(m, "full_scans", "pages_shared", "pages_sharing", "pages_volatile") == \
        dict(full_scans=1, pages_shared=0, pages_sharing=0, pages_volatile=4)
    assert rmap_items(m) == 4
    scans(m)
    # p0 -> unstable; p1 merges with it (p1 is the KSM page); p2, p3 hit the stable tree
    assert counters(m) == dict(full_scans=2, pages_shared=1, pages_sharing=3, pages_unshared=0,
                               pages_volatile=0, stable_node_chains=0, stable_node_dups=0)
    kpfn = pfn(p, a + PS)
    assert {pfn(p, a + i * PS) for i in range(4)} == {kpfn}
    # ages: scans #0 and #1 found every page not yet KSM -> age 2; KSM pages are not aged
    scans(m)
    assert counters(m, "full_scans", "pages_shared", "pages_sharing") == \
        dict(full_scans=3, pages_shared=1, pages_sharing=3)
    assert [i.age for i in m.ksm.rmap_items()] == [2, 2, 2, 2]
    assert stat(m, p)["ksm_merging_pages"] == 4

    # COW on p2: the write copies at once, the counters wait for ksmd
    p.write(a + 2 * PS, b"new")
    assert pfn(p, a + 2 * PS) != kpfn
    assert counters(m, "pages_shared", "pages_sharing") == dict(pages_shared=1, pages_sharing=3)
    assert stat(m, p)["ksm_merging_pages"] == 4
    assert m.memory.pages[kpfn].mapcount == 3
    scans(m)
    # p2's visit: not KSM any more -> leaves the stable node (sharing 3 -> 2,
    # merging_pages 4 -> 3); its checksum differs from the pre-merge one -> volatile
    assert counters(m, "pages_shared", "pages_sharing", "pages_unshared", "pages_volatile") == \
        dict(pages_shared=1, pages_sharing=2, pages_unshared=0, pages_volatile=1)
    assert stat(m, p)["ksm_merging_pages"] == 3
    scans(m)
    # checksum held: nothing identical in either tree -> unstable (age 3 -> 4; at age 3
    # smart scan sets remaining_skips = skip_age(3) = 1 and still processes the page)
    assert counters(m, "pages_unshared", "pages_volatile", "pages_skipped") == \
        dict(pages_unshared=1, pages_volatile=0, pages_skipped=0)
    scans(m)
    # age 4 with one skip left: skipped, which also drops it from the unstable tree
    assert counters(m, "pages_unshared", "pages_volatile", "pages_skipped") == \
        dict(pages_unshared=0, pages_volatile=1, pages_skipped=1)
    assert p.read(a, 4 * PS) == fill(1) * 2 + b"new" + fill(1)[3:] + fill(1)


def test_cow_with_unchanged_content_remerges_on_the_next_visit():
    # oldchecksum survives the merge: rewriting the same bytes copies the page, and the
    # next visit sees an unchanged checksum and merges straight back into the KSM page
    m = machine()
    p, a = mergeable(m, "p", [3, 3, 3])
    scans(m, 2)
    kpfn = pfn(p, a + PS)
    p.write(a, fill(3))
    assert pfn(p, a) != kpfn
    scans(m)
    assert pfn(p, a) == kpfn
    assert counters(m, "pages_shared", "pages_sharing", "pages_volatile") == \
        dict(pages_shared=1, pages_sharing=2, pages_volatile=0)


def test_volatile_pages_never_merge():
    # two pages identical at every scan, but rewritten between scans: every visit sees a
    # checksum different from the last one, so both stay volatile for ever
    m = machine()
    p, a = mergeable(m, "p", [0x10, 0x10])
    for k in range(6):
        scans(m)
        assert counters(m, "pages_shared", "pages_unshared", "pages_volatile") == \
            dict(pages_shared=0, pages_unshared=0, pages_volatile=2)
        p.write(a, fill(0x20 + k) * 2)


# --- max_page_sharing: trace B and the selftests' formula --------------------------------

def test_trace_b_five_pages_with_max_page_sharing_2():
    m = machine()
    m.sysfs.write(f"{KSM}/max_page_sharing", "2")
    p, a = mergeable(m, "p", [9] * 5)
    scans(m, 2)
    # scan #1: p0 -> unstable; p1 merges with it (K1, node S1 len 2 = full); p2: S1 full
    # -> stable search gives nothing, unstable is empty (p0 left it) -> p2 unstable; p3
    # finds p2 -> K2; stable_tree_insert meets S1's content -> S1 becomes a chain with
    # dups S1, S2; p4: every dup full -> unstable
    assert counters(m) == dict(full_scans=2, pages_shared=2, pages_sharing=2, pages_unshared=1,
                               pages_volatile=0, stable_node_chains=1, stable_node_dups=2)
    k1, k2 = pfn(p, a + PS), pfn(p, a + 3 * PS)
    assert k1 != k2
    assert [pfn(p, a + i * PS) for i in range(4)] == [k1, k1, k2, k2]
    assert m.memory.pages[k1].data == m.memory.pages[k2].data
    # p4 then follows the smart-scan schedule: age 2 after two visits
    skipped = []
    for _ in range(4):
        before = m.ksm.stats()["pages_skipped"]
        scans(m)
        skipped.append(m.ksm.stats()["pages_skipped"] - before)
    # scan #2: visit 2 (age 2 < 3) processed; scan #3: visit 3 processed (skips = 1);
    # scan #4: skipped (unshared -> volatile); scan #5: processed (skips = skip_age(5) = 2)
    assert skipped == [0, 0, 1, 0]
    assert counters(m, "pages_unshared", "pages_volatile") == \
        dict(pages_unshared=1, pages_volatile=0)


def expected_for(n, limit):
    """N identical pages of one mm after two scans, walking them in order: each page
    joins the first dup with room (len < limit); a page finding every dup full waits in
    the unstable tree, and the next one pairs with it into a new dup of len 2.  So the
    pages fill n // limit full dups; a remainder r >= 2 is one more dup, r == 1 one page
    left unshared.  Two or more dups hang off a chain."""
    full, r = divmod(n, limit)
    dups = full + (1 if r >= 2 else 0)
    unshared = 1 if r == 1 else 0
    return dict(pages_shared=dups, pages_sharing=n - dups - unshared, pages_unshared=unshared,
                stable_node_chains=1 if dups >= 2 else 0,
                stable_node_dups=dups if dups >= 2 else 0)


@pytest.mark.parametrize("n,limit", [(10, 256), (2, 2), (3, 2), (5, 2), (6, 2), (7, 3), (8, 3),
                                     (10, 4), (12, 5), (9, 9), (20, 6)])
def test_max_page_sharing_limits(n, limit):
    m = machine()
    m.sysfs.write(f"{KSM}/max_page_sharing", str(limit))
    p, a = mergeable(m, "p", [0x5A] * n)
    scans(m, 2)
    want = expected_for(n, limit)
    got = counters(m, *want)
    assert got == want
    # the selftests' assert_ksm_pages_count() says the same about shared and sharing
    if n % limit in (0, 1):
        assert got["pages_shared"] == n // limit
        assert got["pages_sharing"] == got["pages_shared"] * (limit - 1)
    else:
        assert got["pages_shared"] == n // limit + 1
        assert got["pages_sharing"] == n - got["pages_shared"]
    assert p.read(a, n * PS) == fill(0x5A) * n


def test_a_chain_collapses_when_one_dup_is_left():
    # trace B's state, then every mapping of K2 goes away: K2 is freed, its dup goes
    # stale, and the next stable search prunes it and puts the last dup back as a
    # plain node (chains 1 -> 0, dups 2 -> 0)
    m = machine()
    m.sysfs.write(f"{KSM}/max_page_sharing", "2")
    p, a = mergeable(m, "p", [9] * 5)
    scans(m, 2)
    p.munmap(a + 2 * PS, 2 * PS)
    scans(m)
    assert counters(m, "pages_shared", "pages_sharing", "stable_node_chains",
                    "stable_node_dups") == dict(pages_shared=1, pages_sharing=1,
                                                stable_node_chains=0, stable_node_dups=0)


# --- stable tree order: pre-6.11 kernels merge a late joiner on its first visit ---------

@pytest.mark.parametrize("kernel,first_scan_sharing", [("6.10", 2), ("6.18", 1), ("5.4", 2)])
def test_late_joiner_first_visit_depends_on_the_version(kernel, first_scan_sharing):
    m = machine(kernel)
    a_proc, a = mergeable(m, "a", [0x42, 0x42])
    scans(m, 2)
    assert counters(m, "pages_shared", "pages_sharing") == dict(pages_shared=1, pages_sharing=1)
    b_proc, b = mergeable(m, "b", [0x42])
    scans(m)
    # up to 6.10 cmp_and_merge_page() searches the stable tree before the checksum test:
    # b's brand-new page merges into the KSM page on its first visit.  From 6.11
    # (d58a361b0350) the checksum comes first, so the first visit only records it.
    assert counters(m, "pages_shared", "pages_sharing")["pages_sharing"] == first_scan_sharing
    scans(m)
    assert counters(m, "pages_shared", "pages_sharing") == dict(pages_shared=1, pages_sharing=2)
    assert pfn(b_proc, b) == pfn(a_proc, a + PS)


def test_a_new_mm_joins_behind_the_cursor():
    # __ksm_enter() puts the new slot just before ksm_scan.mm_slot: in the middle of a
    # full scan that is the part already passed, so it is first visited next scan
    m = machine()
    p, a = mergeable(m, "p", [1, 2, 3])
    scans(m)
    m.ksmd.scan(1)                                # cursor now inside p's slot
    q, b = mergeable(m, "q", [4])
    assert [s.mm.owner_pid for s in m.ksm.slots()] == [q.pid, p.pid]
    m.ksmd.scan(100)                              # finishes p: the scan ends there
    assert m.ksm.stats()["full_scans"] == 2
    assert rmap_items(m) == 3, "q was not visited in the scan it joined"
    m.ksmd.scan(100)
    assert rmap_items(m) == 4


# --- smart scan ----------------------------------------------------------------------------

def processed_visits(n):
    """Hand-expanded should_skip_rmap_item() for a page that never merges: visit v sees
    age v; ages 0-2 are never skipped; at age >= 3 with no skips left it sets
    remaining_skips = skip_age(age) (1, 2, 4, 8) and is processed, else it is skipped."""
    out, remaining = [], 0
    for v in range(n):
        if v < 3:
            out.append(v)
        elif remaining == 0:
            remaining = {3: 1, 4: 1, 5: 2, 6: 4, 7: 4, 8: 4}.get(v, 8) if v <= 8 else 8
            out.append(v)
        else:
            remaining -= 1
    return out


def test_the_visit_table_of_the_research_notes():
    # research/ksm-kernel.md §2.3: processed on visits 0,1,2,3,5,8,13,22 then every 9th
    assert processed_visits(41) == [0, 1, 2, 3, 5, 8, 13, 22, 31, 40]
    assert [skip_age(a) for a in (0, 3, 4, 5, 6, 8, 9, 255)] == [1, 1, 2, 2, 4, 4, 8, 8]


def test_smart_scan_skip_schedule_over_25_scans():
    m = machine()
    p, a = mergeable(m, "p", [0x77])
    processed = []
    for k in range(25):
        before = m.ksm.stats()["pages_scanned"]
        scans(m)
        if m.ksm.stats()["pages_scanned"] - before:
            processed.append(k)
        # a skipped visit leaves the unstable tree: unshared only after a processed one
        unshared = m.ksm.stats()["pages_unshared"]
        assert unshared == (1 if processed[-1] == k and k > 0 else 0), k
    assert processed == processed_visits(25) == [0, 1, 2, 3, 5, 8, 13, 22]
    assert counters(m, "pages_skipped")["pages_skipped"] == 25 - 8
    assert m.ksm.stats()["pages_scanned"] == 8
    assert item_at(m, p, a).age == 25


@pytest.mark.parametrize("kernel,knob", [("6.18", "0"), ("6.6", None)])
def test_without_smart_scan_every_visit_is_processed(kernel, knob):
    m = machine(kernel)
    if knob is not None:
        m.sysfs.write(f"{KSM}/smart_scan", knob)
    p, a = mergeable(m, "p", [0x77])
    scans(m, 12)
    assert m.ksm.stats()["pages_scanned"] == 12
    assert m.ksm.stats()["pages_skipped"] == 0


def test_ksm_pages_are_never_skipped_nor_aged():
    m = machine()
    p, a = mergeable(m, "p", [5, 5])
    scans(m, 12)
    assert [i.age for i in m.ksm.rmap_items()] == [2, 2]
    assert m.ksm.stats()["pages_skipped"] == 0
    # 2 visits each before the merge, then 10 scans of 2 KSM pages
    assert m.ksm.stats()["pages_scanned"] == 24


# --- zero pages ---------------------------------------------------------------------------

def test_use_zero_pages_maps_the_zero_page_and_counts_it_apart():
    m = machine()
    m.sysfs.write(f"{KSM}/use_zero_pages", "1")
    p, a = mergeable(m, "p", [0, 0, 0, 0x33])
    scans(m, 2)
    # scan #1: the three zero-filled pages have a held checksum equal to zero_checksum:
    # replace_page() maps the zero page (dirty: "placed by KSM") -> ksm_zero_pages 3;
    # their items stay in no tree (volatile) until the next scan drops them
    s = m.ksm.stats()
    assert (s["ksm_zero_pages"], s["pages_shared"], s["pages_volatile"], s["pages_unshared"]) == \
        (3, 0, 3, 1)
    assert [pfn(p, a + i * PS) for i in range(3)] == [0, 0, 0]
    # general_profit = (sharing + zero pages) * PAGE_SIZE - rmap_items * 64
    assert s["general_profit"] == 3 * PS - 4 * 64
    assert stat(m, p)["ksm_zero_pages"] == 3
    assert stat(m, p)["ksm_process_profit"] == 3 * PS - 4 * 64
    scans(m)
    # the zero PTEs are not scanned: their items are trailing and freed
    assert rmap_items(m) == 1 and m.ksm.stats()["general_profit"] == 3 * PS - 64
    # the counters follow the PTEs at once: write fault, unshare, zap
    p.write(a, b"w")
    assert m.ksm.stats()["ksm_zero_pages"] == 2
    p.madvise(a + PS, PS, MADV_UNMERGEABLE)
    assert m.ksm.stats()["ksm_zero_pages"] == 1
    assert pfn(p, a + PS) not in (0, None), "break_ksm unshared the KSM zero page"
    p.madvise(a + 2 * PS, PS, MADV_DONTNEED)
    assert m.ksm.stats()["ksm_zero_pages"] == 0 and stat(m, p)["ksm_zero_pages"] == 0
    check_ksm(m)
    assert p.read(a, 3 * PS) == b"w" + bytes(3 * PS - 1)


def test_zero_pages_merge_as_a_ksm_page_without_use_zero_pages():
    m = machine()
    p, a = mergeable(m, "p", [0] * 10)
    scans(m, 2)
    assert counters(m, "pages_shared", "pages_sharing") == dict(pages_shared=1, pages_sharing=9)
    assert m.ksm.stats()["ksm_zero_pages"] == 0


def test_read_faulted_pages_are_invisible_to_ksm():
    m = machine()
    m.sysfs.write(f"{KSM}/use_zero_pages", "1")
    p = m.spawn("p")
    a = p.mmap(4 * PS)
    p.read(a, 4 * PS)                           # four zero-page PTEs, not dirty
    p.madvise(a, 4 * PS, MADV_MERGEABLE)
    scans(m, 3)
    assert rmap_items(m) == 0 and m.ksm.stats()["ksm_zero_pages"] == 0
    p.madvise(a, 4 * PS, MADV_UNMERGEABLE)     # not KSM's zero pages: left alone
    assert [pfn(p, a + i * PS) for i in range(4)] == [0] * 4


def test_before_6_6_ksm_zero_pages_are_not_unshared():
    m = machine("6.5")
    m.sysfs.write(f"{KSM}/use_zero_pages", "1")
    p, a = mergeable(m, "p", [0, 0])
    scans(m, 2)
    assert [pfn(p, a), pfn(p, a + PS)] == [0, 0]
    assert "ksm_zero_pages" not in m.sysfs.listdir()
    p.madvise(a, 2 * PS, MADV_UNMERGEABLE)
    assert [pfn(p, a), pfn(p, a + PS)] == [0, 0], "break_ksm ignores zero pages before 6.6"


# --- opting out: MADV_UNMERGEABLE, prctl, run=2 -------------------------------------------

def test_madv_unmergeable_unshares_at_once_and_counts_later():
    m = machine()
    p, a = mergeable(m, "p", [4] * 4)
    scans(m, 2)
    kpfn = pfn(p, a)
    p.madvise(a, 4 * PS, MADV_UNMERGEABLE)
    # every address got its own copy (the KSM page, left unmapped, is freed) ...
    pfns = [pfn(p, a + i * PS) for i in range(4)]
    assert len(set(pfns)) == 4 and kpfn not in pfns and kpfn not in m.memory.pages
    assert p.read(a, 4 * PS) == fill(4) * 4
    # ... but unmerge_ksm_pages() leaves rmap_items and counters to ksmd
    assert counters(m, "pages_shared", "pages_sharing") == dict(pages_shared=1, pages_sharing=3)
    assert rmap_items(m) == 4 and stat(m, p)["ksm_merging_pages"] == 4
    assert stat(m, p)["ksm_mergeable"] == "no"
    scans(m)
    # ksmd finds no VM_MERGEABLE VMA: every item is trailing; the first removal finds
    # the node stale (its page is gone) and takes all four items off it at once; the
    # slot has nothing left and is freed
    assert counters(m, "pages_shared", "pages_sharing", "pages_volatile") == \
        dict(pages_shared=0, pages_sharing=0, pages_volatile=0)
    assert rmap_items(m) == 0 and m.ksm.slots() == []
    assert not p.mm.flags & m.ksm.MMF_VM_MERGEABLE
    assert list(m.ksm.stable_nodes()) == []


def test_partial_unmerge_drops_only_those_items():
    m = machine()
    p, a = mergeable(m, "p", [4] * 4)
    scans(m, 2)
    kpfn = pfn(p, a + PS)
    p.madvise(a, 2 * PS, MADV_UNMERGEABLE)
    assert m.memory.pages[kpfn].mapcount == 2
    scans(m)
    # the cursor jumps to the still-mergeable half: get_next_rmap_item() frees the two
    # items it passes (their node still lives: sharing 3 -> 1); the other two are KSM
    # pages already on the node
    assert counters(m, "pages_shared", "pages_sharing") == dict(pages_shared=1, pages_sharing=1)
    assert rmap_items(m) == 2 and stat(m, p)["ksm_merging_pages"] == 2


def test_prctl_merges_every_vma_and_prctl_0_unmerges():
    m = machine()
    p = m.spawn("p")
    a = p.mmap(2 * PS)
    p.write(a, fill(6) * 2)
    assert p.prctl(PR_GET_MEMORY_MERGE) == 0
    p.prctl(PR_SET_MEMORY_MERGE, 1)
    assert p.prctl(PR_GET_MEMORY_MERGE) == 1
    b = p.mmap(PS)                              # created later: mergeable at birth
    p.write(b, fill(6))
    s = p.mmap(PS, shared=True)                 # MAP_SHARED is never mergeable
    p.write(s, fill(6))
    assert stat(m, p)["ksm_merge_any"] == "yes" and stat(m, p)["ksm_mergeable"] == "yes"
    scans(m, 2)
    # three private pages of 6s: one KSM page, two sharers; the shared one stays out
    assert counters(m, "pages_shared", "pages_sharing") == dict(pages_shared=1, pages_sharing=2)
    p.prctl(PR_SET_MEMORY_MERGE, 0)
    assert p.prctl(PR_GET_MEMORY_MERGE) == 0
    assert len({pfn(p, x) for x in (a, a + PS, b)}) == 3, "unmerged at once"
    assert stat(m, p)["ksm_mergeable"] == "no"
    assert counters(m, "pages_sharing")["pages_sharing"] == 2, "counters wait for ksmd"
    scans(m)
    assert counters(m, "pages_shared", "pages_sharing") == dict(pages_shared=0, pages_sharing=0)


def test_run_2_unmerges_everything_and_resets_full_scans():
    m = machine()
    m.sysfs.write(f"{KSM}/use_zero_pages", "1")
    p, a = mergeable(m, "p", [8, 8, 8, 0])
    scans(m, 3)
    assert counters(m, "full_scans", "pages_shared", "pages_sharing") == \
        dict(full_scans=3, pages_shared=1, pages_sharing=2)
    assert m.ksm.stats()["ksm_zero_pages"] == 1
    scanned = m.ksm.stats()["pages_scanned"]
    m.sysfs.write(f"{KSM}/run", "2")
    # synchronous: every KSM page and KSM zero page unshared, every item freed,
    # full_scans back to 0; pages_scanned is never reset; the slot stays
    assert counters(m) == dict(full_scans=0, pages_shared=0, pages_sharing=0, pages_unshared=0,
                               pages_volatile=0, stable_node_chains=0, stable_node_dups=0)
    assert m.ksm.stats()["ksm_zero_pages"] == 0 and rmap_items(m) == 0
    assert m.ksm.stats()["pages_scanned"] == scanned
    assert len({pfn(p, a + i * PS) for i in range(4)}) == 4 and pfn(p, a + 3 * PS) != 0
    assert [s.mm for s in m.ksm.slots()] == [p.mm]
    assert p.read(a, 4 * PS) == fill(8) * 3 + fill(0)
    check_ksm(m)
    check_page_counts(m)
    # writing 2 again is not a change: nothing happens
    before = fingerprint(m)
    m.sysfs.write(f"{KSM}/run", "2")
    assert fingerprint(m) == before
    with pytest.raises(KsmdNotRunning):
        m.ksmd.scan(10)
    m.sysfs.write(f"{KSM}/run", "1")
    scans(m, 2)
    assert counters(m, "full_scans", "pages_shared", "pages_sharing") == \
        dict(full_scans=2, pages_shared=1, pages_sharing=2)


def test_ksmd_only_scans_with_run_1():
    m = machine(run=False)
    p, a = mergeable(m, "p", [1, 1])
    for call in (lambda: m.ksmd.scan(10), lambda: m.ksmd.run_full_scans(1)):
        with pytest.raises(KsmdNotRunning):
            call()
    m.advance(1000)
    assert m.ksm.stats()["full_scans"] == 0
    m.sysfs.write(f"{KSM}/run", "1")
    # advance(): one batch per sleep_millisecs (20 ms); 2 pages per batch = one full scan
    m.advance(100)
    assert m.ksm.stats()["full_scans"] >= 2
    assert counters(m, "pages_shared", "pages_sharing") == dict(pages_shared=1, pages_sharing=1)


def test_a_batch_never_crosses_a_full_scan():
    m = machine()
    p, a = mergeable(m, "p", [1, 2, 3])
    m.ksmd.scan(2)
    assert (m.ksm.stats()["full_scans"], m.ksm.stats()["pages_scanned"]) == (0, 2)
    m.ksmd.scan(100)          # one page left: the batch ends at the wrap
    assert (m.ksm.stats()["full_scans"], m.ksm.stats()["pages_scanned"]) == (1, 3)
    m.ksmd.scan(100)
    assert (m.ksm.stats()["full_scans"], m.ksm.stats()["pages_scanned"]) == (2, 6)


# --- fork and exit -------------------------------------------------------------------------

def test_fork_of_merged_memory_then_the_child_writes():
    m = machine()
    p, a = mergeable(m, "p", [2, 2])
    scans(m, 2)
    kpfn = pfn(p, a)
    c = p.fork("c")
    # the child maps the KSM page too (mapcount 4) but has no rmap_items yet; 6.18 starts
    # its counters at 0
    assert m.memory.pages[kpfn].mapcount == 4
    assert stat(m, c)["ksm_merging_pages"] == 0 and stat(m, c)["ksm_rmap_items"] == 0
    assert counters(m, "pages_shared", "pages_sharing") == dict(pages_shared=1, pages_sharing=1)
    scans(m)
    # the child's first visit: its page is KSM, so no checksum step; stable_tree_search
    # returns the page itself ("ksm page forked") and the item is appended: sharing 1 -> 3
    assert counters(m, "pages_shared", "pages_sharing") == dict(pages_shared=1, pages_sharing=3)
    assert stat(m, c)["ksm_merging_pages"] == 2
    c.write(a, b"child")
    assert m.memory.pages[kpfn].mapcount == 3
    assert counters(m, "pages_sharing")["pages_sharing"] == 3, "lazy until ksmd visits"
    scans(m)
    # the COWed item leaves the node (sharing 3 -> 2); its oldchecksum is still 0 (it was
    # never checksummed), so the new content is "changed": volatile
    assert counters(m, "pages_shared", "pages_sharing", "pages_volatile") == \
        dict(pages_shared=1, pages_sharing=2, pages_volatile=1)
    assert stat(m, c)["ksm_merging_pages"] == 1
    assert p.read(a, PS) == fill(2) and c.read(a, 5) == b"child"


def test_forked_mappings_bypass_max_page_sharing():
    m = machine()
    m.sysfs.write(f"{KSM}/max_page_sharing", "2")
    p, a = mergeable(m, "p", [2, 2])
    scans(m, 2)
    c = p.fork()
    scans(m)
    # the node is full (2 of 2) but the child's items come from a KSM fork: bypass
    node = next(iter(m.ksm.stable_nodes()))
    assert node.rmap_hlist_len == 4 > m.ksm.max_page_sharing
    assert counters(m, "pages_shared", "pages_sharing", "stable_node_chains") == \
        dict(pages_shared=1, pages_sharing=3, stable_node_chains=0)


@pytest.mark.parametrize("kernel,child_counts", [("6.18", (0, 0)), ("6.17", (2, 2))])
def test_fork_counter_inheritance_by_version(kernel, child_counts):
    # before the late-2025 fix, dup_mm() copied ksm_merging_pages and ksm_rmap_items
    m = machine(kernel)
    p, a = mergeable(m, "p", [2, 2])
    scans(m, 2)
    c = p.fork()
    s = stat(m, c)
    assert (s["ksm_merging_pages"], s["ksm_rmap_items"]) == child_counts


def test_exit_counts_drop_when_ksmd_cleans_up():
    m = machine()
    a_proc, a = mergeable(m, "a", [0x61])
    b_proc, b = mergeable(m, "b", [0x61])
    scans(m, 2)
    # scan #1: a's page goes to the unstable tree; b's page finds it and becomes K
    assert counters(m, "pages_shared", "pages_sharing") == dict(pages_shared=1, pages_sharing=1)
    kpfn = pfn(b_proc, b)
    b_proc.exit()
    with pytest.raises(OSError) as e:
        m.procfs.read(f"/proc/{b_proc.pid}/ksm_stat")
    assert e.value.errno == errno.ENOENT
    # exit unmapped b's page at once; b's slot (it has an item) waits right after the
    # cursor; the counters are unchanged until ksmd gets there
    assert m.memory.pages[kpfn].mapcount == 1
    assert counters(m, "pages_sharing")["pages_sharing"] == 1
    assert m.ksm.slots()[0].mm is b_proc.mm
    scans(m)
    # b's item is removed (node alive: a still maps K): sharing 1 -> 0; a single mapper
    # keeps K a KSM page, counted as shared
    assert counters(m, "pages_shared", "pages_sharing") == dict(pages_shared=1, pages_sharing=0)
    assert [s.mm for s in m.ksm.slots()] == [a_proc.mm]
    assert m.memory.pages[kpfn].flags & PG_ksm
    a_proc.exit()
    scans(m)
    assert counters(m) == dict(full_scans=4, pages_shared=0, pages_sharing=0, pages_unshared=0,
                               pages_volatile=0, stable_node_chains=0, stable_node_dups=0)
    assert m.ksm.slots() == [] and list(m.ksm.stable_nodes()) == []
    assert len(m.memory.pages) == 0


def test_exit_of_an_mm_without_items_frees_its_slot_at_once():
    m = machine()
    p, a = mergeable(m, "p", [1])
    assert len(m.ksm.slots()) == 1
    p.exit()
    assert m.ksm.slots() == []


# --- PROT_NONE, shared mappings, NUMA -------------------------------------------------------

def test_prot_none_pages_merge_and_unmerge():
    # ksm_functional_tests test_prot_none: mergeable PROT_NONE memory is merged
    m = machine()
    p, a = mergeable(m, "p", [0x11] * 4)
    p.mprotect(a, 4 * PS, PROT_NONE)
    scans(m, 2)
    assert counters(m, "pages_shared", "pages_sharing") == dict(pages_shared=1, pages_sharing=3)
    p.madvise(a + 2 * PS, 2 * PS, MADV_UNMERGEABLE)
    assert len({pfn(p, a + i * PS) for i in range(2, 4)}) == 2
    check_page_counts(m)


def test_madvise_mergeable_on_a_shared_mapping_is_ignored():
    m = machine()
    p = m.spawn("p")
    s = p.mmap(2 * PS, shared=True)
    p.write(s, fill(3) * 2)
    p.madvise(s, 2 * PS, MADV_MERGEABLE)        # vma_ksm_compatible() says no: returns 0
    assert m.ksm.slots() == []
    assert stat(m, p)["ksm_mergeable"] == "no"


@pytest.mark.parametrize("across,shared,sharing", [("1", 1, 1), ("0", 0, 0)])
def test_numa_merge_across_nodes(across, shared, sharing):
    # ksm_tests -N: one page on each of two nodes, merged with merge_across_nodes=1,
    # kept apart (separate trees per node) with 0
    m = machine(numa_nodes=2)
    m.sysfs.write(f"{KSM}/merge_across_nodes", across)
    p, a = mergeable(m, "p", [0x2A], node=0)
    q, b = mergeable(m, "q", [0x2A], node=1)
    scans(m, 2)
    assert counters(m, "pages_shared", "pages_sharing") == \
        dict(pages_shared=shared, pages_sharing=sharing)
    if across == "0":
        assert len(m.ksm.root_unstable_tree) == 2
        assert sum(len(r) for r in m.ksm.root_unstable_tree) == 2, "one per node's tree"


@pytest.mark.parametrize("first,then", [("1", "0"), ("0", "1")])
def test_switching_merge_across_nodes_with_items_in_the_unstable_tree(first, then):
    # pages_shared == 0 allows the switch even while the unstable tree holds items that
    # were inserted during the current scan; the kernel keeps those roots (its switch
    # only allocates the per-node array and copies root 0 over), so removing the items
    # later (here by run=2) erases them from the tree they are in
    m = machine(numa_nodes=2)
    m.sysfs.write(f"{KSM}/merge_across_nodes", first)
    p, a = mergeable(m, "p", [1, 2], node=1)
    scans(m)
    m.ksmd.scan(2)                    # both pages inserted in the unstable tree this scan
    assert m.ksm.stats()["pages_unshared"] == 2
    m.sysfs.write(f"{KSM}/merge_across_nodes", then)
    check_ksm(m)
    m.sysfs.write(f"{KSM}/run", "2")
    check_ksm(m)
    assert m.ksm.stats()["pages_unshared"] == 0
    m.sysfs.write(f"{KSM}/run", "1")
    scans(m, 3)
    assert m.ksm.stats()["pages_unshared"] == 2


def test_prctl_mm_dropped_by_ksmd_comes_back_with_its_next_mmap():
    # 6.18 ("mm/ksm: fix exec/fork inheritance support for prctl"): a full scan that
    # finds no mergeable VMA drops the slot and clears only MMF_VM_MERGEABLE; MERGE_ANY
    # stays, and ksm_vma_flags() re-enters the mm when it maps memory again
    m = machine()
    p = m.spawn("p")
    p.prctl(PR_SET_MEMORY_MERGE, 1)
    assert [s.mm for s in m.ksm.slots()] == [p.mm]
    scans(m)
    assert m.ksm.slots() == [] and p.prctl(PR_GET_MEMORY_MERGE) == 1
    a = p.mmap(2 * PS)
    assert [s.mm for s in m.ksm.slots()] == [p.mm]
    p.write(a, fill(3) * 2)
    scans(m, 2)
    assert counters(m, "pages_shared", "pages_sharing") == dict(pages_shared=1, pages_sharing=1)


def test_before_the_fix_the_scanner_also_cleared_merge_any():
    m = machine("6.12")
    p = m.spawn("p")
    p.prctl(PR_SET_MEMORY_MERGE, 1)
    scans(m)
    assert p.prctl(PR_GET_MEMORY_MERGE) == 0, "6.12's scanner cleared MMF_VM_MERGE_ANY"
    p.mmap(PS)
    assert m.ksm.slots() == []
